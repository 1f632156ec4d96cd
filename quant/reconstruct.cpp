#include "quant/reconstruct.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <stdexcept>

#include "engine/autograd.h"
#include "engine/interrupt.h"
#include "engine/log.h"
#include "engine/ops.h"
#include "engine/ops_quant.h"
#include "engine/optim.h"
#include "engine/parallel.h"
#include "quant/shard_params.h"

namespace pk {

double rounding_beta(int64_t count, const ReconOptions& opt) {
  double start_decay = opt.warmup * static_cast<double>(opt.iterations);
  if (static_cast<double>(count) < start_decay) return opt.beta_start;
  double rel = (static_cast<double>(count) - start_decay) /
               (static_cast<double>(opt.iterations) - start_decay);
  return opt.beta_end + (opt.beta_start - opt.beta_end) * std::max(0.0, 1.0 - rel);
}

namespace {

struct Captured {
  Tensor x_q, x_fp, y;
};

std::vector<size_t> target_layers(QuantModel& model, const ReconTarget& target) {
  if (target.layer >= 0) return {static_cast<size_t>(target.layer)};
  std::vector<size_t> out;
  for (int64_t t = target.first_unit; t < target.last_unit; ++t)
    for (size_t i : model.unit_layers(t)) out.push_back(i);
  return out;
}

// Forward of a single Conv/Linear layer (layer-wise targets).
Tensor layer_forward(HookedLayer* layer, const Tensor& x) {
  if (auto* conv = dynamic_cast<Conv2d*>(layer)) return conv->forward(x);
  if (auto* lin = dynamic_cast<Linear*>(layer)) return lin->forward(x);
  throw std::invalid_argument("layer-wise reconstruction needs a Conv2d or Linear layer");
}

Tensor run_target(QuantModel& model, const ReconTarget& target, const Tensor& x) {
  if (target.layer >= 0) return layer_forward(model.layers()[target.layer].layer, x);
  return model.net().forward_range(x, target.first_unit, target.last_unit);
}

// Runs f on row batches of `rows` (batch_size at a time, as a capture from
// the images would) and concatenates the results.
template <typename F>
Tensor by_batches(const Tensor& rows, int64_t batch_size, F f) {
  std::vector<Tensor> out;
  const int64_t n = rows.size(0);
  for (int64_t b0 = 0; b0 < n; b0 += batch_size)
    out.push_back(f(slice_rows(rows, b0, std::min(batch_size, n - b0))));
  return concat(out, 0);
}

// Moves `inputs` on to the inputs of unit `unit` under the current
// quantization state: unit by unit from the inputs of an earlier unit (whose
// targets are all reconstructed by now), else from the images.
void advance_inputs(QuantModel& model, int64_t unit, const Tensor& calibration, int64_t batch_size,
                    UnitInputs& inputs) {
  Net& net = model.net();
  if (inputs.unit < 0 || inputs.unit > unit) {
    auto from_images = [&](const Tensor& images) {
      return unit == 0 ? images : net.glue(unit - 1, net.forward_range(images, 0, unit));
    };
    model.set_quant(true, true);
    Tensor x_q = by_batches(calibration, batch_size, from_images);
    model.set_quant(false, false);
    inputs = UnitInputs{unit, x_q, by_batches(calibration, batch_size, from_images)};
    return;
  }
  for (; inputs.unit < unit; ++inputs.unit) {
    const int64_t u = inputs.unit;
    auto next = [&](const Tensor& x) { return net.glue(u, net.forward_range(x, u, u + 1)); };
    model.set_quant(true, true);
    inputs.x_q = by_batches(inputs.x_q, batch_size, next);
    model.set_quant(false, false);
    inputs.x_fp = by_batches(inputs.x_fp, batch_size, next);
  }
}

Captured capture(QuantModel& model, const ReconTarget& target, const Tensor& calibration,
                 int64_t batch_size, UnitInputs& inputs) {
  NoGradGuard guard;
  Net& net = model.net();
  const int64_t unit = target.layer >= 0 ? model.layers()[target.layer].unit : target.first_unit;
  advance_inputs(model, unit, calibration, batch_size, inputs);
  if (target.layer < 0) {
    model.set_quant(false, false);
    Tensor y = by_batches(inputs.x_fp, batch_size, [&](const Tensor& x) {
      return net.forward_range(x, target.first_unit, target.last_unit);
    });
    return {inputs.x_q, inputs.x_fp, y};
  }
  // The layer's own input, seen by its hook as its unit runs.
  QuantLayer& ql = model.layers()[target.layer];
  auto layer_input = [&](const Tensor& x) {
    ql.hook->start_capture();
    net.forward_range(x, unit, unit + 1);
    return ql.hook->finish_capture().front();
  };
  model.set_quant(true, true);
  Tensor x_q = by_batches(inputs.x_q, batch_size, layer_input);
  model.set_quant(false, false);
  Tensor x_fp = by_batches(inputs.x_fp, batch_size, layer_input);
  Tensor y =
      by_batches(x_fp, batch_size, [&](const Tensor& x) { return layer_forward(ql.layer, x); });
  return {x_q, x_fp, y};
}

// Each shard's leaf copies of the hook's quantized weight (`weight`,
// undefined without a weight quantizer) and of its operand scales.
std::vector<ShardCopies> make_shard_copies(const QuantHook& hook, const Tensor& weight,
                                           int64_t shards) {
  std::vector<ShardCopies> out(static_cast<size_t>(shards));
  for (ShardCopies& copies : out) {
    if (weight.defined()) copies.weight = weight.detach().set_requires_grad(true);
    for (const auto& q : hook.operand_quantizers)
      copies.operand_scales.push_back(q ? q->scale.detach().set_requires_grad(true) : Tensor());
  }
  return out;
}

// The shard copies of one step on the target's hooks, removed when the step
// ends (or throws).
class InstalledShardCopies {
 public:
  InstalledShardCopies(const std::vector<QuantHook*>& hooks, const ShardThreads& threads,
                       const std::vector<Tensor>& weights)
      : hooks_(hooks) {
    for (size_t h = 0; h < hooks.size(); ++h)
      hooks[h]->install_shard_copies(threads,
                                     make_shard_copies(*hooks[h], weights[h], threads.shards()));
  }
  ~InstalledShardCopies() {
    for (QuantHook* hook : hooks_) hook->remove_shard_copies();
  }
  InstalledShardCopies(const InstalledShardCopies&) = delete;
  InstalledShardCopies& operator=(const InstalledShardCopies&) = delete;

 private:
  const std::vector<QuantHook*>& hooks_;
};

// Sum over the shards of the gradient of their copy `copy` picks (undefined
// when no shard's loss reached it).
template <typename Pick>
Tensor summed_grad(const std::vector<ShardCopies>& shards, Pick copy) {
  NoGradGuard guard;
  Tensor sum;
  for (const ShardCopies& copies : shards) {
    Tensor g = copy(copies).grad();
    if (g.defined()) sum = sum.defined() ? add(sum, g) : g;
  }
  return sum;
}

}  // namespace

ReconResult reconstruct(QuantModel& model, const ReconTarget& target, const Tensor& calibration,
                        const ReconOptions& opt, Generator& gen, UnitInputs* carried) {
  check(opt.iterations > 0 && opt.batch_size > 0,
        "reconstruction needs positive iterations and batch size");
  auto start = std::chrono::steady_clock::now();
  const FrozenParameters frozen(model.net());
  UnitInputs own_inputs;
  Captured data =
      capture(model, target, calibration, opt.batch_size, carried ? *carried : own_inputs);
  const int64_t n = data.x_q.size(0);

  // Trainable state: AdaRound alphas and activation scales of the target.
  std::vector<size_t> layers = target_layers(model, target);
  std::vector<Tensor> alphas, scales;
  model.set_quant(false, false);
  for (size_t i : layers) {
    QuantLayer& ql = model.layers()[i];
    ql.hook->set_quant(true, true);
    if (auto& wq = ql.hook->weight_quantizer) {
      wq->start_adaround(ql.hook->layer_weight);
      alphas.push_back(wq->alpha);
    }
    for (auto& q : ql.hook->operand_quantizers)
      if (q) scales.push_back(q->scale.set_requires_grad(true));
  }
  std::unique_ptr<Adam> alpha_opt, scale_opt;
  std::unique_ptr<CosineSchedule> schedule;
  if (!alphas.empty()) alpha_opt = std::make_unique<Adam>(alphas, static_cast<float>(opt.alpha_lr));
  if (!scales.empty()) {
    scale_opt = std::make_unique<Adam>(scales, static_cast<float>(opt.scale_lr));
    schedule = std::make_unique<CosineSchedule>(*scale_opt, opt.iterations);
  }

  // Data parallelism over the batch on the CPU: the kernels of one small
  // target cannot keep several threads busy, shards of the batch can.
  const int64_t shards = batch_shards(data.x_q.device() == Device::CPU, opt.batch_size);
  ShardThreads shard_threads(shards);
  std::vector<QuantHook*> hooks;
  for (size_t i : layers) hooks.push_back(model.layers()[i].hook.get());

  const int64_t warmup_end = static_cast<int64_t>(opt.warmup * static_cast<double>(opt.iterations));
  const int64_t tail = std::max<int64_t>(1, opt.iterations / 20);
  double tail_sum = 0;
  const int64_t curve_step = std::max<int64_t>(1, opt.iterations / kReconCurvePoints);
  std::vector<ReconSample> curve;
  Progress progress("reconstruct " + target.name, opt.iterations);
  std::vector<int64_t> idx(opt.batch_size);
  std::vector<double> shard_rec(shards);
  for (int64_t it = 0; it < opt.iterations; ++it) {
    check_interrupt();  // ctrl-C: the target's work so far is dropped, the run's checkpoint stays
    for (auto& v : idx) v = gen.randint(n);  // uniform, with replacement
    Tensor index = Tensor::from_int64(idx, {opt.batch_size}, data.x_q.device());
    Tensor input = index_select(data.x_q, 0, index);
    if (target.mix_inputs) {
      Tensor mask = Tensor::empty(input.shape());
      gen.fill_bernoulli(mask.data(), mask.numel(), opt.input_prob);
      input = where(mask.to(input.device()), input, index_select(data.x_fp, 0, index));
    }
    Tensor wanted = index_select(data.y, 0, index);
    if (alpha_opt) alpha_opt->zero_grad();
    if (scale_opt) scale_opt->zero_grad();

    // The soft-quantized weights once per step; each shard trains on leaf
    // copies of them and of the scales.
    std::vector<Tensor> weights(hooks.size());
    for (size_t h = 0; h < hooks.size(); ++h)
      if (hooks[h]->weight_quantizer) weights[h] = hooks[h]->weight(hooks[h]->layer_weight);
    const InstalledShardCopies installed(hooks, shard_threads, weights);
    // Each shard's loss carries its share of the batch, so the shard losses
    // (and gradients) add up to the loss of the whole batch.
    auto run_shard = [&](int64_t s) {
      const ShardRows r = shard_rows(opt.batch_size, shards, s);
      const ShardThreads::Binding binding(shard_threads, s);
      Tensor rec =
          mul(reconstruction_mse(run_target(model, target, slice_rows(input, r.begin, r.count)),
                                 slice_rows(wanted, r.begin, r.count)),
              static_cast<float>(r.count) / static_cast<float>(opt.batch_size));
      rec.backward();
      shard_rec[s] = rec.item();
    };
    run_on_threads(shards, run_shard);
    double rec_value = 0;
    for (double r : shard_rec) rec_value += r;
    for (size_t h = 0; h < hooks.size(); ++h) {
      if (!weights[h].defined()) continue;
      Tensor grad = summed_grad(hooks[h]->shard_copies(),
                                [](const ShardCopies& c) -> const Tensor& { return c.weight; });
      if (grad.defined() && weights[h].requires_grad()) weights[h].backward(grad);
    }
    for (QuantHook* hook : hooks)
      for (size_t k = 0; k < hook->operand_quantizers.size(); ++k) {
        if (!hook->operand_quantizers[k]) continue;
        Tensor grad = summed_grad(hook->shard_copies(), [k](const ShardCopies& c) -> const Tensor& {
          return c.operand_scales[k];
        });
        if (grad.defined()) hook->operand_quantizers[k]->scale.set_grad(grad);
      }

    const int64_t count = it + 1;
    const double beta = rounding_beta(count, opt);
    double round_value = 0;
    if (count >= warmup_end && !alphas.empty()) {
      Tensor round_loss;
      for (const Tensor& a : alphas) {
        Tensor term =
            adaround_round_loss(a, static_cast<float>(beta), static_cast<float>(opt.round_weight));
        round_loss = round_loss.defined() ? add(round_loss, term) : term;
      }
      round_loss.backward();
      round_value = round_loss.item();
    }
    if (alpha_opt) alpha_opt->step();
    if (scale_opt) {
      scale_opt->step();
      schedule->step();
    }
    if (it >= opt.iterations - tail) tail_sum += rec_value;
    if (count % curve_step == 0 || count == opt.iterations)
      curve.push_back({count, rec_value, round_value, beta});
    char detail[128];
    std::snprintf(detail, sizeof detail, "rec %.5g round %.4g beta %.2f", rec_value, round_value,
                  beta);
    progress.update(count, detail);
  }
  // Fix the decisions: hard rounding (or soft until harden_soft_rounding),
  // scales no longer trained.
  for (size_t i : layers) {
    QuantLayer& ql = model.layers()[i];
    if (auto& wq = ql.hook->weight_quantizer) {
      if (!opt.keep_soft_rounding) wq->harden();
      wq->alpha.set_requires_grad(false);
      wq->alpha.zero_grad();
    }
    for (auto& q : ql.hook->operand_quantizers)
      if (q) {
        q->scale.set_requires_grad(false);
        q->scale.zero_grad();
      }
  }
  double final_loss = tail_sum / static_cast<double>(std::min(tail, opt.iterations));
  char detail[64];
  std::snprintf(detail, sizeof detail, "final rec loss %.5g", final_loss);
  progress.finish(detail);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return {target.name, final_loss, seconds, std::move(curve)};
}

void harden_soft_rounding(QuantModel& model) {
  for (QuantLayer& ql : model.layers())
    if (auto& wq = ql.hook->weight_quantizer; wq && wq->rounding == Rounding::Soft) wq->harden();
}

}  // namespace pk
