#include "quant/hessian.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>
#include <stdexcept>

#include "engine/autograd.h"
#include "engine/log.h"
#include "engine/ops.h"

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

}  // namespace

std::vector<UnitScore> hessian_scores(QuantModel& model, const Tensor& calibration,
                                      int64_t batch_size, const std::vector<int64_t>& units) {
  Net& net = model.net();
  const int64_t n = calibration.size(0);
  std::set<int64_t> wanted(units.begin(), units.end());
  std::vector<Accumulator> acc(net.num_units());
  model.set_quant(false, false);
  Progress progress("hessian scores", n, "img");
  for (int64_t b0 = 0; b0 < n; b0 += batch_size) {
    const int64_t bs = std::min(batch_size, n - b0);
    Tensor x = slice_rows(calibration, b0, bs);  // FP input of unit t
    for (int64_t t = 0; t < net.num_units(); ++t) {
      Tensor z_fp;
      {
        NoGradGuard guard;
        z_fp = net.run_unit(t, x);
      }
      if (wanted.count(t)) {
        Tensor z_q, p;
        {
          NoGradGuard guard;
          model.set_unit_quant(t, true, true);  // f_t: only unit t quantized
          z_q = net.run_unit(t, x);
          model.set_unit_quant(t, false, false);
          p = softmax(logits_after(net, t, z_q));
        }
        Tensor z = z_fp.detach().set_requires_grad(true);
        Tensor loss = kl_div_batchmean(log_softmax(logits_after(net, t, z)), p);
        loss.backward();
        std::vector<float> g = z.grad().to_vector(), zf = z_fp.to_vector(), zq = z_q.to_vector();
        Accumulator& a = acc[t];
        a.kl_sum += static_cast<double>(loss.item()) * bs;
        a.samples += bs;
        a.elements += static_cast<int64_t>(g.size());
        for (size_t i = 0; i < g.size(); ++i) {
          double dz = static_cast<double>(zf[i]) - zq[i];
          a.a += g[i] * dz;
          a.b += 0.5 * dz * dz;
          a.c += std::fabs(dz);
        }
      }
      if (t + 1 < net.num_units()) {
        NoGradGuard guard;
        x = net.glue(t, z_fp);
      }
    }
    progress.update(b0 + bs);
  }
  progress.finish();
  std::vector<UnitScore> scores;
  for (int64_t t : units) {
    const Accumulator& a = acc[t];
    double N = static_cast<double>(a.elements);
    double kl = a.kl_sum / static_cast<double>(a.samples);
    double hessian = (kl - a.a / N) / std::max(a.b / N, 1e-12);
    scores.push_back({t, kl, hessian, hessian * (a.c / N)});
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
