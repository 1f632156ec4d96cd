// Stopping a long run at a safe point: a signal handler (or any thread)
// requests it, and the work checks at the points where stopping loses
// nothing but the step in progress (each reconstruction iteration; the run
// keeps its last checkpoint).
#pragma once

#include <stdexcept>
#include <string>

namespace pk {

// Async-signal-safe: sets a flag.
void request_interrupt();
bool interrupt_requested();
void clear_interrupt();

struct Interrupted : std::runtime_error {
  explicit Interrupted(const std::string& what) : std::runtime_error(what) {}
};

// Throws Interrupted when an interrupt was requested.
void check_interrupt();

}  // namespace pk
