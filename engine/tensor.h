// Tensor: a contiguous row-major array (float32, or int64 for loaded index
// buffers) on one device, with shared storage and autograd metadata.
//
// Tensors are handles: copying a Tensor shares the same data and graph node.
// The only views are reshape and slicing along dimension 0, both of which stay
// contiguous (a storage offset is all they need).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/kernels.h"

namespace pk {

using Shape = std::vector<int64_t>;

enum class DType : uint8_t { F32, I64 };

const char* dtype_name(DType dtype);
size_t dtype_size(DType dtype);
int64_t shape_numel(const Shape& shape);
std::string shape_str(const Shape& shape);

// Raw device memory, freed by its backend.
struct Storage {
  Storage(size_t bytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  void* data = nullptr;
  size_t bytes = 0;
  Device device;
};

struct Node;
struct TensorImpl;

class Tensor {
 public:
  Tensor() = default;  // undefined tensor (no data)
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- creation ----
  static Tensor empty(const Shape& shape, DType dtype = DType::F32, Device device = Device::CPU);
  static Tensor zeros(const Shape& shape, Device device = Device::CPU);
  static Tensor ones(const Shape& shape, Device device = Device::CPU);
  static Tensor full(const Shape& shape, float value, Device device = Device::CPU);
  static Tensor from_vector(const std::vector<float>& values, const Shape& shape,
                            Device device = Device::CPU);
  static Tensor from_int64(const std::vector<int64_t>& values, const Shape& shape,
                           Device device = Device::CPU);
  static Tensor scalar(float value, Device device = Device::CPU);

  // ---- properties ----
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const;
  int64_t dim() const { return static_cast<int64_t>(shape().size()); }
  int64_t size(int64_t d) const;  // negative d counts from the end
  int64_t numel() const;
  DType dtype() const;
  Device device() const;
  std::string describe() const;  // "float32[2, 3] on cpu"

  // ---- data access (device memory; CPU pointers are host pointers) ----
  float* data() const;
  int64_t* data_i64() const;
  void* raw_data() const;
  std::vector<float> to_vector() const;        // copies to host
  std::vector<int64_t> to_int64_vector() const;
  float item() const;                          // one-element tensor

  // ---- copies and in-place fills (no autograd) ----
  Tensor clone() const;                         // new storage, no graph
  Tensor to(Device device) const;               // copy to a device (same if already there)
  void copy_(const Tensor& src);                // same shape and dtype
  void fill_(float value);
  void zero_() { fill_(0.0f); }

  // ---- views sharing storage (autograd-aware, see ops) ----
  Tensor detach() const;  // same data, no graph, requires_grad false

  // ---- autograd ----
  bool requires_grad() const;
  Tensor& set_requires_grad(bool value);
  Tensor grad() const;            // undefined until a backward reaches this tensor
  void set_grad(const Tensor& g);
  void zero_grad();               // drops the gradient
  void retain_grad();             // keep the gradient of a non-leaf tensor
  bool is_leaf() const;
  const std::shared_ptr<Node>& grad_fn() const;
  // Backward from a one-element tensor (upstream gradient 1) or with an
  // explicit upstream gradient of this tensor's shape. Frees the graph.
  void backward(const Tensor& upstream = Tensor()) const;

  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }

 private:
  std::shared_ptr<TensorImpl> impl_;
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  int64_t offset = 0;  // in elements
  Shape shape;
  DType dtype = DType::F32;
  bool requires_grad = false;
  bool retains_grad = false;
  Tensor grad;
  std::shared_ptr<Node> grad_fn;
};

// Throws std::invalid_argument with `what` and the tensors' descriptions
// when a shape or dtype check fails.
void check(bool condition, const std::string& what);

// The same with a message built by `what()` only when the check fails: ops
// run these checks on every call, and building messages from shapes on
// every call showed up in training-loop profiles.
template <typename What, typename = std::enable_if_t<std::is_invocable_v<What&>>>
void check(bool condition, What&& what) {
  if (!condition) check(false, std::string(what()));
}

}  // namespace pk
