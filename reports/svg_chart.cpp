// Inline SVG charts (line, grouped bar, heatmap) as pure functions of their input. Layout is computed, never
// measured: text width is estimated at 0.6 em per character, wide enough for system-ui digits and Latin text, so
// margins grow with the longest tick label or legend entry instead of clipping it. Every coordinate goes through
// px(), which rounds to 0.1 px and turns anything non-finite into 0, and every string reaches the output through
// text() or hover_title(), which escape it: neither "nan" nor markup from data can get into the SVG. The colour
// bar and the hatching of missing heatmap cells are plain shapes, not <defs> with ids, because several charts
// share one HTML page and their ids would collide.
#include "reports/svg_chart.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <iterator>
#include <limits>
#include <string_view>

#include "core/check.h"
#include "reports/html_escape.h"

namespace mlabench::reports::svg {
namespace {

constexpr double kEm = 0.6;  // estimated advance of one character, in em
constexpr double kTitleFont = 15, kAxisTitleFont = 12, kTickFont = 11, kLegendFont = 11, kValueFont = 10;
constexpr double kTickLength = 5;
constexpr double kLegendRow = 18;
constexpr int kMinWidth = 240, kMinHeight = 160, kMaxSize = 4000;

constexpr const char* kInk = "#222222";
constexpr const char* kMutedInk = "#666666";
constexpr const char* kAxisColour = "#444444";
constexpr const char* kGridColour = "#e6e6e6";
constexpr const char* kMissingFill = "#e4e4e4";
constexpr const char* kHatchColour = "#a8a8a8";
constexpr const char* kEllipsis = "\xE2\x80\xA6";

// Okabe-Ito, most distinct on white first; its yellow is weak on white, so it comes last.
constexpr const char* kPalette[] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7",
                                    "#E69F00", "#56B4E9", "#000000", "#F0E442"};
constexpr size_t kPaletteSize = std::size(kPalette);

struct Rgb {
  int r, g, b;
};
// ColorBrewer RdYlGn's red and green ends around a stronger yellow than its pale middle, close to Figure 4.
constexpr Rgb kHeatLo{0xd7, 0x30, 0x27}, kHeatMid{0xfe, 0xe0, 0x8b}, kHeatHi{0x1a, 0x98, 0x50};

template <typename... Args>
void put(std::string& out, fmt::format_string<Args...> f, Args&&... args) {
  fmt::format_to(std::back_inserter(out), f, std::forward<Args>(args)...);
}

size_t n_code_points(std::string_view s) {
  size_t n = 0;
  for (const char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

double text_width(std::string_view s, double font) { return static_cast<double>(n_code_points(s)) * kEm * font; }

// `s` cut at a code point boundary so that it, with an ellipsis, fits in `max_width`.
std::string fit_text(std::string_view s, double max_width, double font) {
  if (text_width(s, font) <= max_width) return std::string(s);
  const double room = std::floor(max_width / (kEm * font)) - 1;
  const size_t keep = room >= 1 ? static_cast<size_t>(room) : 1;
  size_t seen = 0, end = 0;
  for (; end < s.size(); ++end) {
    if ((static_cast<unsigned char>(s[end]) & 0xC0) == 0x80) continue;
    if (seen == keep) break;
    ++seen;
  }
  return std::string(s.substr(0, end)) + kEllipsis;
}

// A coordinate or length. 0.1 px is below what a screen shows; a non-finite value (the layout guards against
// them, this is the last line) becomes 0 and a huge one is clamped, so no "nan", "inf" or 1e300 is ever printed.
std::string px(double v) {
  if (!std::isfinite(v)) v = 0;
  v = std::clamp(v, -1e5, 1e5);
  double r = std::round(v * 10) / 10;
  if (r == 0) r = 0;  // -0.0 would print as "-0"
  std::string s = fmt::format("{:.1f}", r);
  if (s.ends_with(".0")) s.resize(s.size() - 2);
  return s;
}

std::string trim_zeros(std::string s) {
  if (s.find('.') == std::string::npos || s.find('e') != std::string::npos) return s;
  while (s.back() == '0') s.pop_back();
  if (s.back() == '.') s.pop_back();
  return s;
}

// "1234567.8" -> "1,234,567.8"; the sign and the fraction are kept as they are.
std::string group_thousands(const std::string& s) {
  const size_t begin = (!s.empty() && s[0] == '-') ? 1 : 0;
  const size_t end = std::min(s.find('.'), s.size());
  std::string out = s.substr(0, begin);
  for (size_t i = begin; i < end; ++i) {
    out += s[i];
    const size_t left = end - i - 1;
    if (left > 0 && left % 3 == 0) out += ',';
  }
  return out + s.substr(end);
}

// The value shown on hover: about six significant digits, thousands grouped ("1,062.8", "131,072", "0.8123").
std::string exact_number(double v) {
  if (!std::isfinite(v)) return "n/a";
  const double a = std::fabs(v);
  if (a == 0) return "0";
  if (a >= 1e15 || a < 1) return fmt::format("{:.4g}", v);
  const int int_digits = static_cast<int>(std::floor(std::log10(a))) + 1;
  const int decimals = std::clamp(5 - int_digits, 0, 4);
  return group_thousands(trim_zeros(fmt::format("{:.{}f}", v, decimals)));
}

void check_heat_range(double lo, double hi) {
  MLABENCH_CHECK(std::isfinite(hi - lo) && lo < hi,
                 "svg::heat_colour: the colour scale needs finite lo < hi with a finite span, got lo={} hi={}; "
                 "HINT: set Heatmap::lo below Heatmap::hi (e.g. 1 and 10 for NIAH scores)",
                 lo, hi);
}

Rgb heat_rgb(double value, double lo, double hi) {
  check_heat_range(lo, hi);
  const double t = std::clamp((value - lo) / (hi - lo), 0.0, 1.0);  // callers pass no NaN
  const Rgb& a = t < 0.5 ? kHeatLo : kHeatMid;
  const Rgb& b = t < 0.5 ? kHeatMid : kHeatHi;
  const double u = t < 0.5 ? t * 2 : (t - 0.5) * 2;
  const auto mix = [u](int x, int y) { return static_cast<int>(std::lround(x + (y - x) * u)); };
  return {mix(a.r, b.r), mix(a.g, b.g), mix(a.b, b.b)};
}

// Dark or white text, whichever has the higher WCAG contrast ratio against `bg`.
const char* ink_on(const Rgb& bg) {
  const auto linear = [](int c) {
    const double s = c / 255.0;
    return s <= 0.04045 ? s / 12.92 : std::pow((s + 0.055) / 1.055, 2.4);
  };
  const double lum = 0.2126 * linear(bg.r) + 0.7152 * linear(bg.g) + 0.0722 * linear(bg.b);
  constexpr double kDarkLum = 0.0056;  // luminance of #111111
  return (lum + 0.05) / (kDarkLum + 0.05) >= 1.05 / (lum + 0.05) ? "#111111" : "#ffffff";
}

// ---------------------------------------------------------------------------------------------------------------
// Scales and ticks

bool plottable(double v, Scale scale) { return std::isfinite(v) && (scale != Scale::LOG2 || v > 0); }

struct Ticks {
  std::vector<double> at;  // ascending; the axis runs from the first to the last
  Scale scale = Scale::LINEAR;
};

// The 1, 2 or 5 x 10^k step nearest to `raw`.
double nice_step(double raw) {
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / magnitude;
  return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * magnitude;
}

// About `target` nice ticks covering [lo, hi].
Ticks linear_ticks(double lo, double hi, int target) {
  // Beyond 1e150 the span could overflow; such values end up outside the plot and px() clamps them.
  lo = std::clamp(lo, -1e150, 1e150);
  hi = std::clamp(hi, -1e150, 1e150);
  if (!(hi - lo >= 1e-300)) {  // flat data (or a span so small the step would underflow)
    const double pad = lo == 0 ? 1 : std::fabs(lo) * 0.1;
    if (lo != 0) lo -= pad;
    hi += pad;
  }
  const double step = nice_step((hi - lo) / target);
  const double i0 = std::floor(lo / step + 1e-9), i1 = std::ceil(hi / step - 1e-9);
  // A nice step gives at most about 2.5 x target ticks; the bound only keeps precision loss at huge magnitudes
  // from running the loop long.
  const int n = static_cast<int>(std::clamp(i1 - i0, 1.0, 50.0));
  Ticks t;
  for (int k = 0; k <= n; ++k) t.at.push_back((i0 + k) * step);
  return t;
}

// Powers of two covering [lo, hi] (both > 0), one more on each side when they are the same power.
Ticks log2_ticks(double lo, double hi) {
  int k0 = static_cast<int>(std::clamp(std::floor(std::log2(lo) + 1e-9), -60.0, 60.0));
  int k1 = static_cast<int>(std::clamp(std::ceil(std::log2(hi) - 1e-9), -60.0, 60.0));
  if (k1 <= k0) --k0, k1 = k0 + 2;
  Ticks t{{}, Scale::LOG2};
  for (int k = k0; k <= k1; ++k) t.at.push_back(std::ldexp(1.0, k));
  return t;
}

Ticks ticks_for(Scale scale, double lo, double hi, int target) {
  return scale == Scale::LOG2 ? log2_ticks(lo, hi) : linear_ticks(lo, hi, target);
}

// Powers of two read best in full (1,024 rather than 1.02k); linear ticks are compact unless that makes two equal.
std::vector<std::string> tick_labels(const Ticks& t) {
  std::vector<std::string> labels;
  for (const double v : t.at) labels.push_back(t.scale == Scale::LOG2 && v < 1e5 ? exact_number(v) : compact_number(v));
  if (std::adjacent_find(labels.begin(), labels.end()) != labels.end())
    std::transform(t.at.begin(), t.at.end(), labels.begin(), exact_number);
  return labels;
}

// Value -> pixel along one axis.
struct AxisMap {
  Ticks ticks;
  double p0 = 0, p1 = 1;  // pixels of the first and the last tick
  double operator()(double v) const {
    const double v0 = ticks.at.front(), v1 = ticks.at.back();
    double t = ticks.scale == Scale::LOG2 ? (std::log2(v) - std::log2(v0)) / (std::log2(v1) - std::log2(v0))
                                          : (v - v0) / (v1 - v0);
    if (!std::isfinite(t)) t = 0;
    return p0 + t * (p1 - p0);
  }
};

// Every tick keeps its mark; labels are thinned to every n-th so that `slot` px fit between two shown ones.
size_t label_stride(size_t n_labels, double spacing, double slot) {
  if (spacing <= 0 || n_labels < 2) return 1;
  return std::max<size_t>(1, static_cast<size_t>(std::ceil(slot / spacing - 1e-9)));
}

double max_width(const std::vector<std::string>& labels, double font) {
  double w = 0;
  for (const auto& s : labels) w = std::max(w, text_width(s, font));
  return w;
}

constexpr double kSin30 = 0.5, kCos30 = 0.866;

// How far category labels turned -30 degrees (hanging left of their ticks, one tick per `band` px from the
// plot's left edge) reach left of that edge.
double rotated_overhang(const std::vector<std::string>& labels, double band) {
  double reach = 0;
  for (size_t i = 0; i < labels.size(); ++i)
    reach = std::max(reach, text_width(labels[i], kTickFont) * kCos30 - (static_cast<double>(i) + 0.5) * band);
  return reach;
}

// ---------------------------------------------------------------------------------------------------------------
// SVG primitives. Every string from outside goes through escape_html here and nowhere else.

struct TextOptions {
  double size = kTickFont;
  const char* anchor = "start";
  const char* fill = kInk;
  const char* cls = nullptr;
  bool bold = false;
  bool centre_vertically = false;  // dy=0.35em centres digits on y; dominant-baseline is not honoured everywhere
  double rotate = 0;               // degrees, about (x, y)
};

void text(std::string& out, double x, double y, std::string_view content, const TextOptions& o,
          std::string_view hover = {}) {
  put(out, R"(<text x="{}" y="{}" font-size="{}")", px(x), px(y), px(o.size));
  if (o.cls) put(out, R"( class="{}")", o.cls);
  if (std::string_view(o.anchor) != "start") put(out, R"( text-anchor="{}")", o.anchor);
  put(out, R"( fill="{}")", o.fill);
  if (o.bold) out += R"( font-weight="600")";
  if (o.centre_vertically) out += R"( dy="0.35em")";
  if (o.rotate != 0) put(out, R"svg( transform="rotate({} {} {})")svg", px(o.rotate), px(x), px(y));
  out += '>';
  if (!hover.empty()) put(out, "<title>{}</title>", escape_html(hover));
  out += escape_html(content);
  out += "</text>\n";
}

// A label cut to `max_w`, keeping the whole of it on hover when it was cut.
void fitted_text(std::string& out, double x, double y, std::string_view content, double max_w, const TextOptions& o) {
  const std::string shown = fit_text(content, max_w, o.size);
  text(out, x, y, shown, o, shown == content ? std::string_view{} : content);
}

void line(std::string& out, double x1, double y1, double x2, double y2, const char* stroke, double width = 1) {
  put(out,
      R"(<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="{}" stroke-width="{}"/>)"
      "\n",
      px(x1), px(y1), px(x2), px(y2), stroke, px(width));
}

std::string hover_title(std::string_view s) { return fmt::format("<title>{}</title>", escape_html(s)); }

// "name = value", or the value alone when the name is empty.
std::string named(std::string_view name, std::string_view value) {
  return name.empty() ? std::string(value) : fmt::format("{} = {}", name, value);
}

struct Plot {
  double x0, y0, x1, y1;  // y0 is the top
  double width() const { return x1 - x0; }
  double height() const { return y1 - y0; }
};

// An axis title reading upwards, centred on the plot's height, its glyphs ending at about `x`.
void vertical_title(std::string& out, double x, const Plot& p, std::string_view title) {
  if (title.empty()) return;
  fitted_text(out, x, (p.y0 + p.y1) / 2, title, p.height(),
              {.size = kAxisTitleFont, .anchor = "middle", .cls = "axis-title", .rotate = -90});
}

// An axis title centred under the plot, its baseline at `y`.
void horizontal_title(std::string& out, const Plot& p, double y, std::string_view title) {
  if (title.empty()) return;
  fitted_text(out, (p.x0 + p.x1) / 2, y, title, p.width(),
              {.size = kAxisTitleFont, .anchor = "middle", .cls = "axis-title"});
}

constexpr double kLeftTitleX = 10 + kAxisTitleFont * 0.8;  // a vertical title at the chart's left edge

// Margins that leave less than this for the plot are overruled: a cramped chart beats a negative-sized one.
constexpr double kMinPlot = 40;

Plot plot_in(double w, double h, double left, double top, double right, double bottom) {
  const double x1 = std::max(w - right, left + kMinPlot), y1 = std::max(h - bottom, top + kMinPlot);
  return {left, top, x1, y1};
}

void open_chart(std::string& out, const char* kind, int width, int height, std::string_view title) {
  MLABENCH_CHECK(width >= kMinWidth && width <= kMaxSize && height >= kMinHeight && height <= kMaxSize,
                 "svg::{}: chart size {}x{} px is outside {}..{} x {}..{} px; HINT: set width and height in the "
                 "chart struct within those bounds",
                 kind, width, height, kMinWidth, kMaxSize, kMinHeight, kMaxSize);
  put(out,
      R"(<svg class="chart" data-chart="{}" xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 {} {}" )"
      R"(width="{}" height="{}">)"
      "\n",
      kind, width, height, width, height);
  put(out, "{}\n", hover_title(title));
  out += R"(<g font-family="system-ui, sans-serif">)"
         "\n";
  put(out,
      R"(<rect class="chart-bg" x="0" y="0" width="{}" height="{}" fill="#ffffff"/>)"
      "\n",
      width, height);
  fitted_text(out, width / 2.0, 10 + kTitleFont, title, width - 20,
              {.size = kTitleFont, .anchor = "middle", .cls = "chart-title", .bold = true});
}

void close_chart(std::string& out) { out += "</g>\n</svg>\n"; }

constexpr double kTitleBlock = 10 + kTitleFont + 10;  // from the top edge to below the chart title

void no_data(std::string& out, const Plot& p) {
  put(out,
      R"(<rect class="frame" x="{}" y="{}" width="{}" height="{}" fill="none" stroke="{}"/>)"
      "\n",
      px(p.x0), px(p.y0), px(p.width()), px(p.height()), kGridColour);
  text(out, (p.x0 + p.x1) / 2, (p.y0 + p.y1) / 2, "no data",
       {.size = 13, .anchor = "middle", .fill = kMutedInk, .cls = "no-data", .centre_vertically = true});
}

// ---------------------------------------------------------------------------------------------------------------
// Legend: entries flow left to right under the title and wrap into rows.

struct LegendEntry {
  std::string name;
  size_t series;  // palette index
  bool no_data;
};

const char* series_colour(size_t i) { return kPalette[i % kPaletteSize]; }
// Past eight series the colours repeat, dashed, so that two lines never look the same.
bool series_dashed(size_t i) { return (i / kPaletteSize) % 2 == 1; }

constexpr double kLegendSwatch = 18, kLegendGap = 16, kLegendMaxName = 200;

double legend_entry_width(const LegendEntry& e) {
  return kLegendSwatch + 5 + text_width(fit_text(e.name, kLegendMaxName, kLegendFont), kLegendFont) + kLegendGap;
}

// Rows needed for `entries` between x0 and x1.
int legend_rows(const std::vector<LegendEntry>& entries, double x0, double x1) {
  if (entries.empty()) return 0;
  int rows = 1;
  double x = x0;
  for (const auto& e : entries) {
    const double w = legend_entry_width(e);
    if (x > x0 && x + w - kLegendGap > x1) ++rows, x = x0;
    x += w;
  }
  return rows;
}

void legend(std::string& out, const std::vector<LegendEntry>& entries, bool bars, double x0, double x1, double top) {
  if (entries.empty()) return;
  out += "<g class=\"legend\">\n";
  double x = x0, y = top + kLegendRow / 2;
  for (const auto& e : entries) {
    const double w = legend_entry_width(e);
    if (x > x0 && x + w - kLegendGap > x1) x = x0, y += kLegendRow;
    const char* colour = series_colour(e.series);
    if (bars) {
      put(out,
          R"(<rect x="{}" y="{}" width="12" height="12" fill="{}"/>)"
          "\n",
          px(x + 3), px(y - 6), colour);
    } else {
      put(out,
          R"(<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="{}" stroke-width="2"{}/>)"
          "\n",
          px(x), px(y), px(x + kLegendSwatch), px(y), colour,
          series_dashed(e.series) ? R"( stroke-dasharray="5 3")" : "");
      put(out,
          R"(<circle cx="{}" cy="{}" r="3.5" fill="{}"/>)"
          "\n",
          px(x + kLegendSwatch / 2), px(y), colour);
    }
    fitted_text(out, x + kLegendSwatch + 5, y, e.name, kLegendMaxName,
                {.size = kLegendFont, .fill = e.no_data ? kMutedInk : kInk, .centre_vertically = true});
    x += w;
  }
  out += "</g>\n";
}

std::vector<LegendEntry> legend_entries(const std::vector<std::string>& names, const std::vector<bool>& has_data) {
  std::vector<LegendEntry> entries;
  if (names.size() < 2) return entries;
  for (size_t i = 0; i < names.size(); ++i) {
    std::string name = names[i].empty() ? fmt::format("series {}", i + 1) : names[i];
    if (!has_data[i]) name += " (no data)";
    entries.push_back({std::move(name), i, !has_data[i]});
  }
  return entries;
}

// ---------------------------------------------------------------------------------------------------------------
// Axes

// Left margin for a value axis: its title (rotated), the widest tick label and the tick marks.
double value_axis_margin(const std::vector<std::string>& labels, std::string_view title) {
  return 10 + (title.empty() ? 0 : kAxisTitleFont + 8) + max_width(labels, kTickFont) + kTickLength + 4;
}

void value_axis(std::string& out, const Plot& p, const AxisMap& map, const std::vector<std::string>& labels,
                std::string_view title) {
  out += "<g class=\"y-axis\">\n";
  const size_t n = map.ticks.at.size();
  const double spacing = n > 1 ? p.height() / static_cast<double>(n - 1) : p.height();
  const size_t stride = label_stride(n, spacing, kTickFont + 4);
  for (size_t i = 0; i < n; ++i) {
    const double y = map(map.ticks.at[i]);
    line(out, p.x0, y, p.x1, y, kGridColour);
    line(out, p.x0 - kTickLength, y, p.x0, y, kAxisColour);
    if (i % stride == 0)
      text(out, p.x0 - kTickLength - 3, y, labels[i],
           {.anchor = "end", .cls = "tick-label", .centre_vertically = true});
  }
  line(out, p.x0, p.y0, p.x0, p.y1, kAxisColour);
  vertical_title(out, kLeftTitleX, p, title);
  out += "</g>\n";
}

constexpr double kXLabelBaseline = kTickLength + 3 + kTickFont;  // below the plot's bottom edge

void numeric_x_axis(std::string& out, const Plot& p, const AxisMap& map, const std::vector<std::string>& labels,
                    std::string_view title, double chart_height) {
  out += "<g class=\"x-axis\">\n";
  const size_t n = map.ticks.at.size();
  const double spacing = n > 1 ? p.width() / static_cast<double>(n - 1) : p.width();
  const size_t stride = label_stride(n, spacing, max_width(labels, kTickFont) + 8);
  for (size_t i = 0; i < n; ++i) {
    const double x = map(map.ticks.at[i]);
    line(out, x, p.y0, x, p.y1, kGridColour);
    line(out, x, p.y1, x, p.y1 + kTickLength, kAxisColour);
    if (i % stride == 0) text(out, x, p.y1 + kXLabelBaseline, labels[i], {.anchor = "middle", .cls = "tick-label"});
  }
  line(out, p.x0, p.y1, p.x1, p.y1, kAxisColour);
  horizontal_title(out, p, chart_height - 10, title);
  out += "</g>\n";
}

// Room under the plot for numeric x tick labels and the x title.
double x_axis_margin(std::string_view title) {
  return kXLabelBaseline + 6 + (title.empty() ? 0 : kAxisTitleFont + 6) + 6;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------------

std::string compact_number(double v) {
  if (!std::isfinite(v)) return "n/a";
  if (v == 0) return "0";
  if (v < 0) return "-" + compact_number(-v);
  // Round to three significant digits before choosing the suffix, so that 999.6 becomes "1k", not "1000".
  const std::string sci = fmt::format("{:.2e}", v);
  double r = v;
  std::from_chars(sci.data(), sci.data() + sci.size(), r);
  if (r < 1e-3 || r >= 1e15) return fmt::format("{:.3g}", r);
  const auto three_digits = [](double s, const char* suffix) {
    const int decimals = s >= 100 ? 0 : s >= 10 ? 1 : s >= 1 ? 2 : 2 - static_cast<int>(std::floor(std::log10(s)));
    return trim_zeros(fmt::format("{:.{}f}", s, decimals)) + suffix;
  };
  static constexpr struct {
    double scale;
    const char* suffix;
  } kUnits[] = {{1e12, "T"}, {1e9, "G"}, {1e6, "M"}, {1e3, "k"}};
  for (const auto& u : kUnits)
    if (r >= u.scale) return three_digits(r / u.scale, u.suffix);
  return three_digits(r, "");
}

std::string heat_colour(double value, double lo, double hi) {
  if (std::isnan(value)) {
    check_heat_range(lo, hi);
    return kMissingFill;
  }
  const Rgb c = heat_rgb(value, lo, hi);
  return fmt::format("#{:02x}{:02x}{:02x}", c.r, c.g, c.b);
}

std::string line_chart(const LineChart& c) {
  std::string out;
  open_chart(out, "line", c.width, c.height, c.title);
  const double w = c.width, h = c.height;

  // Per series, the points with a drawable x, sorted by x; a point whose y cannot be drawn breaks the line there.
  struct Point {
    double x, y;
  };
  std::vector<std::vector<Point>> points(c.series.size());
  std::vector<bool> has_data(c.series.size(), false);
  std::vector<std::string> names;
  double x_lo = std::numeric_limits<double>::infinity(), x_hi = -x_lo, y_lo = x_lo, y_hi = -x_lo;
  for (size_t i = 0; i < c.series.size(); ++i) {
    const Series& s = c.series[i];
    MLABENCH_CHECK(s.x.size() == s.y.size(),
                   "svg::line_chart: series '{}' has {} x values and {} y values; HINT: give one y per x (NaN for "
                   "a missing point)",
                   s.name, s.x.size(), s.y.size());
    names.push_back(s.name);
    for (size_t j = 0; j < s.x.size(); ++j) {
      if (!plottable(s.x[j], c.x.scale)) continue;
      points[i].push_back({s.x[j], s.y[j]});
      if (!plottable(s.y[j], c.y.scale)) continue;
      has_data[i] = true;
      x_lo = std::min(x_lo, s.x[j]), x_hi = std::max(x_hi, s.x[j]);
      y_lo = std::min(y_lo, s.y[j]), y_hi = std::max(y_hi, s.y[j]);
    }
    std::stable_sort(points[i].begin(), points[i].end(), [](const Point& a, const Point& b) { return a.x < b.x; });
  }
  const bool any = std::find(has_data.begin(), has_data.end(), true) != has_data.end();
  const auto entries = legend_entries(names, has_data);

  if (!any) {
    const double left = 20 + (c.y.title.empty() ? 0 : kAxisTitleFont + 8);
    const double top = kTitleBlock + legend_rows(entries, left, w - 20) * kLegendRow;
    const Plot p = plot_in(w, h, left, top, 20, x_axis_margin(c.x.title));
    legend(out, entries, false, p.x0, p.x1, kTitleBlock);
    no_data(out, p);
    vertical_title(out, kLeftTitleX, p, c.y.title);
    horizontal_title(out, p, h - 10, c.x.title);
    close_chart(out);
    return out;
  }

  // A linear value axis starts at 0 when no value is below it (and ends there when none is above).
  if (c.y.scale == Scale::LINEAR) {
    if (y_lo >= 0) y_lo = 0;
    if (y_hi <= 0) y_hi = 0;
  }
  const int y_target = std::clamp(static_cast<int>(std::lround((h - 110) / 45)), 3, 8);
  const int x_target = std::clamp(static_cast<int>(std::lround((w - 120) / 90)), 3, 10);
  const Ticks y_ticks = ticks_for(c.y.scale, y_lo, y_hi, y_target);
  const Ticks x_ticks = ticks_for(c.x.scale, x_lo, x_hi, x_target);
  const auto y_labels = tick_labels(y_ticks), x_labels = tick_labels(x_ticks);

  const double left = std::max(value_axis_margin(y_labels, c.y.title), text_width(x_labels.front(), kTickFont) / 2 + 8);
  const double right = std::max(20.0, text_width(x_labels.back(), kTickFont) / 2 + 8);
  const int rows = legend_rows(entries, left, w - right);
  const Plot p = plot_in(w, h, left, kTitleBlock + rows * kLegendRow + (rows ? 6 : 4), right, x_axis_margin(c.x.title));
  legend(out, entries, false, p.x0, p.x1, kTitleBlock);

  const AxisMap ymap{y_ticks, p.y1, p.y0}, xmap{x_ticks, p.x0, p.x1};
  value_axis(out, p, ymap, y_labels, c.y.title);
  numeric_x_axis(out, p, xmap, x_labels, c.x.title, h);

  for (size_t i = 0; i < c.series.size(); ++i) {
    if (!has_data[i]) continue;
    const char* colour = series_colour(i);
    put(out, "<g class=\"series\" data-series=\"{}\">\n", i);
    // Runs of drawable points become one polyline each.
    std::string run;
    size_t run_points = 0;
    const auto flush = [&] {
      if (run_points >= 2)
        put(out,
            R"(<polyline points="{}" fill="none" stroke="{}" stroke-width="2" stroke-linejoin="round"{}/>)"
            "\n",
            run, colour, series_dashed(i) ? R"( stroke-dasharray="6 3")" : "");
      run.clear();
      run_points = 0;
    };
    for (const Point& pt : points[i]) {
      if (!plottable(pt.y, c.y.scale)) {
        flush();
        continue;
      }
      if (run_points++) run += ' ';
      run += px(xmap(pt.x)) + "," + px(ymap(pt.y));
    }
    flush();
    const std::string& name = entries.empty() ? c.series[i].name : entries[i].name;
    for (const Point& pt : points[i]) {
      if (!plottable(pt.y, c.y.scale)) continue;
      const std::string hover = fmt::format("{}{}{}, {}", name, name.empty() ? "" : ": ",
                                            named(c.x.title, exact_number(pt.x)), named(c.y.title, exact_number(pt.y)));
      put(out,
          R"(<circle cx="{}" cy="{}" r="3.5" fill="{}" stroke="#ffffff" stroke-width="1">{}</circle>)"
          "\n",
          px(xmap(pt.x)), px(ymap(pt.y)), colour, hover_title(hover));
    }
    out += "</g>\n";
  }
  close_chart(out);
  return out;
}

std::string bar_chart(const BarChart& c) {
  std::string out;
  open_chart(out, "bar", c.width, c.height, c.title);
  const double w = c.width, h = c.height;
  const size_t n_series = std::max<size_t>(1, c.series.size());
  const size_t n_groups = c.groups.size();

  std::vector<bool> has_data(c.series.size(), false);
  double v_lo = 0, v_hi = 0;
  for (const BarGroup& g : c.groups) {
    MLABENCH_CHECK(g.values.size() <= n_series,
                   "svg::bar_chart: group '{}' has {} values for {} series; HINT: give one value per entry of "
                   "BarChart::series (NaN where a series has none)",
                   g.label, g.values.size(), c.series.size());
    for (size_t s = 0; s < g.values.size(); ++s) {
      if (!std::isfinite(g.values[s])) continue;
      v_lo = std::min(v_lo, g.values[s]), v_hi = std::max(v_hi, g.values[s]);
      if (s < has_data.size()) has_data[s] = true;
    }
  }
  const auto entries = legend_entries(c.series, has_data);

  if (n_groups == 0) {
    const double left = 20 + (c.value_title.empty() ? 0 : kAxisTitleFont + 8);
    const double top = kTitleBlock + legend_rows(entries, left, w - 20) * kLegendRow;
    const Plot p = plot_in(w, h, left, top, 20, 30);
    legend(out, entries, true, p.x0, p.x1, kTitleBlock);
    no_data(out, p);
    vertical_title(out, kLeftTitleX, p, c.value_title);
    close_chart(out);
    return out;
  }

  const int target = std::clamp(static_cast<int>(std::lround((h - 110) / 45)), 3, 8);
  const Ticks ticks = linear_ticks(v_lo, v_hi, target);
  const auto y_labels = tick_labels(ticks);

  // Group labels: horizontal when the widest fits its band, otherwise rotated -30 degrees and cut at 150 px.
  constexpr double kMaxGroupLabel = 150;
  const double right = 20;
  double left = value_axis_margin(y_labels, c.value_title);
  std::vector<std::string> group_labels;
  for (const BarGroup& g : c.groups) group_labels.push_back(g.label);
  const double band0 = (w - left - right) / static_cast<double>(n_groups);
  const bool rotated = max_width(group_labels, kTickFont) > band0 - 6;
  if (rotated)
    for (std::string& label : group_labels) label = fit_text(label, kMaxGroupLabel, kTickFont);
  const double label_w = max_width(group_labels, kTickFont);
  if (rotated) left = std::max(left, rotated_overhang(group_labels, band0) + 10);
  const double label_depth = rotated ? label_w * kSin30 + kTickFont * kCos30 + 4 : kTickFont + 4;

  // Value labels: the larger font at which the widest leaves 3 px between neighbours, else turned upright.
  const double band_est = (w - left - right) / static_cast<double>(n_groups);
  const double bar_est = std::min(band_est * 0.8 / static_cast<double>(n_series), 48.0);
  std::vector<std::string> value_texts;
  for (const BarGroup& g : c.groups)
    for (size_t s = 0; s < n_series; ++s)
      value_texts.push_back(s < g.values.size() && std::isfinite(g.values[s]) ? compact_number(g.values[s]) : "n/a");
  double value_font = 0;
  for (const double f : {kValueFont, 9.0})
    if (value_font == 0 && max_width(value_texts, f) <= bar_est - 3) value_font = f;
  const bool upright = value_font == 0;
  if (upright) value_font = kValueFont;
  const double headroom = upright ? max_width(value_texts, value_font) + 6 : value_font + 6;
  const bool show_values =
      c.value_labels || std::find(value_texts.begin(), value_texts.end(), "n/a") != value_texts.end();

  const int rows = legend_rows(entries, left, w - right);
  const double top = kTitleBlock + rows * kLegendRow + (rows ? 6 : 4) + (show_values ? headroom : 0);
  const double bottom = kTickLength + 3 + label_depth + 8 + (v_lo < 0 && show_values ? headroom : 0);
  const Plot p = plot_in(w, h, left, top, right, bottom);
  legend(out, entries, true, p.x0, p.x1, kTitleBlock);

  const AxisMap ymap{ticks, p.y1, p.y0};
  value_axis(out, p, ymap, y_labels, c.value_title);

  const double band = p.width() / static_cast<double>(n_groups);
  const double bar_w = std::min(band * 0.8 / static_cast<double>(n_series), 48.0);
  const double y_zero = ymap(0);
  const size_t stride = rotated ? label_stride(n_groups, band, 2.2 * kTickFont) : 1;

  out += "<g class=\"x-axis\">\n";
  line(out, p.x0, p.y1, p.x1, p.y1, kAxisColour);
  for (size_t gi = 0; gi < n_groups; ++gi) {
    const double cx = p.x0 + band * (static_cast<double>(gi) + 0.5);
    line(out, cx, p.y1, cx, p.y1 + kTickLength, kAxisColour);
    if (gi % stride != 0) continue;
    const std::string& full = c.groups[gi].label;
    const std::string_view hover = group_labels[gi] == full ? std::string_view{} : std::string_view(full);
    if (rotated)
      text(out, cx, p.y1 + kTickLength + 6, group_labels[gi],
           {.anchor = "end", .cls = "tick-label", .centre_vertically = true, .rotate = -30}, hover);
    else
      text(out, cx, p.y1 + kXLabelBaseline, group_labels[gi], {.anchor = "middle", .cls = "tick-label"}, hover);
  }
  out += "</g>\n";
  if (v_lo < 0) line(out, p.x0, y_zero, p.x1, y_zero, kAxisColour);

  out += "<g class=\"bars\">\n";
  for (size_t gi = 0; gi < n_groups; ++gi) {
    const BarGroup& g = c.groups[gi];
    const double start = p.x0 + band * static_cast<double>(gi) + (band - bar_w * static_cast<double>(n_series)) / 2;
    for (size_t s = 0; s < n_series; ++s) {
      const double v = s < g.values.size() ? g.values[s] : std::numeric_limits<double>::quiet_NaN();
      const double bx = start + bar_w * static_cast<double>(s);
      const double cx = bx + bar_w / 2;
      const std::string who =
          c.series.empty() || c.series[s].empty() ? g.label : fmt::format("{}, {}", g.label, c.series[s]);
      const std::string hover = fmt::format("{}: {}", who, named(c.value_title, exact_number(v)));
      const bool finite = std::isfinite(v);
      const double end = finite ? ymap(v) : y_zero;
      if (finite)
        put(out,
            R"(<rect class="bar" x="{}" y="{}" width="{}" height="{}" fill="{}">{}</rect>)"
            "\n",
            px(bx + 0.5), px(std::min(end, y_zero)), px(std::max(bar_w - 1, 1.0)), px(std::fabs(end - y_zero)),
            series_colour(s), hover_title(hover));
      if (!finite || c.value_labels) {
        const bool below = finite && v < 0;
        const std::string label = finite ? compact_number(v) : "n/a";
        TextOptions o{.size = value_font, .anchor = "middle", .fill = finite ? kInk : kMutedInk, .cls = "value-label"};
        if (upright) {
          o.anchor = below ? "end" : "start", o.rotate = -90, o.centre_vertically = true;
          text(out, cx, below ? end + 4 : end - 4, label, o, finite ? std::string_view{} : hover);
        } else {
          text(out, cx, below ? end + value_font + 3 : end - 4, label, o, finite ? std::string_view{} : hover);
        }
      }
    }
  }
  out += "</g>\n";
  close_chart(out);
  return out;
}

std::string heatmap(const Heatmap& hm) {
  std::string out;
  open_chart(out, "heatmap", hm.width, hm.height, hm.title);
  check_heat_range(hm.lo, hm.hi);
  const double w = hm.width, h = hm.height;
  const size_t n_rows = hm.values.size(), n_cols = n_rows ? hm.values[0].size() : 0;
  MLABENCH_CHECK(hm.y_labels.size() == n_rows,
                 "svg::heatmap: {} y labels for {} rows of values; HINT: give one y label per row of "
                 "Heatmap::values",
                 hm.y_labels.size(), n_rows);
  for (size_t r = 0; r < n_rows; ++r)
    MLABENCH_CHECK(hm.values[r].size() == n_cols && hm.x_labels.size() == n_cols,
                   "svg::heatmap: row {} has {} values, row 0 has {} and there are {} x labels; HINT: give every "
                   "row one value per x label (NaN where a cell was not run)",
                   r, hm.values[r].size(), n_cols, hm.x_labels.size());

  constexpr double kMaxLabel = 110, kBarWidth = 14, kBarGap = 14;
  std::vector<std::string> y_labels, x_labels;
  for (const auto& s : hm.y_labels) y_labels.push_back(fit_text(s, kMaxLabel, kTickFont));
  for (const auto& s : hm.x_labels) x_labels.push_back(fit_text(s, kMaxLabel, kTickFont));

  // Colour bar ticks at lo, the middle (the yellow anchor) and hi, and at the quarters where the bar is tall
  // enough: evenly spaced, and each on a point of the scale the eye can find.
  const double span = hm.hi - hm.lo;
  std::vector<std::string> bar_labels;
  for (const double q : {0.0, 0.25, 0.5, 0.75, 1.0}) bar_labels.push_back(compact_number(hm.lo + q * span));

  const double left =
      10 + (hm.y_title.empty() ? 0 : kAxisTitleFont + 8) + max_width(y_labels, kTickFont) + kTickLength + 4;
  const double right = kBarGap + kBarWidth + kTickLength + 3 + max_width(bar_labels, kTickFont) + 8 +
                       (hm.scale_title.empty() ? 0 : kAxisTitleFont + 8) + 4;
  const double top = kTitleBlock + 4;
  const double cell_w0 = n_cols ? (w - left - right) / static_cast<double>(n_cols) : 0;
  const double x_label_w = max_width(x_labels, kTickFont);
  const bool rotated = n_cols && x_label_w > cell_w0 - 4;
  const double label_depth = rotated ? x_label_w * kSin30 + kTickFont * kCos30 + 4 : kTickFont + 4;
  const double bottom = kTickLength + 3 + label_depth + 6 + (hm.x_title.empty() ? 0 : kAxisTitleFont + 6) + 6;
  const Plot p =
      plot_in(w, h, std::max(left, rotated ? rotated_overhang(x_labels, cell_w0) + 10 : 0.0), top, right, bottom);

  vertical_title(out, kLeftTitleX, p, hm.y_title);
  horizontal_title(out, p, h - 10, hm.x_title);
  if (n_rows == 0 || n_cols == 0) {
    no_data(out, p);
    close_chart(out);
    return out;
  }

  const double cell_w = p.width() / static_cast<double>(n_cols), cell_h = p.height() / static_cast<double>(n_rows);
  const int decimals = std::clamp(2 - static_cast<int>(std::floor(std::log10(span))), 0, 3);
  const auto cell_text = [&](double v) { return trim_zeros(fmt::format("{:.{}f}", v, decimals)); };

  // Cell labels at the largest font that fits every cell, or none (the value stays on hover).
  double cell_font = 0;
  if (hm.cell_labels) {
    std::vector<std::string> texts;
    for (const auto& row : hm.values)
      for (const double v : row)
        if (std::isfinite(v)) texts.push_back(cell_text(v));
    for (const double f : {11.0, 10.0, 9.0, 8.0})
      if (cell_font == 0 && max_width(texts, f) <= cell_w - 4 && f <= cell_h - 2) cell_font = f;
  }

  out += "<g class=\"cells\">\n";
  for (size_t r = 0; r < n_rows; ++r) {
    for (size_t col = 0; col < n_cols; ++col) {
      const double v = hm.values[r][col];
      const double x = p.x0 + cell_w * static_cast<double>(col), y = p.y0 + cell_h * static_cast<double>(r);
      const std::string hover = fmt::format("{}, {}: {}", named(hm.x_title, hm.x_labels[col]),
                                            named(hm.y_title, hm.y_labels[r]), named(hm.scale_title, exact_number(v)));
      if (!std::isfinite(v)) {
        // Missing cells: light grey with 45-degree hatching, so they cannot be read as a low score.
        std::string d;
        constexpr double kHatch = 6;
        for (double s = kHatch; s < cell_w + cell_h; s += kHatch) {
          const double ax = std::min(s, cell_w), ay = s - ax;  // on the bottom or the right edge
          const double by = std::min(s, cell_h), bx = s - by;  // on the left or the top edge
          put(d, "M{},{}L{},{}", px(x + ax), px(y + cell_h - ay), px(x + bx), px(y + cell_h - by));
        }
        put(out,
            R"(<g class="cell missing"><rect x="{}" y="{}" width="{}" height="{}" fill="{}" stroke="#ffffff")"
            R"( stroke-width="1">{}</rect><path d="{}" stroke="{}" stroke-width="1" fill="none"/></g>)"
            "\n",
            px(x), px(y), px(cell_w), px(cell_h), kMissingFill, hover_title(hover), d, kHatchColour);
        continue;
      }
      const Rgb colour = heat_rgb(v, hm.lo, hm.hi);
      put(out,
          R"(<rect class="cell" x="{}" y="{}" width="{}" height="{}" fill="#{:02x}{:02x}{:02x}")"
          R"( stroke="#ffffff" stroke-width="1">{}</rect>)"
          "\n",
          px(x), px(y), px(cell_w), px(cell_h), colour.r, colour.g, colour.b, hover_title(hover));
      if (cell_font > 0)
        text(out, x + cell_w / 2, y + cell_h / 2, cell_text(v),
             {.size = cell_font,
              .anchor = "middle",
              .fill = ink_on(colour),
              .cls = "cell-label",
              .centre_vertically = true});
    }
  }
  out += "</g>\n";

  out += "<g class=\"y-axis\">\n";
  const size_t y_stride = label_stride(n_rows, cell_h, kTickFont + 1);
  for (size_t r = 0; r < n_rows; r += y_stride) {
    const double y = p.y0 + cell_h * (static_cast<double>(r) + 0.5);
    line(out, p.x0 - kTickLength, y, p.x0, y, kAxisColour);
    text(out, p.x0 - kTickLength - 3, y, y_labels[r], {.anchor = "end", .cls = "tick-label", .centre_vertically = true},
         y_labels[r] == hm.y_labels[r] ? std::string_view{} : std::string_view(hm.y_labels[r]));
  }
  out += "</g>\n<g class=\"x-axis\">\n";
  const size_t x_stride = rotated ? label_stride(n_cols, cell_w, 2.2 * kTickFont) : 1;
  for (size_t col = 0; col < n_cols; col += x_stride) {
    const double x = p.x0 + cell_w * (static_cast<double>(col) + 0.5);
    line(out, x, p.y1, x, p.y1 + kTickLength, kAxisColour);
    const std::string_view hover =
        x_labels[col] == hm.x_labels[col] ? std::string_view{} : std::string_view(hm.x_labels[col]);
    if (rotated)
      text(out, x, p.y1 + kTickLength + 6, x_labels[col],
           {.anchor = "end", .cls = "tick-label", .centre_vertically = true, .rotate = -30}, hover);
    else
      text(out, x, p.y1 + kXLabelBaseline, x_labels[col], {.anchor = "middle", .cls = "tick-label"}, hover);
  }
  out += "</g>\n";

  // Colour bar: thin slices from hi at the top to lo at the bottom, overlapping by half a pixel so no seams show.
  out += "<g class=\"colour-bar\">\n";
  const double bx = p.x1 + kBarGap;
  constexpr int kSlices = 48;
  const double slice = p.height() / kSlices;
  for (int k = 0; k < kSlices; ++k) {
    const double v = hm.hi - (k + 0.5) / kSlices * span;
    put(out,
        R"(<rect x="{}" y="{}" width="{}" height="{}" fill="{}"/>)"
        "\n",
        px(bx), px(p.y0 + slice * k), px(kBarWidth), px(slice + (k + 1 < kSlices ? 0.5 : 0)),
        heat_colour(v, hm.lo, hm.hi));
  }
  put(out,
      R"(<rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="{}"/>)"
      "\n",
      px(bx), px(p.y0), px(kBarWidth), px(p.height()), kAxisColour);
  const double quarter_gap = p.height() / 4;
  for (const double q : {0.0, 0.25, 0.5, 0.75, 1.0}) {
    if ((q == 0.25 || q == 0.75) && quarter_gap < 2 * kTickFont) continue;
    const double y = p.y1 - q * p.height();
    line(out, bx + kBarWidth, y, bx + kBarWidth + kTickLength, y, kAxisColour);
    text(out, bx + kBarWidth + kTickLength + 3, y, compact_number(hm.lo + q * span),
         {.cls = "tick-label", .centre_vertically = true});
  }
  vertical_title(out, w - 10 - kAxisTitleFont * 0.3, p, hm.scale_title);
  out += "</g>\n";
  close_chart(out);
  return out;
}

}  // namespace mlabench::reports::svg
