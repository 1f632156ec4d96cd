// run_on_threads: every task runs once, on its own thread with
// single-threaded kernels inside, and task errors reach the caller.
#include <omp.h>

#include <atomic>
#include <set>
#include <stdexcept>
#include <vector>

#include "engine/parallel.h"
#include "tests/testing.h"

using namespace pk;

TEST_CASE("run_on_threads runs each task once on its own thread, kernels inside serial") {
  const int previous = num_threads();
  set_num_threads(2);
  std::vector<int> runs(2, 0), inner_threads(2, 0), thread_ids(2, -1);
  std::vector<int> inside(2, 0);  // not vector<bool>: its bits share words
  run_on_threads(2, [&](int64_t i) {
    ++runs[i];
    inner_threads[i] = num_threads();
    thread_ids[i] = omp_get_thread_num();
    inside[i] = in_parallel_region();
  });
  CHECK(runs == std::vector<int>{1, 1});
  CHECK(inner_threads == std::vector<int>{1, 1});
  CHECK(std::set<int>(thread_ids.begin(), thread_ids.end()).size() == 2);
  CHECK(inside == std::vector<int>{1, 1});
  CHECK(num_threads() == 2);  // the caller's thread count is untouched

  // One task runs on the calling thread, outside any parallel region.
  bool single_inside = true;
  run_on_threads(1, [&](int64_t) { single_inside = in_parallel_region(); });
  CHECK_FALSE(single_inside);
  set_num_threads(previous);
}

TEST_CASE("run_on_threads rethrows a task's exception after every task finished") {
  const int previous = num_threads();
  set_num_threads(2);
  std::atomic<int> finished{0};
  CHECK_THROWS_WITH_AS(run_on_threads(2,
                                      [&](int64_t i) {
                                        if (i == 1) throw std::invalid_argument("task 1 failed");
                                        ++finished;
                                      }),
                       "task 1 failed", std::invalid_argument);
  CHECK(finished == 1);
  set_num_threads(previous);
}
