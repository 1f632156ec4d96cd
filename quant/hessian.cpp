#include "quant/hessian.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>
#include <stdexcept>

#include "engine/autograd.h"
#include "engine/log.h"
#include "engine/ops.h"
#include "engine/parallel.h"

namespace pk {

namespace {

// Logits of the net continuing from unit t's output.
Tensor logits_after(Net& net, int64_t t, const Tensor& unit_output) {
  if (t == net.num_units() - 1) return unit_output;
  return net.forward_range(net.glue(t, unit_output), t + 1, net.num_units());
}

struct Accumulator {
  double kl_sum = 0, a = 0, b = 0, c = 0;
  int64_t samples = 0, elements = 0;
};

// Adds one shard's terms of unit t: its float output z_fp, its output with
// only unit t quantized z_q, and the batch size it is a share of.
void accumulate_shard(Net& net, int64_t t, const Tensor& z_fp, const Tensor& z_q,
                      int64_t batch_rows, Accumulator& a) {
  Tensor p;
  {
    NoGradGuard guard;
    p = softmax(logits_after(net, t, z_q));
  }
  const int64_t rows = z_fp.size(0);
  Tensor z = z_fp.detach().set_requires_grad(true);
  // Scaled to the shard's share so that z's gradient is that of the whole
  // batch's mean, as the scores are defined on batches.
  Tensor loss = mul(kl_div_batchmean(log_softmax(logits_after(net, t, z)), p),
                    static_cast<float>(rows) / static_cast<float>(batch_rows));
  loss.backward();
  std::vector<float> g = z.grad().to_vector(), zf = z_fp.to_vector(), zq = z_q.to_vector();
  a.kl_sum += static_cast<double>(loss.item()) * batch_rows;
  a.samples += rows;
  a.elements += static_cast<int64_t>(g.size());
  for (size_t i = 0; i < g.size(); ++i) {
    double dz = static_cast<double>(zf[i]) - zq[i];
    a.a += g[i] * dz;
    a.b += 0.5 * dz * dz;
    a.c += std::fabs(dz);
  }
}

}  // namespace

std::vector<UnitScore> hessian_scores(QuantModel& model, const Tensor& calibration,
                                      int64_t batch_size, const std::vector<int64_t>& units) {
  Net& net = model.net();
  const FrozenParameters frozen(net);
  const int64_t n = calibration.size(0);
  std::set<int64_t> wanted(units.begin(), units.end());
  // Each batch is split into shards that run on their own threads (CPU); the
  // quantization switches change only between the shards' steps.
  const int64_t max_shards = batch_shards(calibration.device() == Device::CPU, batch_size);
  std::vector<std::vector<Accumulator>> acc(max_shards, std::vector<Accumulator>(net.num_units()));
  std::vector<Tensor> x(max_shards), z_q(max_shards);
  model.set_quant(false, false);
  Progress progress("hessian scores", n, "img");
  for (int64_t b0 = 0; b0 < n; b0 += batch_size) {
    const int64_t bs = std::min(batch_size, n - b0);
    const int64_t shards = std::min(max_shards, bs);
    for (int64_t s = 0; s < shards; ++s) {  // x[s]: the FP input of unit t
      const ShardRows r = shard_rows(bs, shards, s);
      x[s] = slice_rows(calibration, b0 + r.begin, r.count);
    }
    for (int64_t t = 0; t < net.num_units(); ++t) {
      const bool scored = wanted.count(t) > 0;
      if (scored) {
        model.set_unit_quant(t, true, true);  // f_t: only unit t quantized
        run_on_threads(shards, [&](int64_t s) {
          NoGradGuard guard;
          z_q[s] = net.run_unit(t, x[s]);
        });
        model.set_unit_quant(t, false, false);
      }
      run_on_threads(shards, [&](int64_t s) {
        Tensor z_fp;
        {
          NoGradGuard guard;
          z_fp = net.run_unit(t, x[s]);
        }
        if (scored) accumulate_shard(net, t, z_fp, z_q[s], bs, acc[s][t]);
        if (t + 1 < net.num_units()) {
          NoGradGuard guard;
          x[s] = net.glue(t, z_fp);
        }
      });
    }
    progress.update(b0 + bs);
  }
  progress.finish();
  std::vector<UnitScore> scores;
  for (int64_t t : units) {
    Accumulator a;
    for (const auto& shard : acc) {  // fixed order: the same sums on every run
      a.kl_sum += shard[t].kl_sum;
      a.a += shard[t].a;
      a.b += shard[t].b;
      a.c += shard[t].c;
      a.samples += shard[t].samples;
      a.elements += shard[t].elements;
    }
    double N = static_cast<double>(a.elements);
    double kl = a.kl_sum / static_cast<double>(a.samples);
    double hessian = (kl - a.a / N) / std::max(a.b / N, 1e-12);
    scores.push_back({t, kl, hessian, hessian * (a.c / N), a.a / N, a.b / N});
  }
  return scores;
}

std::vector<Pack> make_packs(const std::vector<UnitScore>& scores) {
  check(!scores.empty(), "packing needs at least one unit");
  const int64_t base = scores.front().unit;
  for (size_t i = 0; i < scores.size(); ++i)
    check(scores[i].unit == base + static_cast<int64_t>(i), "packing needs consecutive units");
  std::vector<size_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  // Stable: equal scores keep network order, so packing is deterministic.
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return scores[a].hessian < scores[b].hessian; });
  int64_t back = static_cast<int64_t>(scores.size());
  std::vector<Pack> packs;
  for (size_t i : order) {
    int64_t t = static_cast<int64_t>(i);
    if (t >= back) continue;
    double omega = 0;
    for (int64_t u = t; u < back; ++u) omega += scores[u].omega;
    packs.push_back({base + t, base + back, omega / static_cast<double>(back - t), 0});
    back = t;
  }
  std::reverse(packs.begin(), packs.end());  // network order
  return packs;
}

MixedPrecisionPlan assign_mixed_precision(const QuantModel& model, std::vector<Pack>& packs,
                                          const std::vector<int64_t>& boundary_units, int bits) {
  MixedPrecisionPlan plan{};
  switch (bits) {
    case 3: plan.low = 2; plan.mid = 3; plan.high = 4; break;
    case 4: plan.low = 3; plan.mid = 4; plan.high = 6; break;
    case 6: plan.low = 4; plan.mid = 6; plan.high = 8; break;
    default:
      throw std::invalid_argument("--enable_mixed_precision needs 3, 4 or 6 bits, got " +
                                  std::to_string(bits));
  }
  double boundary_cost = 0, pack_cost_total = 0;
  for (int64_t t : boundary_units) boundary_cost += static_cast<double>(model.unit_cost(t));
  std::vector<double> pack_cost(packs.size(), 0.0);
  for (size_t p = 0; p < packs.size(); ++p) {
    for (int64_t t = packs[p].first; t < packs[p].last; ++t)
      pack_cost[p] += static_cast<double>(model.unit_cost(t));
    pack_cost_total += pack_cost[p];
  }
  const double total = boundary_cost + pack_cost_total;
  plan.boundary_bits = plan.high;
  plan.budget = total * (plan.mid + plan.high) / 2.0 - boundary_cost * plan.high;
  double used = 0;
  for (size_t p = 0; p < packs.size(); ++p) {
    packs[p].bits = plan.mid;
    used += pack_cost[p] * plan.mid;
  }
  std::vector<size_t> order(packs.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return packs[a].score > packs[b].score; });
  for (size_t p : order) {
    double raised = used + pack_cost[p] * (plan.high - plan.mid);
    if (raised <= plan.budget) {
      packs[p].bits = plan.high;
      used = raised;
    }
  }
  plan.used = used;
  plan.average_bits = total > 0 ? (used + boundary_cost * plan.high) / total : 0.0;
  return plan;
}

}  // namespace pk
