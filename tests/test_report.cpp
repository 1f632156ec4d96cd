// The run report's pieces: SVG charts (quant/svg_chart.h) and the HTML page
// rendered from a report JSON (quant/report_html.h). A whole run's page is
// checked in test_quantize_api, its rendering in a browser by
// test_report_render.sh.
#include <cmath>
#include <nlohmann/json.hpp>
#include <string>

#include "quant/report_html.h"
#include "quant/svg_chart.h"
#include "tests/testing.h"

using namespace pk;

namespace {

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

}  // namespace

TEST_CASE("render_chart: a point per value, gaps for non-finite values, labels escaped") {
  Chart chart;
  chart.id = "c";
  chart.title = "loss <per> unit";
  chart.categories = {"a", "b&c", "d", "e"};
  chart.series = {{"first", {1.0, 2.0, NAN, 4.0}, ChartSeries::Style::LinePoints},
                  {"second", {0.5, 0.25, 0.125, 0.0625}, ChartSeries::Style::Points}};
  chart.brackets = {{1, 2, "pack"}};
  chart.y_markers = {{3.0, "budget"}};
  const std::string svg = render_chart(chart);
  CHECK(svg.rfind("<svg id=\"c\"", 0) == 0);
  CHECK(count(svg, "class=\"pt\"") == 3 + 4);
  // The NaN splits the first series' line in two.
  CHECK(count(svg, "class=\"line\"") == 2);
  CHECK(svg.find("loss &lt;per&gt; unit") != std::string::npos);
  CHECK(svg.find("b&amp;c") != std::string::npos);
  CHECK(count(svg, "class=\"bracket\"") == 1);
  CHECK(svg.find(">budget<") != std::string::npos);
  CHECK(svg.find("no data") == std::string::npos);
}

TEST_CASE("render_chart: a log axis leaves out values <= 0, a chart without data says so") {
  Chart chart;
  chart.id = "log";
  chart.x = {1, 2, 3};
  chart.log_y = true;
  chart.series = {{"loss", {0.0, 0.01, 10.0}, ChartSeries::Style::Points}};
  const std::string svg = render_chart(chart);
  CHECK(count(svg, "class=\"pt\"") == 2);
  CHECK(svg.find(">0.01<") != std::string::npos);  // a decade tick
  CHECK(svg.find("(log scale)") != std::string::npos);
  chart.series = {{"loss", {0.0, -1.0, NAN}, ChartSeries::Style::Points}};
  CHECK(render_chart(chart).find("no data") != std::string::npos);
  chart.series = {{"bits", {4, 4, 6}, ChartSeries::Style::Bars}};
  chart.log_y = false;
  CHECK(count(render_chart(chart), "class=\"bar\"") == 3);
}

TEST_CASE("render_report_html: a page for any report, sections without data say so") {
  const nlohmann::json minimal = {{"model_name", "resnet18"},
                                  {"method", "rtn"},
                                  {"weight_bits", 4},
                                  {"activation_bits", 4},
                                  {"config", {{"calibration_iterations", 20000}, {"seed", 7}}},
                                  {"fp32_top1", 91.2},
                                  {"quant_top1", 90.5}};
  const std::string html = render_report_html(minimal);
  CHECK(html.rfind("<!DOCTYPE html>", 0) == 0);
  CHECK(html.find("<title>packptq report: resnet18 rtn W4A4</title>") != std::string::npos);
  CHECK(html.find("This report has no unit scores") != std::string::npos);
  CHECK(html.find("This report has no reconstruction") != std::string::npos);
  CHECK(html.find("This report has no error analysis") != std::string::npos);
  // Settings that differ from the defaults, integers as integers.
  CHECK(html.find("<code>--seed</code></td><td>7</td><td>1005</td>") != std::string::npos);
  CHECK(html.find("2e+04") == std::string::npos);
  CHECK_THROWS_WITH(render_report_html(nlohmann::json::array()),
                    doctest::Contains("not a packptq run report"));
}
