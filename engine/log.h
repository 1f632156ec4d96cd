// Run logging and progress display. Messages go to stderr and, once a log
// file is opened, to that file too (the run's log, docs/METHOD.md section 8).
// Progress lines carry a rate and an ETA; on a terminal they redraw in
// place, elsewhere (CI, pipes, the log file) they print at most every few
// seconds.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace pk {

// Opens the run's log file (truncated, or appended to for a resumed run);
// subsequent log_line calls go there too.
void open_log_file(const std::string& path, bool append = false);
void close_log_file();
// One line, prefixed with the wall-clock time.
void log_line(const std::string& message);
// The same, to the log file only (when one is open): for messages that the
// caller already printed to stderr in its own form, such as a run's error.
void log_file_line(const std::string& message);

class Progress {
 public:
  Progress(std::string label, int64_t total, std::string unit = "it");
  // Advances to `done` (absolute) and shows `detail` (e.g. "loss 0.12").
  void update(int64_t done, const std::string& detail = "");
  void finish(const std::string& detail = "");  // final line, always logged
  double elapsed_seconds() const;

 private:
  void print(bool final_line, const std::string& detail);
  std::string label_, unit_;
  int64_t total_, done_ = 0;
  std::chrono::steady_clock::time_point start_, last_print_;
  bool tty_;
};

// "1h02m", "3m05s", "12.3s"
std::string format_duration(double seconds);

// A message on one line, for error lines: "a\n  b\n  c\nd" -> "a b c; d"
// (indented continuation lines join with a space, other lines with "; ").
std::string one_line(const std::string& message);

}  // namespace pk
