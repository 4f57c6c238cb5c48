// Inline SVG charts for the HTML report: line charts (tokens/s against batch size), grouped bar charts (TTFT and
// TPOT percentiles, KV-cache bytes per token, accuracy side by side) and heatmaps (needle in a haystack, context
// length x depth, as in the DeepSeek-V2 paper's Figure 4). Pure functions from numbers to SVG text: no fonts
// measured, no randomness, numbers printed with fixed precision, so the same input gives the same bytes.
//
// Every chart is one <svg class="chart" data-chart="line|bar|heatmap" role="img"> element with a <title>, axes
// with tick marks, numeric tick labels and axis titles, a legend when there is more than one series, and the
// exact value of each point, bar or cell in a <title> child (the browser shows it on hover). Colours, fonts and
// strokes are SVG presentation attributes or classes styled by the page: never style="" attributes, which the
// report's Content-Security-Policy forbids. All text from data goes through escape_html.
#pragma once

#include <string>
#include <vector>

namespace mlabench::reports::svg {

/// How numbers on an axis are spaced.
enum class Scale {
  LINEAR,  ///< ticks at 1, 2 or 5 x 10^k steps; the value axis of a bar chart always starts at 0
  LOG2,    ///< ticks at powers of two (batch sizes 1, 2, 4, ... 256)
};

struct Axis {
  std::string title;  ///< e.g. "batch size", "tokens/s"; shown along the axis
  Scale scale = Scale::LINEAR;
};

struct Series {
  std::string name;       ///< legend entry
  std::vector<double> x;  ///< same length as y; NaN or non-finite points are skipped
  std::vector<double> y;
};

struct LineChart {
  std::string title;
  Axis x, y;
  std::vector<Series> series;  ///< each drawn as a polyline with a marker on every point, in a palette colour
  int width = 640, height = 360;
};

/// \brief One line chart. Series with no finite points are left out of the plot but kept in the legend with
/// "(no data)". An empty `series` gives a chart frame with the text "no data".
std::string line_chart(const LineChart& c);

struct BarGroup {
  std::string label;           ///< the category under the group (a batch size, a model, a task)
  std::vector<double> values;  ///< one per series; NaN: no bar (and "n/a" where the label would be)
};

struct BarChart {
  std::string title;
  std::string value_title;           ///< value axis title, e.g. "bytes per token"
  std::vector<std::string> series;   ///< legend; values[i] belongs to series[i]
  std::vector<BarGroup> groups;
  bool value_labels = true;          ///< print each bar's value at its end (compact: 1.23k, 45.6M)
  int width = 640, height = 360;
};

/// \brief One grouped, vertical bar chart; the value axis starts at 0 and is linear.
std::string bar_chart(const BarChart& c);

struct Heatmap {
  std::string title;
  std::string x_title, y_title;             ///< "context length (tokens)", "depth (%)"
  std::vector<std::string> x_labels;        ///< one per column, e.g. "1K", "12K"
  std::vector<std::string> y_labels;        ///< one per row, top to bottom, e.g. "0", "9", ... "100"
  std::vector<std::vector<double>> values;  ///< [row][column]; NaN: not run (drawn hatched grey, "n/a" on hover)
  double lo = 1, hi = 10;                   ///< colour scale range: lo red, middle yellow, hi green (Figure 4)
  std::string scale_title;                  ///< colour bar title, e.g. "score (1-10)"
  bool cell_labels = true;                  ///< print each cell's value inside it (rounded to the scale's precision)
  int width = 640, height = 400;
};

/// \brief One heatmap with a colour bar (lo..hi, with tick labels) at its right.
std::string heatmap(const Heatmap& h);

/// \brief The colour of `value` on the heatmap scale, "#rrggbb" (red at lo, yellow in the middle, green at hi;
/// values outside [lo, hi] are clamped).
std::string heat_colour(double value, double lo, double hi);

/// \brief Compact numbers for labels: 0.812, 12.5, 1.23k, 45.6M, 3.1G (three significant digits).
std::string compact_number(double v);

}  // namespace mlabench::reports::svg
