#include "quant/pipeline.h"

#include <sstream>
#include <stdexcept>

#include "engine/log.h"
#include "engine/ops.h"
#include "engine/stopwatch.h"

namespace pk {

Method parse_method(const std::string& name) {
  if (name == "pack") return Method::Pack;
  if (name == "qdrop") return Method::QDrop;
  if (name == "brecq") return Method::Brecq;
  if (name == "adaround") return Method::AdaRound;
  if (name == "rtn") return Method::Rtn;
  throw std::invalid_argument("unknown --method '" + name +
                              "' (pack, qdrop, brecq, adaround or rtn)");
}

const char* method_name(Method method) {
  switch (method) {
    case Method::Pack: return "pack";
    case Method::QDrop: return "qdrop";
    case Method::Brecq: return "brecq";
    case Method::AdaRound: return "adaround";
    case Method::Rtn: return "rtn";
  }
  return "?";
}

std::vector<int64_t> packable_units(const Net& net) {
  std::vector<int64_t> out;
  for (int64_t t = 0; t < net.num_units(); ++t) {
    UnitKind k = net.units()[t].kind;
    if (k == UnitKind::Block || k == UnitKind::Between) out.push_back(t);
  }
  return out;
}

namespace {

std::string pack_name(const Net& net, const Pack& p) {
  std::string name = net.units()[p.first].name;
  if (p.last - p.first > 1) name += ".." + net.units()[p.last - 1].name;
  return name;
}

// What is reconstructed, in network order.
std::vector<ReconTarget> make_targets(QuantModel& model, Method method,
                                      const std::vector<Pack>& packs) {
  Net& net = model.net();
  std::vector<ReconTarget> targets;
  if (method == Method::Rtn) return targets;
  if (method == Method::AdaRound) {
    for (size_t i = 0; i < model.layers().size(); ++i) {
      const QuantLayer& l = model.layers()[i];
      if (l.layer->kind() == LayerKind::MatMul) continue;  // no weights to round
      ReconTarget t;
      t.name = l.name;
      t.layer = static_cast<int64_t>(i);
      targets.push_back(t);
    }
    return targets;
  }
  auto single = [&](int64_t u) {
    ReconTarget t;
    t.name = net.units()[u].name;
    t.first_unit = u;
    t.last_unit = u + 1;
    return t;
  };
  const std::vector<int64_t> packable = packable_units(net);
  for (int64_t u = 0; u < net.num_units(); ++u)
    if (net.units()[u].kind == UnitKind::Before) targets.push_back(single(u));
  if (method == Method::Pack) {
    for (const Pack& p : packs) {
      ReconTarget t;
      t.name = pack_name(net, p);
      t.first_unit = p.first;
      t.last_unit = p.last;
      t.mix_inputs = true;
      targets.push_back(t);
    }
  } else {
    for (int64_t u : packable) {
      ReconTarget t = single(u);
      t.mix_inputs = method == Method::QDrop;
      targets.push_back(t);
    }
  }
  for (int64_t u = 0; u < net.num_units(); ++u)
    if (net.units()[u].kind == UnitKind::After) targets.push_back(single(u));
  return targets;
}

// Reconstructs report.targets from the first one without a result on,
// telling `observe` after each, then fixes every rounding to hard.
void reconstruct_targets(QuantModel& model, const Tensor& calibration,
                         const PipelineOptions& options, Generator& gen,
                         const RunObserver& observe, PipelineReport& report) {
  const int64_t count = static_cast<int64_t>(report.targets.size());
  // A resumed run computes the first target's inputs from the images.
  UnitInputs carried;
  for (int64_t i = static_cast<int64_t>(report.reconstruction.size()); i < count; ++i) {
    const ReconTarget& target = report.targets[i];
    log_line("reconstruction " + std::to_string(i + 1) + "/" + std::to_string(count) + ": " +
             target.name);
    report.reconstruction.push_back(
        reconstruct(model, target, calibration, options.recon, gen, &carried));
    if (observe) {
      RunEvent event{RunEvent::Kind::TargetFinished, RunPhase::Reconstruction};
      event.target_index = i;
      event.target_count = count;
      event.target = &target;
      event.result = &report.reconstruction.back();
      event.model = &model;
      event.pipeline = &report;
      observe(event);
    }
  }
  harden_soft_rounding(model);
}

// The rest of an interrupted run: its targets again (they follow from its
// method and packs) and the reconstruction from the first unfinished one.
PipelineReport continue_pipeline(QuantModel& model, const Tensor& calibration,
                                 const PipelineOptions& options, Generator& gen,
                                 const RunObserver& observe, const PipelineReport& interrupted) {
  PipelineReport report = interrupted;
  report.targets = make_targets(model, options.method, report.packs);
  check(report.targets.size() == interrupted.targets.size() &&
            report.reconstruction.size() <= report.targets.size(),
        "the resumed run's reconstruction targets differ from the interrupted run's");
  for (size_t i = 0; i < report.targets.size(); ++i)
    check(report.targets[i].name == interrupted.targets[i].name, [&] {
      return "the resumed run's target " + std::to_string(i + 1) + " is " + report.targets[i].name +
             ", the interrupted run's " + interrupted.targets[i].name;
    });
  log_line("resuming after " + std::to_string(report.reconstruction.size()) + " of " +
           std::to_string(report.targets.size()) + " reconstruction targets");
  if (observe) observe({RunEvent::Kind::PhaseStarted, RunPhase::Reconstruction});
  Stopwatch phase;
  reconstruct_targets(model, calibration, options, gen, observe, report);
  // The phase's time: the interrupted run's part plus this run's.
  report.phase_seconds["reconstruction"] += phase.seconds();
  if (observe) {
    RunEvent event{RunEvent::Kind::PhaseFinished, RunPhase::Reconstruction};
    event.seconds = report.phase_seconds["reconstruction"];
    event.model = &model;
    observe(event);
  }
  model.set_quant(true, true);
  return report;
}

}  // namespace

const char* run_phase_name(RunPhase phase) {
  switch (phase) {
    case RunPhase::Data: return "data";
    case RunPhase::Fp32Eval: return "fp32_eval";
    case RunPhase::Init: return "init";
    case RunPhase::Scoring: return "scoring";
    case RunPhase::MixedPrecision: return "mixed_precision";
    case RunPhase::Reconstruction: return "reconstruction";
    case RunPhase::QuantEval: return "quant_eval";
    case RunPhase::Analysis: return "analysis";
    case RunPhase::Save: return "save";
  }
  return "?";
}

PipelineReport run_pipeline(QuantModel& model, const Tensor& calibration,
                            const PipelineOptions& options, Generator& gen, bool resumed,
                            const RunObserver& observe, const PipelineReport* interrupted) {
  if (interrupted) return continue_pipeline(model, calibration, options, gen, observe, *interrupted);
  PipelineReport report;
  Net& net = model.net();
  const Tensor first_batch =
      slice_rows(calibration, 0, std::min(options.batch_size, calibration.size(0)));
  Stopwatch phase;
  auto started = [&](RunPhase p) {
    phase.restart();
    if (observe) observe({RunEvent::Kind::PhaseStarted, p});
  };
  // Records the phase's time in the report and tells the observer.
  auto finished = [&](RunPhase p) {
    const double seconds = phase.seconds();
    if (p != RunPhase::MixedPrecision) report.phase_seconds[run_phase_name(p)] = seconds;
    if (!observe) return;
    RunEvent event{RunEvent::Kind::PhaseFinished, p};
    event.seconds = seconds;
    event.model = &model;
    observe(event);
  };

  started(RunPhase::Init);
  if (!resumed) {
    log_line("initializing quantizers on one batch of " + std::to_string(first_batch.size(0)) +
             " images");
    model.initialize(first_batch);
  }
  finished(RunPhase::Init);

  const std::vector<int64_t> packable = packable_units(net);
  const bool need_scores = options.method == Method::Pack || options.mixed_precision;
  if (need_scores && !packable.empty()) {
    started(RunPhase::Scoring);
    report.scores = hessian_scores(model, calibration, options.batch_size, packable);
    for (const UnitScore& s : report.scores) {
      std::ostringstream os;
      os << "unit " << net.units()[s.unit].name << ": KL " << s.kl << " hessian " << s.hessian
         << " omega " << s.omega;
      log_line(os.str());
    }
    if (options.method == Method::Pack) {
      report.packs = make_packs(report.scores);
    } else {  // bit groups of the block-wise and layer-wise methods: one per unit
      for (const UnitScore& s : report.scores) report.packs.push_back({s.unit, s.unit + 1, s.omega, 0});
    }
    for (const Pack& p : report.packs)
      log_line("pack " + pack_name(net, p) + " (" + std::to_string(p.last - p.first) +
               " units, score " + std::to_string(p.score) + ")");
    finished(RunPhase::Scoring);
  }

  if (options.mixed_precision) {
    started(RunPhase::MixedPrecision);
    const QuantSettings& s = model.settings();
    check(s.weight_bits == s.activation_bits,
          "--enable_mixed_precision needs --weight_bits equal to --activation_bits");
    std::vector<int64_t> boundary;
    for (int64_t u = 0; u < net.num_units(); ++u)
      if (net.units()[u].kind == UnitKind::Before || net.units()[u].kind == UnitKind::After)
        boundary.push_back(u);
    report.mixed_precision = true;
    report.plan = assign_mixed_precision(model, report.packs, boundary, s.weight_bits);
    for (int64_t u : boundary) model.set_unit_bits(u, report.plan.boundary_bits);
    for (const Pack& p : report.packs) {
      for (int64_t u = p.first; u < p.last; ++u) model.set_unit_bits(u, p.bits);
      log_line("pack " + pack_name(net, p) + ": " + std::to_string(p.bits) + " bits");
    }
    std::ostringstream os;
    os << "mixed precision: boundary units " << report.plan.boundary_bits
       << " bits, average " << report.plan.average_bits << " bits; re-initializing quantizers";
    log_line(os.str());
    model.initialize(first_batch);
    finished(RunPhase::MixedPrecision);
  }

  started(RunPhase::Reconstruction);
  report.targets = make_targets(model, options.method, report.packs);
  reconstruct_targets(model, calibration, options, gen, observe, report);
  finished(RunPhase::Reconstruction);
  model.set_quant(true, true);
  return report;
}

}  // namespace pk
