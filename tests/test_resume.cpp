// Crash-safe runs (quant/run_checkpoint.h): a run killed with SIGKILL at
// any moment of its reconstruction, stopped by ctrl-C, or left without its
// output folder continues with --resume to the model the uninterrupted run
// makes, bit for bit, with the same accuracies; a resumed run refuses
// settings that would change its result.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <random>
#include <thread>

#include "engine/errors.h"
#include "engine/interrupt.h"
#include "engine/safetensors.h"
#include "kernels/kernels.h"
#include "quant/run.h"
#include "tests/fixture_runs.h"
#include "tests/testing.h"

using namespace pk;
using pk::testing::TempDir;
namespace fs = std::filesystem;

namespace {

const fs::path kModel = testing::fixture_model_dir("resnet18_w16");

QuantizeConfig fixture_config(const fs::path& output_dir, int64_t iterations) {
  return testing::fixture_run_config("resnet18_w16", 4, iterations, output_dir);
}

// The same run as command-line arguments.
std::vector<std::string> fixture_args(const fs::path& output_dir, int64_t iterations) {
  return {PACKPTQ_BINARY, "quantize", "--model_name", "resnet18", "--model_config",
          (kModel / "config.json").string(), "--weights", (kModel / "model.safetensors").string(),
          "--dataset_path", testing::whole_run_dataset().string(), "--weight_bits",
          "4", "--activation_bits", "4", "--weight_channel_wise", "--calibration_samples", "64",
          "--calibration_iterations", std::to_string(iterations), "--analysis_images", "0",
          "--threads", "2", "--output_dir", output_dir.string()};
}

// Starts packptq with `args`, its output to `log`.
pid_t start(const std::vector<std::string>& args, const std::string& log) {
  std::fflush(stdout);  // or the child writes the parent's buffered output again
  std::fflush(stderr);
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    std::FILE* out = std::freopen(log.c_str(), "w", stdout);
    if (!out || dup2(fileno(stdout), STDERR_FILENO) < 0) _exit(127);
    std::vector<char*> argv;
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

// The exit code, or 128 + the signal that ended it.
int wait_for(pid_t pid) {
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

int count_of(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// Waits until the run's output says `targets` checkpoints were written, as
// long as the run lasts (sanitizer builds take many times longer), up to
// 20 minutes.
void wait_for_checkpoints(const std::string& log, int targets, pid_t pid) {
  for (int i = 0; i < 120000; ++i) {
    if (count_of(read_text(log), "checkpoint after ") >= targets) return;
    int status = 0;
    REQUIRE_MESSAGE(waitpid(pid, &status, WNOHANG) == 0, "the run ended early:\n" << read_text(log));
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  FAIL("no checkpoint " << targets << " in 20 minutes:\n" << read_text(log));
}

std::string only_file(const fs::path& folder) {
  std::vector<std::string> files;
  for (const auto& entry : fs::directory_iterator(folder)) files.push_back(entry.path().string());
  REQUIRE_MESSAGE(files.size() == 1, folder << " holds " << files.size() << " files");
  return files[0];
}

// Two quantized model files hold the same tensors, bit for bit.
void check_same_model(const std::string& a, const std::string& b) {
  const TensorMap ta = load_safetensors(a), tb = load_safetensors(b);
  REQUIRE(ta.size() == tb.size());
  for (const auto& entry : ta) {
    const std::string& name = entry.first;
    const Tensor& tensor = entry.second;
    CAPTURE(name);
    REQUIRE(tb.count(name));
    const Tensor& other = tb.at(name);
    REQUIRE(tensor.shape() == other.shape());
    if (tensor.dtype() == DType::I64)
      CHECK(tensor.to_int64_vector() == other.to_int64_vector());
    else
      CHECK(tensor.to_vector() == other.to_vector());
  }
}

// The uninterrupted run of `iterations`, once per test binary and count.
const QuantizeResult& reference_run(int64_t iterations) {
  static std::map<int64_t, QuantizeResult> runs;
  static std::vector<std::unique_ptr<TempDir>> dirs;
  if (!runs.count(iterations)) {
    dirs.push_back(std::make_unique<TempDir>());
    runs[iterations] = quantize(fixture_config(dirs.back()->path, iterations));
  }
  return runs.at(iterations);
}

}  // namespace

TEST_CASE("a run stopped after a target resumes to the uninterrupted model and report") {
  const QuantizeResult& reference = reference_run(40);
  TempDir dir;
  QuantizeConfig config = fixture_config(dir.path, 40);
  int targets = 0;
  const std::string message = testing::error_message([&] {
    quantize(config, [&](const RunEvent& event) {
      if (event.kind == RunEvent::Kind::TargetFinished && ++targets == 3) request_interrupt();
    });
  });
  clear_interrupt();
  CHECK(message.find("3 finished reconstruction targets") != std::string::npos);
  CHECK(message.find("packptq quantize --resume " + dir.path.string()) != std::string::npos);
  CHECK_FALSE(fs::exists(dir.path / "trained_models"));

  QuantizeConfig resume;
  resume.resume = dir.path.string();
  resume.given = {"resume"};
  std::vector<int64_t> resumed_targets;
  const QuantizeResult resumed = quantize(resume, [&](const RunEvent& event) {
    if (event.kind == RunEvent::Kind::TargetFinished) resumed_targets.push_back(event.target_index);
  });
  CHECK(resumed_targets.front() == 3);
  check_same_model(reference.trained_model_path, resumed.trained_model_path);
  CHECK(resumed.quantized.top1 == reference.quantized.top1);
  CHECK(resumed.quantized.top5 == reference.quantized.top5);
  nlohmann::json a = report_to_json(reference), b = report_to_json(resumed);
  for (nlohmann::json* report : {&a, &b}) {
    report->erase("timing");
    for (const char* key : {"output_dir", "resume"}) (*report)["config"].erase(key);
  }
  CHECK(a == b);
  // One log, appended to; no checkpoint left once the run is complete.
  const std::string log = read_text(resumed.log_path);
  CHECK(count_of(log, "resuming from ") == 1);
  CHECK(count_of(log, "checkpoint after ") == static_cast<int>(resumed.reconstruction.size()));
  CHECK(fs::is_empty(dir.path / "checkpoints"));
}

// Interrupts `config`'s run after `after` targets, resumes it, and checks
// the model against the uninterrupted run's.
void check_resumes_identically(QuantizeConfig config, int after) {
  TempDir reference_dir, dir;
  config.output_dir = reference_dir.path.string();
  const QuantizeResult reference = quantize(config);
  config.output_dir = dir.path.string();
  int targets = 0;
  const std::string message = testing::error_message([&] {
    quantize(config, [&](const RunEvent& event) {
      if (event.kind == RunEvent::Kind::TargetFinished && ++targets == after) request_interrupt();
    });
  });
  clear_interrupt();
  REQUIRE_MESSAGE(message.find("--resume") != std::string::npos, message);
  QuantizeConfig resume;
  resume.resume = dir.path.string();
  resume.given = {"resume"};
  const QuantizeResult resumed = quantize(resume);
  check_same_model(reference.trained_model_path, resumed.trained_model_path);
  CHECK(resumed.quantized.top1 == reference.quantized.top1);
  CHECK(resumed.average_bits == reference.average_bits);
}

TEST_CASE("mixed precision with soft rounding kept, and layer-wise AdaRound, resume identically") {
  QuantizeConfig mixed = testing::fixture_run_config("deit_t32", 4, 20, "");
  mixed.enable_mixed_precision = true;
  mixed.keep_soft_rounding = true;
  check_resumes_identically(mixed, 3);
  QuantizeConfig layer_wise = fixture_config("", 20);
  layer_wise.method = Method::AdaRound;
  check_resumes_identically(layer_wise, 5);
}

TEST_CASE("resuming refuses a setting that would change the result, naming it") {
  TempDir dir;
  int targets = 0;
  testing::error_message([&] {
    quantize(fixture_config(dir.path, 20), [&](const RunEvent& event) {
      if (event.kind == RunEvent::Kind::TargetFinished && ++targets == 1) request_interrupt();
    });
  });
  clear_interrupt();
  auto resume_with = [&](const std::string& setting, auto value) {
    QuantizeConfig config;
    config.resume = dir.path.string();
    for (const ConfigSetting& s : quantize_settings())
      if (s.name == setting) s.set(config, value);
    config.given = {"resume", setting};
    std::string message;
    try {
      quantize(config);
    } catch (const ConfigError& e) {
      message = e.what();
    }
    return message;
  };
  CHECK(resume_with("seed", 7).find("--seed 7 differs from the interrupted run's 1005") !=
        std::string::npos);
  CHECK(resume_with("weight_bits", 3).find("--weight_bits") != std::string::npos);
  CHECK(resume_with("calibration_iterations", 30).find("--calibration_iterations") !=
        std::string::npos);
  CHECK(resume_with("weights", (kModel / "model.pth").string()).find("--weights") !=
        std::string::npos);
  CHECK(resume_with("threads", 1).find("--threads") != std::string::npos);
  // Another instruction set sums in another order.
  const std::string in_use = cpu_isa();
  for (const std::string& isa : cpu_isas()) {
    if (isa == in_use) continue;
    set_cpu_isa(isa);
    QuantizeConfig config;
    config.resume = dir.path.string();
    config.given = {"resume"};
    CHECK_THROWS_WITH_AS(quantize(config), doctest::Contains("ran on the kernel path"), ConfigError);
  }
  set_cpu_isa(in_use);
  TempDir empty;
  QuantizeConfig nothing;
  nothing.resume = empty.path.string();
  CHECK_THROWS_WITH_AS(quantize(nothing), doctest::Contains("no run checkpoint"), ConfigError);
}

TEST_CASE("kill -9 at random moments of reconstruction, then --resume: the identical model") {
  constexpr int64_t kIterations = 300;
  const QuantizeResult& reference = reference_run(kIterations);
  std::mt19937 random(std::random_device{}());
  for (int after : {1, 3, 5}) {
    CAPTURE(after);
    TempDir dir;
    const std::string log = dir.file("run.out");
    const pid_t pid = start(fixture_args(dir.path / "out", kIterations), log);
    wait_for_checkpoints(log, after, pid);
    const int delay_ms = std::uniform_int_distribution<int>(0, 400)(random);
    CAPTURE(delay_ms);
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    kill(pid, SIGKILL);
    CHECK(wait_for(pid) == 128 + SIGKILL);
    // A kill during a save leaves the temporary file beside the last
    // complete checkpoint; make sure one is there, as if it had.
    const std::string checkpoint = only_file(dir.path / "out" / "checkpoints");
    std::ofstream(checkpoint + ".tmp12345") << read_text(checkpoint).substr(0, 1000);

    const pid_t resumed = start({PACKPTQ_BINARY, "quantize", "--resume", (dir.path / "out").string()},
                                dir.file("resume.out"));
    REQUIRE_MESSAGE(wait_for(resumed) == 0, read_text(dir.file("resume.out")));
    check_same_model(reference.trained_model_path,
                     only_file(dir.path / "out" / "trained_models"));
    const std::string summary = read_text(dir.file("resume.out"));
    char expected[64];
    std::snprintf(expected, sizeof expected, "quantized top-1 %.2f top-5 %.2f",
                  reference.quantized.top1, reference.quantized.top5);
    CHECK_MESSAGE(summary.find(expected) != std::string::npos, summary);
  }
}

// The temporary file of a checkpoint being saved, or "".
std::string saving_checkpoint(const fs::path& folder) {
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(folder, error))
    if (entry.path().string().find(".safetensors.tmp") != std::string::npos)
      return entry.path().string();
  return "";
}

TEST_CASE("kill -9 while a checkpoint is being written, then --resume: the identical model") {
  constexpr int64_t kIterations = 300;
  const QuantizeResult& reference = reference_run(kIterations);
  // A save takes about a millisecond: watch for its temporary file and kill
  // the run the moment it appears (a few tries, in case one is missed).
  int hits = 0, attempts = 0;
  for (; attempts < 8 && hits == 0; ++attempts) {
    TempDir dir;
    const fs::path checkpoints = dir.path / "out" / "checkpoints";
    const pid_t pid = start(fixture_args(dir.path / "out", kIterations), dir.file("run.out"));
    wait_for_checkpoints(dir.file("run.out"), 1, pid);  // then the next save
    std::string temporary;
    int status = 0;
    while (temporary.empty() && waitpid(pid, &status, WNOHANG) == 0) {
      temporary = saving_checkpoint(checkpoints);
      if (!temporary.empty()) kill(pid, SIGKILL);
    }
    if (temporary.empty()) continue;  // the run ended without being caught saving
    wait_for(pid);
    if (!fs::exists(temporary)) continue;  // killed just after the save's rename
    ++hits;
    const pid_t resumed = start({PACKPTQ_BINARY, "quantize", "--resume", (dir.path / "out").string()},
                                dir.file("resume.out"));
    REQUIRE_MESSAGE(wait_for(resumed) == 0, read_text(dir.file("resume.out")));
    check_same_model(reference.trained_model_path,
                     only_file(dir.path / "out" / "trained_models"));
  }
  MESSAGE("runs killed in the middle of a checkpoint save: " << hits << " in " << attempts
                                                                << " tries");
  CHECK(hits == 1);
}

TEST_CASE("ctrl-C stops at a safe point, says how to resume, and the resumed model is identical") {
  constexpr int64_t kIterations = 300;
  const QuantizeResult& reference = reference_run(kIterations);
  TempDir dir;
  const std::string log = dir.file("run.out");
  const pid_t pid = start(fixture_args(dir.path / "out", kIterations), log);
  wait_for_checkpoints(log, 2, pid);
  kill(pid, SIGINT);
  CHECK(wait_for(pid) == 130);
  const std::string output = read_text(log);
  CHECK_MESSAGE(output.find("packptq: error: interrupted; the checkpoint") != std::string::npos,
                output);
  CHECK(output.find("packptq quantize --resume " + (dir.path / "out").string()) !=
        std::string::npos);
  CHECK_FALSE(fs::exists(dir.path / "out" / "trained_models"));
  const pid_t resumed = start({PACKPTQ_BINARY, "quantize", "--resume", (dir.path / "out").string()},
                              dir.file("resume.out"));
  REQUIRE_MESSAGE(wait_for(resumed) == 0, read_text(dir.file("resume.out")));
  check_same_model(reference.trained_model_path, only_file(dir.path / "out" / "trained_models"));
}

TEST_CASE("an output folder that disappears mid-run: an error naming the path, the last "
          "checkpoint still resumes") {
  const QuantizeResult& reference = reference_run(40);
  TempDir dir;
  const fs::path out = dir.path / "out", moved = dir.path / "moved";
  int targets = 0;
  const std::string message = testing::error_message([&] {
    quantize(fixture_config(out, 40), [&](const RunEvent& event) {
      if (event.kind == RunEvent::Kind::TargetFinished && ++targets == 2) fs::rename(out, moved);
    });
  });
  CHECK_MESSAGE(message.find((out / "checkpoints").string()) != std::string::npos, message);
  QuantizeConfig resume;
  resume.resume = moved.string();
  resume.given = {"resume"};
  const QuantizeResult resumed = quantize(resume);
  check_same_model(reference.trained_model_path, resumed.trained_model_path);
}
