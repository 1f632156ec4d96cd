#include "engine/interrupt.h"

#include <atomic>

namespace pk {

namespace {
// Lock-free, so setting it from a signal handler is safe.
std::atomic<bool> g_interrupt{false};
static_assert(std::atomic<bool>::is_always_lock_free);
}  // namespace

void request_interrupt() { g_interrupt.store(true, std::memory_order_relaxed); }
bool interrupt_requested() { return g_interrupt.load(std::memory_order_relaxed); }
void clear_interrupt() { g_interrupt.store(false, std::memory_order_relaxed); }

void check_interrupt() {
  if (interrupt_requested()) throw Interrupted("interrupted");
}

}  // namespace pk
