#include "quant/report_html.h"

#include <cmath>
#include <sstream>
#include <stdexcept>

#include "engine/output_files.h"
#include "quant/run_config.h"
#include "quant/svg_chart.h"

namespace pk {

namespace {

using nlohmann::json;
using Style = ChartSeries::Style;

const char* const kStyle = R"(
body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1000px; padding: 0 16px 40px; color: #1b1b1b; }
h1 { font-size: 1.5em; margin: 24px 0 4px; } h2 { font-size: 1.2em; margin-top: 36px; border-bottom: 1px solid #ccc; }
h3 { font-size: 1em; margin: 20px 0 4px; } p.note { color: #555; margin: 4px 0 10px; }
.chart { width: 100%; height: auto; display: block; margin: 8px 0; }
.chart text { font-size: 11px; fill: #222; } .chart .chart-title { font-size: 13px; font-weight: 600; }
.chart .tick { fill: #444; } .chart .axis-label { font-size: 12px; }
.chart .grid { stroke: #e3e3e3; } .chart .axis { stroke: #555; } .chart .line { stroke-width: 1.6; }
.chart .marker { stroke: #888; stroke-dasharray: 4 3; } .chart .marker-label { fill: #555; font-size: 10px; }
.chart .bracket { fill: none; stroke: #333; } .chart .bracket-label { font-size: 10px; }
.chart .empty { fill: #888; font-size: 13px; text-anchor: middle; }
.grid-2 { display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); gap: 0 16px; }
.table-wrap { overflow-x: auto; } table { border-collapse: collapse; font-size: 13px; margin: 6px 0 14px; }
th, td { border-bottom: 1px solid #e0e0e0; padding: 3px 10px 3px 0; text-align: left; white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
details summary { cursor: pointer; color: #333; margin: 4px 0; }
.chart-wrap { overflow-x: auto; }
@media (max-width: 600px) { body { font-size: 14px; padding: 0 8px 24px; } .grid-2 { grid-template-columns: 1fr; }
  .chart { min-width: 560px; } }
@media print { body { max-width: none; } details { display: block; } h2 { break-after: avoid; } .chart { break-inside: avoid; } }
)";

std::string number(const json& value, int digits = 4) {
  if (value.is_number_integer()) return value.dump();
  if (value.is_number()) return format_number(value.get<double>(), digits);
  if (value.is_string()) return escape_html(value.get<std::string>());
  if (value.is_boolean()) return value.get<bool>() ? "on" : "off";
  if (value.is_null()) return "&ndash;";
  return escape_html(value.dump());
}

double as_double(const json& value) {
  if (value.is_number()) return value.get<double>();
  if (value.is_string() && value.get<std::string>() == "inf") return INFINITY;
  return NAN;
}

// A table: header cells, then rows of already formatted cells; columns in
// `numeric` are right-aligned.
std::string table(const std::vector<std::string>& header,
                  const std::vector<std::vector<std::string>>& rows,
                  const std::vector<bool>& numeric = {}) {
  auto is_num = [&](size_t c) { return c < numeric.size() && numeric[c]; };
  std::ostringstream out;
  out << "<div class=\"table-wrap\"><table><thead><tr>";
  for (size_t c = 0; c < header.size(); ++c)
    out << "<th" << (is_num(c) ? " class=\"num\"" : "") << ">" << header[c] << "</th>";
  out << "</tr></thead><tbody>";
  for (const auto& row : rows) {
    out << "<tr>";
    for (size_t c = 0; c < row.size(); ++c)
      out << "<td" << (is_num(c) ? " class=\"num\"" : "") << ">" << row[c] << "</td>";
    out << "</tr>";
  }
  out << "</tbody></table></div>";
  return out.str();
}

Chart chart_of(const std::string& id, const std::string& title, const std::string& x_label,
               const std::string& y_label) {
  Chart chart;
  chart.id = id;
  chart.title = title;
  chart.x_label = x_label;
  chart.y_label = y_label;
  return chart;
}

// A chart in a box that scrolls sideways where the page is narrower than
// the chart can be read at.
std::string chart_html(const Chart& chart) {
  return "<div class=\"chart-wrap\">" + render_chart(chart) + "</div>";
}

std::string numbers_behind(const std::string& table_html) {
  return "<details><summary>Numbers</summary>" + table_html + "</details>";
}

std::string missing(const std::string& what) {
  return "<p class=\"note\">This report has no " + what + ".</p>";
}

std::string summary_section(const json& r) {
  const json& config = r.value("config", json::object());
  std::ostringstream out;
  out << "<h2 id=\"summary\">Summary</h2>";
  std::vector<std::vector<std::string>> rows = {
      {"model", number(r.value("model_name", json()))},
      {"method", number(r.value("method", json()))},
      {"bits (weights / activations)",
       number(r.value("weight_bits", json())) + " / " + number(r.value("activation_bits", json())) +
           (r.value("mixed_precision", false) ? " (pack-wise mixed precision)" : "")},
      {"average bits", number(r.value("average_bits", json()))},
      {"top-1 FP32 / quantized",
       number(r.value("fp32_top1", json())) + " / " + number(r.value("quant_top1", json()))},
      {"top-5 FP32 / quantized",
       number(r.value("fp32_top5", json())) + " / " + number(r.value("quant_top5", json()))},
      {"validation images", number(r.value("val_images", json()))},
      {"seed", number(r.value("seed", json()))},
      {"threads", number(config.value("threads", json()))},
      {"device", number(config.value("device", json()))},
      {"packptq version", number(r.value("packptq_version", json()))},
      {"started", number(r.value("timing", json::object()).value("started_at", json()))}};
  out << table({"", ""}, rows);

  // Settings that differ from the reference's defaults (paths always differ).
  const json defaults = config_to_json(QuantizeConfig{});
  std::vector<std::vector<std::string>> changed;
  for (const auto& [key, value] : config.items()) {
    if (key == "threads" || (defaults.contains(key) && defaults[key] == value)) continue;
    changed.push_back({"<code>--" + escape_html(key) + "</code>", number(value),
                       defaults.contains(key) ? number(defaults[key]) : "&ndash;"});
  }
  out << "<h3>Settings that differ from the defaults</h3>"
      << (changed.empty() ? "<p class=\"note\">None.</p>"
                          : table({"setting", "this run", "default"}, changed));

  // Wall time per phase.
  const json& timing = r.value("timing", json::object());
  Chart chart = chart_of("chart-phases", "Wall time per phase", "phase", "seconds");
  ChartSeries seconds{"seconds", {}, Style::Bars};
  std::vector<std::vector<std::string>> phase_rows;
  for (const char* phase : {"data", "fp32_eval", "init", "scoring", "reconstruction", "quant_eval",
                            "analysis", "save", "total"}) {
    if (!timing.contains(phase)) continue;
    phase_rows.push_back({phase, number(timing[phase], 3)});
    if (std::string(phase) == "total") continue;
    chart.categories.push_back(phase);
    seconds.y.push_back(as_double(timing[phase]));
  }
  chart.series = {seconds};
  out << "<h3>Time</h3>" << chart_html(chart)
      << numbers_behind(table({"phase", "seconds"}, phase_rows, {false, true}));
  return out.str();
}

// The packs as brackets over the unit sequence of `units`.
std::vector<ChartBracket> pack_brackets(const json& r, const std::vector<std::string>& units) {
  std::vector<ChartBracket> brackets;
  for (const json& pack : r.value("packs", json::array())) {
    const auto names = pack.value("units", std::vector<std::string>());
    if (names.empty()) continue;
    size_t first = units.size(), last = 0;
    for (size_t i = 0; i < units.size(); ++i)
      for (const std::string& n : names)
        if (units[i] == n) first = std::min(first, i), last = std::max(last, i);
    if (first <= last && first < units.size())
      brackets.push_back(
          {first, last, names.size() > 1 ? std::to_string(names.size()) + " units" : ""});
  }
  return brackets;
}

std::string units_section(const json& r) {
  std::ostringstream out;
  out << "<h2 id=\"units\">Unit sensitivity and packs</h2>";
  const json& units = r.value("units", json::array());
  if (units.empty()) return out.str() + missing("unit scores (the method scored no units)");
  out << "<p class=\"note\">Per packable unit: the KL gap L of quantizing it alone, the "
         "first-order "
         "term A/N and second-order term B/N, the Hessian score S = (L - A/N) / (B/N) and the "
         "sensitivity Omega = S &middot; mean|dz| (docs/METHOD.md section 4). Brackets: the packs "
         "reconstructed together.</p>";
  std::vector<std::string> names;
  ChartSeries kl{"KL L", {}}, first{"first-order A/N", {}}, second{"second-order B/N", {}};
  ChartSeries score{"Hessian score S", {}}, omega{"sensitivity Omega", {}};
  std::vector<std::vector<std::string>> rows;
  for (const json& u : units) {
    names.push_back(u.value("name", ""));
    kl.y.push_back(as_double(u.value("kl", json())));
    first.y.push_back(as_double(u.value("first_order", json())));
    second.y.push_back(as_double(u.value("second_order", json())));
    score.y.push_back(as_double(u.value("hessian", json())));
    omega.y.push_back(as_double(u.value("omega", json())));
    rows.push_back({escape_html(names.back()), number(u.value("kind", json())),
                    number(u.value("kl", json())), number(u.value("first_order", json())),
                    number(u.value("second_order", json())), number(u.value("hessian", json())),
                    number(u.value("omega", json()))});
  }
  Chart terms = chart_of("chart-unit-terms", "KL and its first- and second-order terms per unit",
                         "unit (network order)", "value");
  terms.categories = names;
  terms.series = {kl, first, second};
  terms.brackets = pack_brackets(r, names);
  Chart scores = terms;
  scores.id = "chart-unit-scores";
  scores.title = "Hessian score and sensitivity per unit";
  scores.y_label = "score";
  scores.series = {score, omega};
  out << chart_html(scores) << chart_html(terms)
      << numbers_behind(table({"unit", "kind", "KL", "A/N", "B/N", "S", "Omega"}, rows,
                              {false, false, true, true, true, true, true}));
  return out.str();
}

std::string bits_section(const json& r) {
  std::ostringstream out;
  out << "<h2 id=\"bits\">Bits per pack</h2>";
  const json& packs = r.value("packs", json::array());
  if (packs.empty()) return out.str() + missing("packs");
  Chart chart = chart_of("chart-pack-bits", "Weight and activation bits per pack",
                         "pack (network order)", "bits");
  ChartSeries weight{"weight bits", {}, Style::Bars},
      activation{"activation bits", {}, Style::Bars};
  std::vector<std::vector<std::string>> rows;
  for (const json& p : packs) {
    const auto names = p.value("units", std::vector<std::string>());
    const std::string label =
        names.empty() ? "?" : names.front() + (names.size() > 1 ? ".." + names.back() : "");
    chart.categories.push_back(label);
    const json& bits = p.value("bits", json::object());
    weight.y.push_back(as_double(bits.value("weight", json())));
    activation.y.push_back(as_double(bits.value("activation", json())));
    rows.push_back({escape_html(label), std::to_string(names.size()),
                    number(p.value("score", json())), number(bits.value("weight", json())),
                    number(bits.value("activation", json()))});
  }
  chart.series = {weight, activation};
  const double average = as_double(r.value("average_bits", json()));
  if (std::isfinite(average))
    chart.y_markers.push_back({average, "average " + format_number(average, 4) + " bits"});
  std::string budget = "no budget: one bit width for every pack";
  if (r.contains("mixed_precision_budget_bits")) {
    const double b = as_double(r["mixed_precision_budget_bits"]);
    budget = "budget " + format_number(b, 4) + " bits on average, used " +
             format_number(average, 4) + "; boundary units " +
             number(r.value("boundary_bits", json())) + " bits";
    chart.y_markers.push_back({b, "budget " + format_number(b, 4)});
  }
  out << "<p class=\"note\">" << budget << ".</p>" << chart_html(chart)
      << numbers_behind(table({"pack", "units", "score", "weight bits", "activation bits"}, rows,
                              {false, true, true, true, true}));
  return out.str();
}

std::string reconstruction_section(const json& r) {
  std::ostringstream out;
  out << "<h2 id=\"reconstruction\">Reconstruction</h2>";
  const json& targets = r.value("reconstruction", json::array());
  if (targets.empty()) return out.str() + missing("reconstruction (rtn initializes only)");
  const json& config = r.value("config", json::object());
  const double iterations = as_double(config.value("calibration_iterations", json()));
  const double warmup = as_double(config.value("warmup_ratio", json()));
  const double warmup_end = std::floor(warmup * iterations);
  out << "<p class=\"note\">Each target trains "
      << number(config.value("calibration_iterations", json()))
      << " iterations: no rounding loss during the warm-up (to iteration "
      << format_number(warmup_end, 6)
      << "), then the rounding loss with its exponent beta falling from "
      << number(config.value("temperature_start", json())) << " to "
      << number(config.value("temperature_end", json()))
      << " (docs/METHOD.md section 6). Reconstruction loss: squared error of the target's output "
         "on the batch; final loss: its mean over the last 5% of iterations.</p>";

  const json& unit_seconds =
      r.value("timing", json::object()).value("reconstruction_units", json::object());
  Chart finals = chart_of("chart-final-loss", "Final reconstruction loss per target",
                          "target (network order)", "loss");
  finals.log_y = true;
  ChartSeries final_loss{"final loss", {}, Style::LinePoints};
  std::vector<std::vector<std::string>> rows;
  std::string curves;
  for (size_t t = 0; t < targets.size(); ++t) {
    const json& target = targets[t];
    const std::string name = target.value("name", "");
    finals.categories.push_back(name);
    final_loss.y.push_back(as_double(target.value("final_loss", json())));
    const double seconds = as_double(unit_seconds.value(name, json()));
    rows.push_back({escape_html(name), number(target.value("final_loss", json())),
                    format_number(seconds, 3),
                    seconds > 0 ? format_number(iterations / seconds, 3) : "&ndash;"});
    // The temperature beta shares the log axis: its 20 -> 2 schedule sits
    // among the losses and marks where the rounding loss sharpens.
    Chart curve =
        chart_of("chart-curve-" + std::to_string(t), name, "iteration", "loss, and beta");
    curve.log_y = true;
    curve.width = 480;
    curve.height = 260;
    ChartSeries rec{"reconstruction", {}, Style::Line}, rounding{"rounding", {}, Style::Line},
        beta{"beta", {}, Style::Line};
    for (const json& p : target.value("curve", json::array())) {
      curve.x.push_back(as_double(p.at(0)));
      rec.y.push_back(as_double(p.at(1)));
      rounding.y.push_back(as_double(p.at(2)));
      beta.y.push_back(as_double(p.at(3)));
    }
    curve.series = {rec, rounding, beta};
    if (warmup_end > 0) curve.x_markers.push_back({warmup_end, "warm-up end"});
    curves += chart_html(curve);
  }
  finals.series = {final_loss};
  out << chart_html(finals)
      << numbers_behind(table({"target", "final loss", "seconds", "iterations/s"}, rows,
                              {false, true, true, true}))
      << "<h3>Loss curves</h3><div class=\"grid-2\">" << curves << "</div>";
  return out.str();
}

std::string layers_section(const json& r) {
  std::ostringstream out;
  out << "<h2 id=\"layers\">Quantized layers</h2>";
  const json& layers = r.value("layers", json::array());
  if (layers.empty()) return out.str() + missing("per-layer quantizers");
  std::vector<std::string> names;
  ChartSeries w_min{"weight scale min", {}, Style::Points}, w_mean{"weight scale mean", {}},
      w_max{"weight scale max", {}, Style::Points}, input{"input scale", {}},
      second{"2nd operand scale", {}, Style::Points};
  ChartSeries w_bits{"weight bits", {}, Style::LinePoints},
      a_bits{"activation bits", {}, Style::LinePoints};
  std::vector<std::vector<std::string>> rows;
  auto stat = [](const json& s, const char* key) {
    return s.is_object() ? as_double(s.value(key, json())) : NAN;
  };
  for (const json& l : layers) {
    names.push_back(l.value("name", ""));
    const json& w = l.value("weight_scale", json());
    const json& ops = l.value("operand_scales", json::array());
    const json in = ops.size() > 0 ? ops[0] : json();
    const json in2 = ops.size() > 1 ? ops[1] : json();
    w_min.y.push_back(stat(w, "min"));
    w_mean.y.push_back(stat(w, "mean"));
    w_max.y.push_back(stat(w, "max"));
    input.y.push_back(stat(in, "mean"));
    second.y.push_back(stat(in2, "mean"));
    w_bits.y.push_back(as_double(l.value("weight_bits", json())));
    a_bits.y.push_back(as_double(l.value("activation_bits", json())));
    rows.push_back({escape_html(names.back()), escape_html(l.value("unit", "")),
                    escape_html(l.value("kind", "")), number(l.value("weight_bits", json())),
                    number(l.value("activation_bits", json())),
                    w.is_object() ? number(w.value("count", json())) : "&ndash;",
                    number(stat(w, "min")), number(stat(w, "mean")), number(stat(w, "max")),
                    number(stat(in, "mean")), number(stat(in2, "mean"))});
  }
  Chart scales = chart_of("chart-layer-scales", "Quantizer step sizes per layer",
                          "quantized layer (network order)", "scale D");
  scales.log_y = true;
  scales.categories = names;
  scales.series = {w_mean, w_min, w_max, input, second};
  Chart bits = scales;
  bits.id = "chart-layer-bits";
  bits.title = "Bits per layer";
  bits.y_label = "bits";
  bits.log_y = false;
  bits.series = {w_bits, a_bits};
  out << chart_html(scales) << chart_html(bits)
      << numbers_behind(
             table({"layer", "unit", "kind", "W bits", "A bits", "channels", "W scale min",
                    "W scale mean", "W scale max", "input scale", "2nd operand scale"},
                   rows, {false, false, false, true, true, true, true, true, true, true, true}));
  return out.str();
}

std::string analysis_section(const json& r) {
  std::ostringstream out;
  out << "<h2 id=\"analysis\">Error analysis</h2>";
  if (!r.contains("analysis") || !r["analysis"].is_object())
    return out.str() + missing("error analysis");
  const json& a = r["analysis"];
  out << "<p class=\"note\">On " << number(a.value("images", json()))
      << " validation images: SQNR (dB, higher is better) and cosine similarity of each quantized "
         "layer's output against the float model's. Graph-wise: the whole model quantized, so the "
         "curve shows where the error grows. Layer-wise: only that layer (its weights and its "
         "input) quantized, so it shows which layers are sensitive on their own.</p>";
  std::vector<std::string> names;
  ChartSeries graph_sqnr{"graph-wise SQNR", {}}, layer_sqnr{"layer-wise SQNR", {}};
  ChartSeries graph_cos{"graph-wise cosine", {}}, layer_cos{"layer-wise cosine", {}};
  std::vector<std::vector<std::string>> rows;
  const json& graph = a.value("graph_wise", json::array());
  const json& layer = a.value("layer_wise", json::array());
  for (size_t i = 0; i < graph.size(); ++i) {
    const json& g = graph[i];
    const json l = i < layer.size() ? layer[i] : json::object();
    names.push_back(g.value("layer", ""));
    graph_sqnr.y.push_back(as_double(g.value("sqnr_db", json())));
    layer_sqnr.y.push_back(as_double(l.value("sqnr_db", json())));
    graph_cos.y.push_back(as_double(g.value("cosine", json())));
    layer_cos.y.push_back(as_double(l.value("cosine", json())));
    rows.push_back({escape_html(names.back()), escape_html(g.value("unit", "")),
                    number(g.value("sqnr_db", json())), number(g.value("cosine", json()), 5),
                    number(l.value("sqnr_db", json())), number(l.value("cosine", json()), 5)});
  }
  Chart sqnr = chart_of("chart-sqnr", "SQNR of each quantized layer's output",
                        "quantized layer (network order)", "SQNR (dB)");
  sqnr.categories = names;
  sqnr.series = {graph_sqnr, layer_sqnr};
  Chart cosine = sqnr;
  cosine.id = "chart-cosine";
  cosine.title = "Cosine similarity of each quantized layer's output";
  cosine.y_label = "cosine similarity";
  cosine.series = {graph_cos, layer_cos};
  out << chart_html(sqnr) << chart_html(cosine)
      << numbers_behind(table({"layer", "unit", "graph-wise SQNR", "graph-wise cosine",
                               "layer-wise SQNR", "layer-wise cosine"},
                              rows, {false, false, true, true, true, true}));
  const json& packs = a.value("packs", json::array());
  if (!packs.empty()) {
    std::vector<std::vector<std::string>> pack_rows;
    for (const json& p : packs)
      pack_rows.push_back({escape_html(p.value("pack", "")), number(p.value("top1", json()))});
    out << "<h3>Top-1 with one pack left in float</h3>"
        << table({"pack in float", "top-1"}, pack_rows, {false, true});
  }
  return out.str();
}

}  // namespace

std::string render_report_html(const json& report) {
  if (!report.is_object() || !report.contains("model_name") || !report.contains("config"))
    throw std::runtime_error("not a packptq run report (no model_name and config)");
  const std::string title = "packptq report: " + report.value("model_name", std::string("?")) +
                            " " + report.value("method", std::string("?")) + " W" +
                            number(report.value("weight_bits", json())) + "A" +
                            number(report.value("activation_bits", json()));
  std::ostringstream html;
  html
      << "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
      << "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
      << "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
         "style-src 'unsafe-inline'\">"
      << "<title>" << escape_html(title) << "</title><style>" << kStyle << "</style></head><body>"
      << "<h1>" << escape_html(title) << "</h1>"
      << "<p class=\"note\"><a href=\"#summary\">Summary</a> &middot; <a href=\"#units\">Units</a> "
         "&middot; <a href=\"#bits\">Bits</a> &middot; <a "
         "href=\"#reconstruction\">Reconstruction</a> "
         "&middot; <a href=\"#layers\">Layers</a> &middot; <a href=\"#analysis\">Error "
         "analysis</a></p>"
      << summary_section(report) << units_section(report) << bits_section(report)
      << reconstruction_section(report) << layers_section(report) << analysis_section(report)
      << "</body></html>\n";
  return html.str();
}

void write_report_html(const std::string& path, const json& report) {
  write_text_atomic(path, render_report_html(report));
}

}  // namespace pk
