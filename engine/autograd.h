// Reverse-mode autograd over a graph of nodes. Every differentiable op
// records one Node holding its inputs and a closure that maps the gradient of
// its output to gradients of its inputs. backward() walks the graph in
// reverse topological order, sums gradients where a tensor feeds several ops,
// stores them on leaves (and on non-leaves that asked with retain_grad), and
// then frees the graph.
#pragma once

#include <functional>
#include <vector>

#include "engine/tensor.h"

namespace pk {

// Maps the output gradient to one gradient per input (undefined where the
// input needs none).
using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad_out)>;

struct Node {
  const char* name;
  std::vector<Tensor> inputs;
  BackwardFn backward;
};

// Whether ops record graph nodes on this thread.
bool grad_enabled();

// Disables graph recording for its lifetime (restores the previous state).
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

// Attaches a node to `out` when recording is on and any input requires a
// gradient; returns `out`. Closures must capture outputs only through
// Tensor::detach() so that no node keeps its own output alive.
Tensor record(Tensor out, const char* name, std::vector<Tensor> inputs, BackwardFn backward);

// Runs backward from `root` with upstream gradient `grad_root`.
void run_backward(const Tensor& root, const Tensor& grad_root);

}  // namespace pk
