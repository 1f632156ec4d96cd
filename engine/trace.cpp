#include "engine/trace.h"

namespace pk {

namespace {
thread_local OpTrace* t_trace = nullptr;
}

OpTrace::OpTrace() : previous_(t_trace) { t_trace = this; }
OpTrace::~OpTrace() { t_trace = previous_; }

OpTrace* active_trace() { return t_trace; }

}  // namespace pk
