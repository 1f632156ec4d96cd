// The run report as one self-contained HTML page: inline SVG charts drawn by
// packptq (quant/svg_chart.h) with the numbers behind each in a table, no
// script, nothing loaded from elsewhere (its Content-Security-Policy forbids
// it), readable offline and printable. It is rendered from the report JSON
// alone (report_to_json in quant/run.h), so `packptq report RUN.json`
// renders a saved run again.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace pk {

// Sections: summary (model, method, bits, accuracy, settings that differ
// from the defaults, time per phase, threads, device, version); units
// (KL, first- and second-order terms, Hessian score and sensitivity, with
// the packs as brackets); bits per pack against the budget; reconstruction
// (each target's loss curve with its warm-up and temperature schedule,
// final losses, iterations per second); quantized layers (bits, weight and
// activation scales); the error analysis when the report has one. A section
// whose data the report lacks says so. Throws std::runtime_error when
// `report` is not a packptq run report.
std::string render_report_html(const nlohmann::json& report);

// Renders `report` to `path` atomically (temporary file and rename).
void write_report_html(const std::string& path, const nlohmann::json& report);

}  // namespace pk
