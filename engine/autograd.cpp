#include "engine/autograd.h"

#include <unordered_map>
#include <unordered_set>

#include "engine/ops.h"

namespace pk {

namespace {
thread_local bool t_grad_enabled = true;
}

bool grad_enabled() { return t_grad_enabled; }

NoGradGuard::NoGradGuard() : previous_(t_grad_enabled) { t_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { t_grad_enabled = previous_; }

Tensor record(Tensor out, const char* name, std::vector<Tensor> inputs, BackwardFn backward) {
  if (!t_grad_enabled) return out;
  bool any = false;
  for (const Tensor& t : inputs) any = any || (t.defined() && t.requires_grad());
  if (!any) return out;
  auto node = std::make_shared<Node>();
  node->name = name;
  node->inputs = std::move(inputs);
  node->backward = std::move(backward);
  out.impl()->grad_fn = std::move(node);
  out.impl()->requires_grad = true;
  return out;
}

namespace {

// Post-order DFS from the root over grad_fn edges; iterative so deep graphs
// (a 24-block transformer has thousands of nodes) cannot overflow the stack.
std::vector<TensorImpl*> topological_order(TensorImpl* root) {
  std::vector<TensorImpl*> order;
  std::unordered_set<TensorImpl*> seen{root};
  std::vector<std::pair<TensorImpl*, size_t>> stack{{root, 0}};
  while (!stack.empty()) {
    auto& [impl, next] = stack.back();
    const Node* node = impl->grad_fn.get();
    if (node && next < node->inputs.size()) {
      TensorImpl* child = node->inputs[next++].impl();
      if (child && child->requires_grad && seen.insert(child).second) stack.push_back({child, 0});
      continue;
    }
    order.push_back(impl);
    stack.pop_back();
  }
  return order;  // children before parents
}

void accumulate_into(Tensor& slot, const Tensor& g) {
  if (!slot.defined()) {
    slot = g;
  } else {
    NoGradGuard guard;
    slot = add(slot, g);
  }
}

}  // namespace

void run_backward(const Tensor& root, const Tensor& grad_root) {
  check(root.defined() && root.requires_grad(), "backward: tensor does not require grad");
  check(grad_root.shape() == root.shape(), [&] {
    return "backward: upstream gradient " + shape_str(grad_root.shape()) + " does not match " +
           shape_str(root.shape());
  });
  NoGradGuard guard;  // gradients themselves are not differentiated
  std::vector<TensorImpl*> order = topological_order(root.impl());
  std::unordered_map<TensorImpl*, Tensor> grads;
  grads[root.impl()] = grad_root;
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    TensorImpl* impl = *it;
    auto found = grads.find(impl);
    if (found == grads.end()) continue;
    Tensor g = std::move(found->second);
    grads.erase(found);
    if (!impl->grad_fn || impl->retains_grad) {
      // Grads accumulate across backward calls until zero_grad().
      impl->grad = impl->grad.defined() ? add(impl->grad, g) : g;
    }
    if (!impl->grad_fn) continue;
    Node& node = *impl->grad_fn;
    std::vector<Tensor> input_grads = node.backward(g);
    check(input_grads.size() == node.inputs.size(), [&] {
      return std::string("backward of ") + node.name + " returned the wrong number of gradients";
    });
    for (size_t i = 0; i < node.inputs.size(); ++i) {
      const Tensor& input = node.inputs[i];
      if (!input.defined() || !input.requires_grad() || !input_grads[i].defined()) continue;
      check(input_grads[i].shape() == input.shape(), [&] {
        return std::string("backward of ") + node.name + " produced gradient " +
               shape_str(input_grads[i].shape()) + " for input " + shape_str(input.shape());
      });
      accumulate_into(grads[input.impl()], input_grads[i]);
    }
  }
  // Free the graph: intermediate tensors forget their nodes (and the saved
  // tensors those closures hold).
  for (TensorImpl* impl : order) impl->grad_fn.reset();
}

}  // namespace pk
