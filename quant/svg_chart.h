// Charts as inline SVG for the run report (quant/report_html.h): series of
// points, lines or bars over numeric x or over a sequence of named items
// (units, layers, packs), with labelled axes, a legend, brackets over runs
// of items and marker lines. No script, no external resource: the SVG
// scales with the page (viewBox) and prints.
#pragma once

#include <string>
#include <vector>

namespace pk {

struct ChartSeries {
  enum class Style { Line, Points, LinePoints, Bars };
  std::string name;
  std::vector<double> y;  // one per x (or category); a non-finite value leaves a gap
  Style style = Style::LinePoints;
};

struct ChartBracket {  // over categories [first, last], inclusive
  size_t first = 0, last = 0;
  std::string label;
};

struct ChartMarker {  // a vertical (x) or horizontal (y) line
  double at = 0;
  std::string label;
};

struct Chart {
  std::string id, title, x_label, y_label;
  // Non-empty: x is the category index and the axis names the categories.
  std::vector<std::string> categories;
  std::vector<double> x;  // otherwise the series' shared x values
  std::vector<ChartSeries> series;
  std::vector<ChartBracket> brackets;
  std::vector<ChartMarker> x_markers, y_markers;
  bool log_y = false;  // needs positive values; others are left out
  double width = 760, height = 320;
};

// The chart as an <svg> element. A chart without a finite value says so
// in place of its plot.
std::string render_chart(const Chart& chart);

// Text for HTML and SVG: & < > " escaped.
std::string escape_html(const std::string& text);

// A number with `digits` significant digits ("0.0123", "1.5e+04").
std::string format_number(double value, int digits = 4);

}  // namespace pk
