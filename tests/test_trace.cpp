// Op tracing (engine/trace.h): while an OpTrace lives, each op records its
// name, every operand, its output and the attributes its shapes do not
// tell; without one, nothing is recorded.
#include "engine/ops_quant.h"
#include "engine/trace.h"
#include "tests/testing.h"

using namespace pk;

TEST_CASE("traced ops record their operands, output and attributes in order") {
  Generator gen(3);
  const Tensor x = gen.uniform_tensor({2, 3, 5, 5}, -1.0f, 1.0f);
  const Tensor w = gen.uniform_tensor({4, 3, 3, 3}, -1.0f, 1.0f);
  const Tensor scale = Tensor::from_vector({0.1f}, {1});
  const Tensor zero_point = Tensor::from_vector({7.0f}, {1});
  OpTrace trace;
  Conv2dOptions options;
  options.stride_h = 2;
  options.pad_w = 1;
  const Tensor y = conv2d(x, w, Tensor(), options);
  const Tensor p = permute(y, {0, 2, 3, 1});
  const Tensor n = narrow(p, 3, 1, 2);
  const Tensor q = fake_quantize(n, scale, zero_point, -1, 4);
  const Tensor r = add(mul(q, 2.0f), q);
  const Tensor padded = pad(r, {1, 0}, -1.5f);

  const std::vector<TracedOp>& ops = trace.ops();
  std::vector<std::string> names;
  for (const TracedOp& op : ops) names.push_back(op.op);
  CHECK(names == std::vector<std::string>{"conv2d", "permute", "narrow", "fake_quantize",
                                          "mul_scalar", "add", "pad"});
  CHECK(ops[0].inputs.size() == 3);
  CHECK(ops[0].inputs[0].impl() == x.impl());
  CHECK(ops[0].inputs[1].impl() == w.impl());
  CHECK_FALSE(ops[0].inputs[2].defined());
  CHECK(ops[0].output.impl() == y.impl());
  CHECK(ops[0].attrs.ints == std::vector<int64_t>{2, 1, 0, 1, 1, 1, 1});
  CHECK(ops[1].attrs.ints == std::vector<int64_t>{0, 2, 3, 1});
  CHECK(ops[2].attrs.ints == std::vector<int64_t>{3, 1, 2});
  CHECK(ops[3].inputs[2].impl() == zero_point.impl());
  CHECK(ops[3].attrs.ints == std::vector<int64_t>{-1, 4});
  CHECK(ops[4].attrs.floats.at(0) == 2.0f);
  CHECK(ops[5].inputs[0].impl() == ops[4].output.impl());
  CHECK(ops[5].inputs[1].impl() == q.impl());
  CHECK(ops[6].attrs.ints == std::vector<int64_t>{1, 0});
  CHECK(ops[6].attrs.floats == std::vector<float>{-1.5f});
  CHECK(ops[6].output.impl() == padded.impl());
}

TEST_CASE("without a trace nothing is recorded, and a nested trace gives the outer one back") {
  const Tensor x = Tensor::ones({2, 2});
  CHECK(active_trace() == nullptr);
  relu(x);
  OpTrace outer;
  relu(x);
  {
    OpTrace inner;
    CHECK(active_trace() == &inner);
    sigmoid(x);
    CHECK(inner.ops().size() == 1);
  }
  CHECK(active_trace() == &outer);
  exp(x);
  REQUIRE(outer.ops().size() == 2);
  CHECK(outer.ops()[0].op == "relu");
  CHECK(outer.ops()[1].op == "exp");
}
