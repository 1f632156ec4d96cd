#include "engine/tensor.h"

#include <cstring>
#include <sstream>
#include <stdexcept>

#include "engine/autograd.h"

namespace pk {

const char* dtype_name(DType dtype) { return dtype == DType::F32 ? "float32" : "int64"; }
size_t dtype_size(DType dtype) { return dtype == DType::F32 ? 4 : 8; }

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string shape_str(const Shape& shape) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << "]";
  return os.str();
}

void check(bool condition, const std::string& what) {
  if (!condition) throw std::invalid_argument(what);
}

Storage::Storage(size_t nbytes, Device dev) : bytes(nbytes), device(dev) {
  data = backend(dev).alloc(nbytes);
}
Storage::~Storage() { backend(device).release(data); }

// ---- creation ----

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t d : shape)
    check(d >= 0, [&] { return "negative dimension in shape " + shape_str(shape); });
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(shape_numel(shape) * dtype_size(dtype), device);
  impl->shape = shape;
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

Tensor Tensor::full(const Shape& shape, float value, Device device) {
  Tensor t = empty(shape, DType::F32, device);
  t.fill_(value);
  return t;
}
Tensor Tensor::zeros(const Shape& shape, Device device) { return full(shape, 0.0f, device); }
Tensor Tensor::ones(const Shape& shape, Device device) { return full(shape, 1.0f, device); }
Tensor Tensor::scalar(float value, Device device) { return full({}, value, device); }

Tensor Tensor::from_vector(const std::vector<float>& values, const Shape& shape, Device device) {
  check(static_cast<int64_t>(values.size()) == shape_numel(shape), [&] {
    return "from_vector: " + std::to_string(values.size()) + " values for shape " +
           shape_str(shape);
  });
  Tensor t = empty(shape, DType::F32, device);
  backend(device).copy_from_host(t.raw_data(), values.data(), values.size() * sizeof(float));
  return t;
}

Tensor Tensor::from_int64(const std::vector<int64_t>& values, const Shape& shape, Device device) {
  check(static_cast<int64_t>(values.size()) == shape_numel(shape), [&] {
    return "from_int64: " + std::to_string(values.size()) + " values for shape " + shape_str(shape);
  });
  Tensor t = empty(shape, DType::I64, device);
  backend(device).copy_from_host(t.raw_data(), values.data(), values.size() * sizeof(int64_t));
  return t;
}

// ---- properties ----

const Shape& Tensor::shape() const {
  check(defined(), "use of an undefined tensor");
  return impl_->shape;
}

int64_t Tensor::size(int64_t d) const {
  int64_t n = dim();
  if (d < 0) d += n;
  check(d >= 0 && d < n,
        [&] { return "dimension " + std::to_string(d) + " out of range for " + describe(); });
  return impl_->shape[d];
}

int64_t Tensor::numel() const { return shape_numel(shape()); }
DType Tensor::dtype() const { return impl_->dtype; }
Device Tensor::device() const { return impl_->storage->device; }

std::string Tensor::describe() const {
  if (!defined()) return "undefined tensor";
  return std::string(dtype_name(dtype())) + shape_str(shape()) + " on " + device_name(device());
}

void* Tensor::raw_data() const {
  check(defined(), "use of an undefined tensor");
  return static_cast<char*>(impl_->storage->data) + impl_->offset * dtype_size(impl_->dtype);
}

float* Tensor::data() const {
  check(dtype() == DType::F32, [&] { return "expected a float32 tensor, got " + describe(); });
  return static_cast<float*>(raw_data());
}

int64_t* Tensor::data_i64() const {
  check(dtype() == DType::I64, [&] { return "expected an int64 tensor, got " + describe(); });
  return static_cast<int64_t*>(raw_data());
}

std::vector<float> Tensor::to_vector() const {
  std::vector<float> out(numel());
  backend(device()).copy_to_host(out.data(), data(), out.size() * sizeof(float));
  return out;
}

std::vector<int64_t> Tensor::to_int64_vector() const {
  std::vector<int64_t> out(numel());
  backend(device()).copy_to_host(out.data(), data_i64(), out.size() * sizeof(int64_t));
  return out;
}

float Tensor::item() const {
  check(numel() == 1, [&] { return "item() needs a one-element tensor, got " + describe(); });
  return to_vector()[0];
}

// ---- copies ----

Tensor Tensor::clone() const {
  Tensor t = empty(shape(), dtype(), device());
  backend(device()).copy_on_device(t.raw_data(), raw_data(), numel() * dtype_size(dtype()));
  return t;
}

Tensor Tensor::to(Device target) const {
  if (target == device()) return *this;
  Tensor t = empty(shape(), dtype(), target);
  size_t bytes = numel() * dtype_size(dtype());
  if (device() == Device::CPU) {
    backend(target).copy_from_host(t.raw_data(), raw_data(), bytes);
  } else {
    std::vector<char> host(bytes);
    backend(device()).copy_to_host(host.data(), raw_data(), bytes);
    backend(target).copy_from_host(t.raw_data(), host.data(), bytes);
  }
  return t;
}

void Tensor::copy_(const Tensor& src) {
  check(src.shape() == shape() && src.dtype() == dtype(), [&] {
    return "copy_: source " + src.describe() + " does not match destination " + describe();
  });
  Tensor s = src.to(device());
  backend(device()).copy_on_device(raw_data(), s.raw_data(), numel() * dtype_size(dtype()));
}

void Tensor::fill_(float value) { backend(device()).fill(data(), numel(), value); }

Tensor Tensor::detach() const {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = impl_->storage;
  impl->offset = impl_->offset;
  impl->shape = impl_->shape;
  impl->dtype = impl_->dtype;
  return Tensor(std::move(impl));
}

// ---- autograd ----

bool Tensor::requires_grad() const { return impl_ && impl_->requires_grad; }

Tensor& Tensor::set_requires_grad(bool value) {
  check(dtype() == DType::F32 || !value, "only float tensors can require grad");
  impl_->requires_grad = value;
  return *this;
}

Tensor Tensor::grad() const { return impl_->grad; }
void Tensor::set_grad(const Tensor& g) { impl_->grad = g; }
void Tensor::zero_grad() { impl_->grad = Tensor(); }
void Tensor::retain_grad() { impl_->retains_grad = true; }
bool Tensor::is_leaf() const { return !impl_->grad_fn; }
const std::shared_ptr<Node>& Tensor::grad_fn() const { return impl_->grad_fn; }

void Tensor::backward(const Tensor& upstream) const {
  if (upstream.defined()) {
    run_backward(*this, upstream);
  } else {
    check(numel() == 1, [&] {
      return "backward() without a gradient needs a one-element tensor, got " + describe();
    });
    run_backward(*this, Tensor::full(shape(), 1.0f, device()));
  }
}

}  // namespace pk
