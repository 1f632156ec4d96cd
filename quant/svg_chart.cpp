#include "quant/svg_chart.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

namespace pk {

namespace {

// Colour-blind-safe palette (Okabe and Ito).
const char* const kColors[] = {"#0072b2", "#d55e00", "#009e73", "#cc79a7",
                               "#e69f00", "#56b4e9", "#000000"};
constexpr size_t kColorCount = sizeof(kColors) / sizeof(kColors[0]);

constexpr double kLeft = 72, kRight = 16, kTop = 48, kBracketSpace = 22;

std::string coordinate(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

// "Nice" tick values covering [lo, hi]: steps of 1, 2 or 5 times a power of ten.
std::vector<double> linear_ticks(double lo, double hi) {
  const double raw = (hi - lo) / 5.0;
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  double step = magnitude;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (raw <= m * magnitude) {
      step = m * magnitude;
      break;
    }
  std::vector<double> ticks;
  for (double t = std::ceil(lo / step) * step; t <= hi + step * 1e-9; t += step)
    ticks.push_back(std::fabs(t) < step * 1e-9 ? 0.0 : t);
  return ticks;
}

struct Axis {
  double lo = 0, hi = 1;
  bool log = false;
  double value(double v) const { return log ? std::log10(v) : v; }
};

bool plotted(double v, bool log) { return std::isfinite(v) && (!log || v > 0); }

Axis y_axis(const Chart& chart) {
  double lo = INFINITY, hi = -INFINITY;
  for (const ChartSeries& s : chart.series) {
    for (double v : s.y)
      if (plotted(v, chart.log_y)) {
        lo = std::min(lo, v);
        hi = std::max(hi, v);
      }
    // Bars start at zero.
    if (s.style == ChartSeries::Style::Bars && !chart.log_y)
      lo = std::min(lo, 0.0), hi = std::max(hi, 0.0);
  }
  for (const ChartMarker& m : chart.y_markers)
    if (plotted(m.at, chart.log_y)) lo = std::min(lo, m.at), hi = std::max(hi, m.at);
  Axis axis;
  axis.log = chart.log_y;
  if (!std::isfinite(lo)) return axis;
  if (axis.log) {
    axis.lo = std::floor(std::log10(lo));
    axis.hi = std::ceil(std::log10(hi));
    if (axis.hi <= axis.lo) axis.hi = axis.lo + 1;
  } else {
    const double pad = hi > lo ? 0.05 * (hi - lo) : (lo == 0 ? 1.0 : 0.1 * std::fabs(lo));
    axis.lo = lo - (lo == 0 ? 0 : pad);
    axis.hi = hi + pad;
    const std::vector<double> ticks = linear_ticks(axis.lo, axis.hi);
    // Widen to the outer ticks so the gridlines frame the data.
    const double step = ticks.size() > 1 ? ticks[1] - ticks[0] : 1.0;
    if (!ticks.empty()) {
      axis.lo = std::min(axis.lo, ticks.front() > axis.lo ? ticks.front() - step : ticks.front());
      axis.hi = std::max(axis.hi, ticks.back() < axis.hi ? ticks.back() + step : ticks.back());
    }
  }
  return axis;
}

}  // namespace

std::string escape_html(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string format_number(double value, int digits) {
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  if (std::isnan(value)) return "nan";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*g", digits, value);
  return buf;
}

std::string render_chart(const Chart& chart) {
  const bool categorical = !chart.categories.empty();
  const size_t n = categorical ? chart.categories.size() : chart.x.size();
  // Category names stand rotated under the axis: leave room for the longest.
  size_t longest = 0;
  for (const std::string& c : chart.categories) longest = std::max(longest, c.size());
  const double bottom = categorical ? 28 + 5.2 * std::min<size_t>(longest, 28) : 48;
  const double top = kTop + (chart.brackets.empty() ? 0 : kBracketSpace);
  const double height = chart.height + (categorical ? bottom - 48 : 0);
  const double plot_w = chart.width - kLeft - kRight, plot_h = height - top - bottom;

  double x_lo = 0, x_hi = 1;
  if (categorical) {
    x_lo = -0.5;
    x_hi = static_cast<double>(n) - 0.5;
  } else if (!chart.x.empty()) {
    x_lo = *std::min_element(chart.x.begin(), chart.x.end());
    x_hi = *std::max_element(chart.x.begin(), chart.x.end());
    if (x_hi <= x_lo) x_hi = x_lo + 1;
  }
  const Axis y = y_axis(chart);
  auto px = [&](double x) { return kLeft + (x - x_lo) / (x_hi - x_lo) * plot_w; };
  auto py = [&](double v) { return top + plot_h - (y.value(v) - y.lo) / (y.hi - y.lo) * plot_h; };
  auto x_of = [&](size_t i) { return categorical ? static_cast<double>(i) : chart.x[i]; };

  std::ostringstream svg;
  svg << "<svg id=\"" << escape_html(chart.id) << "\" class=\"chart\" viewBox=\"0 0 "
      << coordinate(chart.width) << " " << coordinate(height) << "\" role=\"img\"><title>"
      << escape_html(chart.title) << "</title>";
  svg << "<text class=\"chart-title\" x=\"" << coordinate(kLeft) << "\" y=\"18\">"
      << escape_html(chart.title) << "</text>";

  bool any = false;
  for (const ChartSeries& s : chart.series)
    for (double v : s.y) any = any || plotted(v, chart.log_y);
  if (!any || n == 0) {
    svg << "<text class=\"empty\" x=\"" << coordinate(kLeft + plot_w / 2) << "\" y=\""
        << coordinate(top + plot_h / 2) << "\">no data</text></svg>";
    return svg.str();
  }

  // Y gridlines and tick labels.
  std::vector<double> ticks;
  if (y.log) {
    for (double e = y.lo; e <= y.hi + 1e-9; e += 1) ticks.push_back(std::pow(10.0, e));
  } else {
    for (double t : linear_ticks(y.lo, y.hi))
      if (t >= y.lo - 1e-12 && t <= y.hi + 1e-12) ticks.push_back(t);
  }
  for (double t : ticks) {
    const std::string ty = coordinate(py(t));
    svg << "<line class=\"grid\" x1=\"" << coordinate(kLeft) << "\" x2=\""
        << coordinate(kLeft + plot_w) << "\" y1=\"" << ty << "\" y2=\"" << ty
        << "\"/><text class=\"tick\" x=\"" << coordinate(kLeft - 6) << "\" y=\"" << ty
        << "\" dy=\"0.32em\" text-anchor=\"end\">" << format_number(t, 3) << "</text>";
  }
  // X ticks: every category (thinned when crowded), or numeric ticks.
  if (categorical) {
    const size_t every = std::max<size_t>(1, (n + 47) / 48);
    for (size_t i = 0; i < n; i += every) {
      const std::string tx = coordinate(px(static_cast<double>(i)));
      const std::string ty = coordinate(top + plot_h + 8);
      std::string label = chart.categories[i];
      if (label.size() > 28) label = label.substr(0, 12) + "..." + label.substr(label.size() - 13);
      svg << "<text class=\"tick\" x=\"" << tx << "\" y=\"" << ty << "\" transform=\"rotate(-50 "
          << tx << " " << ty << ")\" text-anchor=\"end\">" << escape_html(label) << "</text>";
    }
  } else {
    for (double t : linear_ticks(x_lo, x_hi)) {
      if (t < x_lo || t > x_hi) continue;
      svg << "<text class=\"tick\" x=\"" << coordinate(px(t)) << "\" y=\""
          << coordinate(top + plot_h + 16) << "\" text-anchor=\"middle\">" << format_number(t, 4)
          << "</text>";
    }
  }
  // Axes and their labels.
  svg << "<line class=\"axis\" x1=\"" << coordinate(kLeft) << "\" x2=\"" << coordinate(kLeft)
      << "\" y1=\"" << coordinate(top) << "\" y2=\"" << coordinate(top + plot_h) << "\"/>"
      << "<line class=\"axis\" x1=\"" << coordinate(kLeft) << "\" x2=\""
      << coordinate(kLeft + plot_w) << "\" y1=\"" << coordinate(top + plot_h) << "\" y2=\""
      << coordinate(top + plot_h) << "\"/>";
  svg << "<text class=\"axis-label\" transform=\"translate(14 " << coordinate(top + plot_h / 2)
      << ") rotate(-90)\" text-anchor=\"middle\">" << escape_html(chart.y_label)
      << (y.log ? " (log scale)" : "") << "</text>";
  svg << "<text class=\"axis-label\" x=\"" << coordinate(kLeft + plot_w / 2) << "\" y=\""
      << coordinate(height - 4) << "\" text-anchor=\"middle\">" << escape_html(chart.x_label)
      << "</text>";

  // Markers.
  for (const ChartMarker& m : chart.x_markers) {
    const std::string mx = coordinate(px(m.at));
    svg << "<line class=\"marker\" x1=\"" << mx << "\" x2=\"" << mx << "\" y1=\"" << coordinate(top)
        << "\" y2=\"" << coordinate(top + plot_h) << "\"/><text class=\"marker-label\" x=\"" << mx
        << "\" dx=\"3\" y=\"" << coordinate(top + 10) << "\">" << escape_html(m.label) << "</text>";
  }
  for (const ChartMarker& m : chart.y_markers) {
    if (!plotted(m.at, y.log)) continue;
    const std::string my = coordinate(py(m.at));
    svg << "<line class=\"marker\" x1=\"" << coordinate(kLeft) << "\" x2=\""
        << coordinate(kLeft + plot_w) << "\" y1=\"" << my << "\" y2=\"" << my
        << "\"/><text class=\"marker-label\" x=\"" << coordinate(kLeft + plot_w) << "\" y=\"" << my
        << "\" dy=\"-4\" text-anchor=\"end\">" << escape_html(m.label) << "</text>";
  }

  // Series.
  const size_t bar_series = static_cast<size_t>(
      std::count_if(chart.series.begin(), chart.series.end(),
                    [](const ChartSeries& s) { return s.style == ChartSeries::Style::Bars; }));
  const double slot =
      categorical ? plot_w / static_cast<double>(n) : plot_w / std::max<size_t>(n, 1);
  size_t bar_index = 0;
  for (size_t k = 0; k < chart.series.size(); ++k) {
    const ChartSeries& s = chart.series[k];
    const char* color = kColors[k % kColorCount];
    svg << "<g class=\"series\" data-name=\"" << escape_html(s.name) << "\">";
    if (s.style == ChartSeries::Style::Bars) {
      const double w = 0.8 * slot / static_cast<double>(std::max<size_t>(bar_series, 1));
      const double base = y.log ? std::pow(10.0, y.lo) : std::max(0.0, y.lo);
      for (size_t i = 0; i < std::min(n, s.y.size()); ++i) {
        if (!plotted(s.y[i], y.log)) continue;
        const double x0 = px(x_of(i)) - 0.4 * slot + w * static_cast<double>(bar_index);
        const double y0 = py(s.y[i]), y1 = py(base);
        svg << "<rect class=\"bar\" fill=\"" << color << "\" x=\"" << coordinate(x0) << "\" y=\""
            << coordinate(std::min(y0, y1)) << "\" width=\"" << coordinate(w) << "\" height=\""
            << coordinate(std::max(std::fabs(y1 - y0), 0.5)) << "\"><title>" << escape_html(s.name)
            << ": " << format_number(s.y[i]) << "</title></rect>";
      }
      ++bar_index;
    } else {
      if (s.style != ChartSeries::Style::Points) {
        // One polyline per run of plotted values.
        std::string points;
        auto flush = [&] {
          if (!points.empty())
            svg << "<polyline class=\"line\" fill=\"none\" stroke=\"" << color << "\" points=\""
                << points << "\"/>";
          points.clear();
        };
        for (size_t i = 0; i < std::min(n, s.y.size()); ++i) {
          if (!plotted(s.y[i], y.log)) {
            flush();
            continue;
          }
          points +=
              (points.empty() ? "" : " ") + coordinate(px(x_of(i))) + "," + coordinate(py(s.y[i]));
        }
        flush();
      }
      if (s.style != ChartSeries::Style::Line)
        for (size_t i = 0; i < std::min(n, s.y.size()); ++i) {
          if (!plotted(s.y[i], y.log)) continue;
          svg << "<circle class=\"pt\" fill=\"" << color << "\" cx=\"" << coordinate(px(x_of(i)))
              << "\" cy=\"" << coordinate(py(s.y[i])) << "\" r=\"3\"><title>"
              << escape_html(categorical ? chart.categories[i] : format_number(x_of(i))) << ", "
              << escape_html(s.name) << ": " << format_number(s.y[i]) << "</title></circle>";
        }
    }
    svg << "</g>";
  }

  // Brackets above the plot.
  for (const ChartBracket& b : chart.brackets) {
    const double x0 = px(static_cast<double>(b.first) - 0.4),
                 x1 = px(static_cast<double>(b.last) + 0.4);
    const double by = top - 6;
    svg << "<path class=\"bracket\" d=\"M" << coordinate(x0) << " " << coordinate(by + 5) << " V"
        << coordinate(by) << " H" << coordinate(x1) << " V" << coordinate(by + 5)
        << "\"/><text class=\"bracket-label\" x=\"" << coordinate((x0 + x1) / 2) << "\" y=\""
        << coordinate(by - 3) << "\" text-anchor=\"middle\">" << escape_html(b.label) << "</text>";
  }

  // Legend, a row under the title, naming the series that have data.
  double lx = kLeft;
  for (size_t k = 0; k < chart.series.size(); ++k) {
    const ChartSeries& s = chart.series[k];
    if (std::none_of(s.y.begin(), s.y.end(), [&](double v) { return plotted(v, y.log); })) continue;
    const std::string& name = s.name;
    svg << "<rect x=\"" << coordinate(lx) << "\" y=\"25\" width=\"10\" height=\"10\" fill=\""
        << kColors[k % kColorCount] << "\"/><text class=\"legend\" x=\"" << coordinate(lx + 14)
        << "\" y=\"34\">" << escape_html(name) << "</text>";
    lx += 24 + 6.2 * static_cast<double>(name.size());
  }
  svg << "</svg>";
  return svg.str();
}

}  // namespace pk
