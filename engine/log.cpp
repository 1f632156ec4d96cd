#include "engine/log.h"

#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <fstream>
#include <mutex>
#include <sstream>
#include <stdexcept>

namespace pk {

namespace {
std::mutex g_log_mutex;
std::ofstream g_log_file;

std::string timestamp() {
  std::time_t now = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%H:%M:%S", std::localtime(&now));
  return buf;
}
// "[hh:mm:ss] message\n"
std::string stamped(const std::string& message) {
  return "[" + timestamp() + "] " + message + "\n";
}
}  // namespace

void open_log_file(const std::string& path, bool append) {
  std::lock_guard<std::mutex> lock(g_log_mutex);
  if (g_log_file.is_open()) g_log_file.close();
  g_log_file.open(path, append ? std::ios::app : std::ios::trunc);
  if (!g_log_file) throw std::runtime_error("cannot open log file " + path);
}

void close_log_file() {
  std::lock_guard<std::mutex> lock(g_log_mutex);
  if (g_log_file.is_open()) g_log_file.close();
}

void log_line(const std::string& message) {
  std::lock_guard<std::mutex> lock(g_log_mutex);
  const std::string line = stamped(message);
  std::fputs(line.c_str(), stderr);
  if (g_log_file.is_open()) g_log_file << line << std::flush;
}

void log_file_line(const std::string& message) {
  std::lock_guard<std::mutex> lock(g_log_mutex);
  if (g_log_file.is_open()) g_log_file << stamped(message) << std::flush;
}

std::string format_duration(double s) {
  char buf[32];
  if (s < 60) std::snprintf(buf, sizeof buf, "%.1fs", s);
  else if (s < 3600) std::snprintf(buf, sizeof buf, "%dm%02ds", int(s) / 60, int(s) % 60);
  else std::snprintf(buf, sizeof buf, "%dh%02dm", int(s) / 3600, (int(s) % 3600) / 60);
  return buf;
}

Progress::Progress(std::string label, int64_t total, std::string unit)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total),
      start_(std::chrono::steady_clock::now()), last_print_(start_),
      tty_(isatty(fileno(stderr)) != 0) {}

double Progress::elapsed_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void Progress::update(int64_t done, const std::string& detail) {
  done_ = done;
  auto now = std::chrono::steady_clock::now();
  double since = std::chrono::duration<double>(now - last_print_).count();
  // Redraw a terminal line often; elsewhere print a full line every 10 s.
  if (since < (tty_ ? 0.2 : 10.0)) return;
  last_print_ = now;
  print(false, detail);
}

void Progress::finish(const std::string& detail) {
  done_ = total_;
  print(true, detail);
}

void Progress::print(bool final_line, const std::string& detail) {
  double elapsed = elapsed_seconds();
  double rate = elapsed > 0 ? done_ / elapsed : 0.0;
  std::ostringstream os;
  os << label_ << " " << done_ << "/" << total_;
  if (total_ > 0) os << " (" << (100 * done_ / total_) << "%)";
  char buf[64];
  std::snprintf(buf, sizeof buf, " %.1f %s/s", rate, unit_.c_str());
  os << buf;
  if (final_line) {
    os << " in " << format_duration(elapsed);
  } else if (rate > 0) {
    os << " ETA " << format_duration((total_ - done_) / rate);
  }
  if (!detail.empty()) os << " | " << detail;
  if (tty_ && !final_line) {
    std::lock_guard<std::mutex> lock(g_log_mutex);
    std::fprintf(stderr, "\r\033[K%s", os.str().c_str());
    std::fflush(stderr);
    return;
  }
  if (tty_) std::fputs("\r\033[K", stderr);
  log_line(os.str());
}

std::string one_line(const std::string& message) {
  std::string out;
  for (size_t i = 0; i < message.size(); ++i) {
    if (message[i] != '\n') {
      out += message[i];
      continue;
    }
    bool indented = false;
    while (i + 1 < message.size() && (message[i + 1] == ' ' || message[i + 1] == '\n')) {
      indented = indented || message[i + 1] == ' ';
      ++i;
    }
    if (i + 1 < message.size()) out += indented ? " " : "; ";
  }
  return out;
}

}  // namespace pk
