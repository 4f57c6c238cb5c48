// The inline SVG charts: well-formed markup made only of the elements the charts use, hostile text escaped,
// coordinates that are plain numbers with at most two decimals, tick positions (powers of two, 1/2/5 steps), the
// heat colour scale, compact numbers, NaN handling, text kept inside the chart, and byte-identical output.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "mlabench/result.h"
#include "reports/svg_chart.h"

namespace mlabench::reports::svg {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

struct Element {
  std::string name;
  std::map<std::string, std::string> attrs;
  std::string content;       // text directly inside (for <text> and <title>)
  std::string parent_class;  // class of the nearest enclosing <g> with one
  bool rotated = false;
};

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + what.size())) ++n;
  return n;
}

// The entity escape_html writes at s[i] ("&amp;", "&lt;", ...), or "" when s[i] starts none.
std::string_view entity_at(std::string_view s, size_t i) {
  for (const std::string_view e : {"&amp;", "&lt;", "&gt;", "&quot;", "&#39;"})
    if (s.substr(i, e.size()) == e) return e;
  return {};
}

bool is_attr_name_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == ':'; }

// A small XML checker (hand-written: GCC 12 warns inside std::regex under the sanitizer build): every tag is one
// the charts use, tags nest and close properly, attributes are quoted and unique, there is no style or on*
// attribute, and text holds no raw '>' and only the entities escape_html writes. Returns the elements in order.
std::vector<Element> parse_svg(const std::string& svg) {
  static const std::set<std::string> kAllowed = {"svg",      "title",  "g",    "rect", "line",
                                                 "polyline", "circle", "text", "path"};
  std::vector<Element> elements;
  std::vector<size_t> open;  // indices into elements
  size_t i = 0;
  while (i < svg.size()) {
    if (svg[i] != '<') {
      const size_t next = std::min(svg.find('<', i), svg.size());
      const std::string chunk = svg.substr(i, next - i);
      EXPECT_EQ(chunk.find('>'), std::string::npos) << "raw '>' in text: " << chunk;
      for (size_t k = chunk.find('&'); k != std::string::npos; k = chunk.find('&', k + 1))
        EXPECT_FALSE(entity_at(chunk, k).empty()) << "bare '&' in text: " << chunk;
      if (!open.empty()) elements[open.back()].content += chunk;
      i = next;
      continue;
    }
    const size_t close = svg.find('>', i);
    EXPECT_NE(close, std::string::npos) << "unterminated tag at " << i;
    if (close == std::string::npos) break;
    std::string tag = svg.substr(i + 1, close - i - 1);
    i = close + 1;
    if (tag.starts_with('/')) {
      const std::string name = tag.substr(1);
      EXPECT_FALSE(open.empty()) << "</" << name << "> closes nothing";
      if (open.empty()) break;
      EXPECT_EQ(elements[open.back()].name, name) << "</" << name << "> closes <" << elements[open.back()].name << ">";
      open.pop_back();
      continue;
    }
    const bool self_closing = tag.ends_with('/');
    if (self_closing) tag.pop_back();
    Element e;
    size_t at = 0;
    while (at < tag.size() && is_attr_name_char(tag[at])) ++at;
    e.name = tag.substr(0, at);
    EXPECT_TRUE(kAllowed.count(e.name)) << "unexpected element <" << e.name << ">";
    while (at < tag.size()) {
      const size_t name_start = tag.find_first_not_of(" \n", at);
      if (name_start == std::string::npos) break;
      EXPECT_GT(name_start, at) << "no space before an attribute in <" << tag << ">";
      size_t name_end = name_start;
      while (name_end < tag.size() && is_attr_name_char(tag[name_end])) ++name_end;
      const bool quoted = name_end > name_start && tag.substr(name_end, 2) == "=\"";
      const size_t value_end = quoted ? tag.find('"', name_end + 2) : std::string::npos;
      EXPECT_NE(value_end, std::string::npos) << "unquoted or malformed attribute in <" << tag << ">";
      if (value_end == std::string::npos) break;
      const std::string name = tag.substr(name_start, name_end - name_start);
      EXPECT_FALSE(e.attrs.count(name)) << "duplicate attribute " << name;
      e.attrs[name] = tag.substr(name_end + 2, value_end - name_end - 2);
      at = value_end + 1;
    }
    EXPECT_FALSE(e.attrs.count("style")) << "style attribute on <" << e.name << ">";
    for (const auto& [k, v] : e.attrs) EXPECT_FALSE(k.starts_with("on")) << "event handler attribute " << k;
    for (auto it = open.rbegin(); it != open.rend(); ++it) {
      const Element& p = elements[*it];
      if (!e.rotated && p.attrs.count("transform")) e.rotated = true;
      if (e.parent_class.empty() && p.name == "g" && p.attrs.count("class")) e.parent_class = p.attrs.at("class");
    }
    if (e.attrs.count("transform")) e.rotated = true;
    elements.push_back(e);
    if (!self_closing) open.push_back(elements.size() - 1);
  }
  EXPECT_TRUE(open.empty()) << open.size() << " elements left open";
  return elements;
}

// "-12", "3.5", "0.25": digits with an optional sign and at most two decimals (never nan, inf or 1e+300).
bool is_plain_number(std::string_view s) {
  if (s.starts_with('-')) s.remove_prefix(1);
  const size_t dot = std::min(s.find('.'), s.size());
  const auto digits = [](std::string_view d) {
    return !d.empty() && std::all_of(d.begin(), d.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  return digits(s.substr(0, dot)) && (dot == s.size() || (digits(s.substr(dot + 1)) && s.size() - dot - 1 <= 2));
}

// `s` split at every character in `separators`, empty pieces kept (so "1,,2" shows as malformed).
std::vector<std::string_view> split(std::string_view s, std::string_view separators) {
  std::vector<std::string_view> out;
  size_t from = 0;
  for (size_t k = 0; k <= s.size(); ++k)
    if (k == s.size() || separators.find(s[k]) != std::string_view::npos)
      out.push_back(s.substr(from, k - from)), from = k + 1;
  return out;
}

bool all_plain_numbers(const std::vector<std::string_view>& pieces) {
  return std::all_of(pieces.begin(), pieces.end(), is_plain_number);
}

// Coordinates and sizes, in every attribute that holds them, are plain numbers with at most two decimals.
void expect_numeric_attributes(const std::vector<Element>& elements) {
  static const std::set<std::string> kNumeric = {"x",  "y", "x1",    "y1",     "x2",           "y2",       "cx",
                                                 "cy", "r", "width", "height", "stroke-width", "font-size"};
  for (const Element& e : elements) {
    for (const auto& [k, v] : e.attrs) {
      bool ok = true;
      if (kNumeric.count(k)) {
        ok = is_plain_number(v);
      } else if (k == "points") {
        const auto pairs = split(v, " ");
        ok = std::all_of(pairs.begin(), pairs.end(), [](std::string_view pair) {
          const auto xy = split(pair, ",");
          return xy.size() == 2 && all_plain_numbers(xy);
        });
      } else if (k == "d") {
        const auto moves = split(v, "ML");
        ok = (v.starts_with('M') && moves.size() % 2 == 1 && moves[0].empty()) &&
             std::all_of(moves.begin() + 1, moves.end(), [](std::string_view pair) {
               const auto xy = split(pair, ",");
               return xy.size() == 2 && all_plain_numbers(xy);
             });
      } else if (k == "transform") {
        const std::string_view t = v;
        ok = t.starts_with("rotate(") && t.ends_with(")") && split(t.substr(7, t.size() - 8), " ").size() == 3 &&
             all_plain_numbers(split(t.substr(7, t.size() - 8), " "));
      } else if (k == "viewBox") {
        const auto box = split(v, " ");
        ok = box.size() == 4 && box[0] == "0" && box[1] == "0" && all_plain_numbers(box);
      }
      EXPECT_TRUE(ok) << "<" << e.name << " " << k << "=\"" << v << "\">";
    }
  }
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Characters as shown: an entity counts as one, a UTF-8 sequence as one.
size_t n_shown_chars(std::string_view escaped) {
  size_t n = 0;
  for (size_t k = 0; k < escaped.size();) {
    const std::string_view e = entity_at(escaped, k);
    if (!e.empty()) {
      ++n, k += e.size();
      continue;
    }
    n += (static_cast<unsigned char>(escaped[k]) & 0xC0) != 0x80;
    ++k;
  }
  return n;
}

// Every check a chart of any kind must pass; returns its elements for more specific checks.
std::vector<Element> expect_valid_chart(const std::string& svg, const std::string& kind) {
  EXPECT_TRUE(svg.starts_with("<svg class=\"chart\" data-chart=\"" + kind +
                              "\" xmlns=\"http://www.w3.org/2000/svg\" "
                              "role=\"img\" viewBox=\"0 0 "))
      << svg.substr(0, 200);
  EXPECT_EQ(svg.find("style="), std::string::npos);
  const std::string low = lower(svg);
  EXPECT_EQ(low.find("nan"), std::string::npos);
  EXPECT_EQ(low.find("inf"), std::string::npos);
  const auto elements = parse_svg(svg);
  expect_numeric_attributes(elements);
  EXPECT_FALSE(elements.empty());
  if (elements.size() > 1) {
    EXPECT_EQ(elements[0].name, "svg");
    EXPECT_EQ(elements[1].name, "title") << "the chart's <title> must be the first child";
  }
  // Unrotated text, at the 0.6 em per character the layout assumes, stays inside the chart.
  const double width = std::stod(elements[0].attrs.at("width"));
  for (const Element& e : elements) {
    if (e.name != "text" || e.rotated) continue;
    const std::string& shown = e.content;  // without a <title> child's text, which is not drawn
    const double w = static_cast<double>(n_shown_chars(shown)) * 0.6 * std::stod(e.attrs.at("font-size"));
    const double x = std::stod(e.attrs.at("x"));
    const std::string anchor = e.attrs.count("text-anchor") ? e.attrs.at("text-anchor") : "start";
    const double left = anchor == "end" ? x - w : anchor == "middle" ? x - w / 2 : x;
    EXPECT_GE(left, -0.5) << "text cut off on the left: " << shown;
    EXPECT_LE(left + w, width + 0.5) << "text cut off on the right: " << shown;
  }
  return elements;
}

// Contents of the <text class="tick-label"> elements inside the <g class="group_class">.
std::vector<std::string> tick_labels(const std::vector<Element>& elements, const std::string& group_class) {
  std::vector<std::string> out;
  for (const Element& e : elements)
    if (e.name == "text" && e.parent_class == group_class && e.attrs.count("class") &&
        e.attrs.at("class") == "tick-label")
      out.push_back(e.content);
  return out;
}

size_t count_elements(const std::vector<Element>& elements, const std::string& name, const std::string& cls = "") {
  size_t n = 0;
  for (const Element& e : elements)
    if (e.name == name && (cls.empty() || (e.attrs.count("class") && e.attrs.at("class") == cls))) ++n;
  return n;
}

double parse_compact(const std::string& s) {
  static const std::map<char, double> kSuffix = {{'k', 1e3}, {'M', 1e6}, {'G', 1e9}, {'T', 1e12}};
  const auto it = kSuffix.find(s.back());
  return it == kSuffix.end() ? std::stod(s) : std::stod(s.substr(0, s.size() - 1)) * it->second;
}

LineChart decode_throughput() {
  LineChart c;
  c.title = "Decode throughput";
  c.x = {"batch size", Scale::LOG2};
  c.y = {"tokens/s", Scale::LINEAR};
  c.series = {{"DeepSeek-V2-Lite (MLA)", {1, 16, 64, 256}, {191, 1062.8, 3694, 4687}},
              {"GQA baseline", {1, 16, 64, 256}, {60, 800, 2500, 3100}},
              {"MHA baseline", {1, 16, 64, 256}, {40, 500, 1500, 1800}}};
  return c;
}

BarChart kv_bytes() {
  BarChart c;
  c.title = "KV cache per token";
  c.value_title = "bytes per token";
  c.groups = {{"MLA", {31104}}, {"GQA", {131072}}, {"MHA", {524288}}};
  return c;
}

BarChart ttft() {
  BarChart c;
  c.title = "Time to first token";
  c.value_title = "ms";
  c.series = {"p50", "p90", "p99"};
  c.groups = {{"batch 1", {21.4, 25.0, 31.9}},
              {"batch 16", {88.1, 102.5, kNaN}},
              {"batch 64", {301.7, 355.0, 420.2}},
              {"batch 256", {1180.0, 1402.3, 1650.8}}};
  return c;
}

Heatmap niah() {
  Heatmap h;
  h.title = "Needle in a haystack";
  h.x_title = "context length (tokens)";
  h.y_title = "depth (%)";
  h.scale_title = "score (1-10)";
  h.x_labels = {"1K", "12K", "24K", "35K", "47K", "58K", "70K", "81K", "93K", "104K", "116K", "128K"};
  h.y_labels = {"0", "9", "18", "27", "36", "45", "55", "64", "73", "82", "91", "100"};
  h.values.assign(12, std::vector<double>(12, 10));
  h.values[3][9] = 3;
  h.values[5][5] = 1;
  h.values[7][11] = 7;
  h.values[11][10] = kNaN;
  h.values[11][11] = kNaN;
  return h;
}

TEST(CompactNumber, ThreeSignificantDigitsWithSuffixes) {
  EXPECT_EQ(compact_number(0), "0");
  EXPECT_EQ(compact_number(0.812), "0.812");
  EXPECT_EQ(compact_number(12.5), "12.5");
  EXPECT_EQ(compact_number(256), "256");
  EXPECT_EQ(compact_number(1000), "1k");
  EXPECT_EQ(compact_number(1234), "1.23k");
  EXPECT_EQ(compact_number(1062.8), "1.06k");
  EXPECT_EQ(compact_number(31104), "31.1k");
  EXPECT_EQ(compact_number(524288), "524k");
  EXPECT_EQ(compact_number(45.6e6), "45.6M");
  EXPECT_EQ(compact_number(3.1e9), "3.1G");
  EXPECT_EQ(compact_number(2.5e12), "2.5T");
  EXPECT_EQ(compact_number(-1234), "-1.23k");
  EXPECT_EQ(compact_number(-0.5), "-0.5");
  EXPECT_EQ(compact_number(999.6), "1k") << "rounding to three digits must carry into the next suffix";
  EXPECT_EQ(compact_number(999999), "1M");
  EXPECT_EQ(compact_number(0.00123), "0.00123");
  EXPECT_EQ(compact_number(1e150), "1e+150");
  EXPECT_EQ(compact_number(kNaN), "n/a");
}

TEST(HeatColour, AnchorsInterpolationAndClamping) {
  EXPECT_EQ(heat_colour(1, 1, 10), "#d73027");
  EXPECT_EQ(heat_colour(5.5, 1, 10), "#fee08b");
  EXPECT_EQ(heat_colour(10, 1, 10), "#1a9850");
  EXPECT_EQ(heat_colour(-100, 1, 10), "#d73027");
  EXPECT_EQ(heat_colour(1e9, 1, 10), "#1a9850");
  EXPECT_EQ(heat_colour(std::numeric_limits<double>::infinity(), 1, 10), "#1a9850");
  // A quarter of the way: halfway between the red and yellow anchors, channel by channel.
  EXPECT_EQ(heat_colour(0.25, 0, 1), "#eb8859");
  EXPECT_EQ(heat_colour(kNaN, 1, 10), "#e4e4e4");
  EXPECT_THROW(heat_colour(5, 10, 1), Error);
  EXPECT_THROW(heat_colour(5, 1, 1), Error);
  EXPECT_THROW(heat_colour(5, -1e308, 1e308), Error) << "a span that overflows cannot be interpolated";
}

TEST(LineChart, WellFormedWithLegendAxesAndExactValues) {
  const std::string svg = line_chart(decode_throughput());
  const auto el = expect_valid_chart(svg, "line");
  EXPECT_EQ(count_elements(el, "g", "legend"), 1u);
  EXPECT_EQ(count_elements(el, "circle"), 12u + 3u) << "a marker per point plus one per legend entry";
  EXPECT_EQ(count_elements(el, "polyline"), 3u);
  EXPECT_NE(svg.find("<title>DeepSeek-V2-Lite (MLA): batch size = 16, tokens/s = 1,062.8</title>"), std::string::npos);
  EXPECT_EQ(count_elements(el, "text", "axis-title"), 2u);
  EXPECT_EQ(count_elements(el, "text", "chart-title"), 1u);
  EXPECT_EQ(line_chart(decode_throughput()), svg) << "the same input must give the same bytes";
}

TEST(LineChart, Log2TicksArePowersOfTwoCoveringTheData) {
  const auto el = parse_svg(line_chart(decode_throughput()));
  const std::vector<std::string> expected = {"1", "2", "4", "8", "16", "32", "64", "128", "256"};
  EXPECT_EQ(tick_labels(el, "x-axis"), expected);
}

TEST(LineChart, LinearTicksAreNiceStepsFromZeroPastTheMaximum) {
  LineChart c = decode_throughput();
  c.series = {{"one", {1, 16, 64, 256}, {191, 1063, 700, 12}}};
  const auto el = expect_valid_chart(line_chart(c), "line");
  const auto labels = tick_labels(el, "y-axis");
  ASSERT_GE(labels.size(), 3u);
  ASSERT_LE(labels.size(), 10u);
  std::vector<double> v;
  for (const auto& s : labels) v.push_back(parse_compact(s));
  EXPECT_EQ(v.front(), 0);
  EXPECT_GE(v.back(), 1063);
  EXPECT_LT(v[v.size() - 2], 1063) << "one tick past the maximum is enough";
  const double step = v[1] - v[0];
  for (size_t i = 1; i < v.size(); ++i) EXPECT_NEAR(v[i] - v[i - 1], step, step * 1e-9);
  const double mantissa = step / std::pow(10.0, std::floor(std::log10(step)));
  EXPECT_TRUE(std::fabs(mantissa - 1) < 1e-9 || std::fabs(mantissa - 2) < 1e-9 || std::fabs(mantissa - 5) < 1e-9)
      << "step " << step;
  EXPECT_EQ(count_elements(el, "g", "legend"), 0u) << "one series needs no legend";
}

TEST(LineChart, NanPointsBreakTheLineAndEmptySeriesSayNoData) {
  LineChart c = decode_throughput();
  c.series = {{"gappy", {1, 16, 64, 256}, {191, kNaN, 3694, 4687}},
              {"empty", {1, 16}, {kNaN, kNaN}},
              {"bad x", {kNaN, -std::numeric_limits<double>::infinity(), 0}, {1, 2, 3}}};
  const std::string svg = line_chart(c);
  const auto el = expect_valid_chart(svg, "line");
  EXPECT_EQ(count_elements(el, "polyline"), 1u) << "64-256 is a line; 1 stands alone after the gap";
  EXPECT_EQ(count_elements(el, "circle"), 3u + 3u);
  EXPECT_NE(svg.find("empty (no data)"), std::string::npos);
  EXPECT_NE(svg.find("bad x (no data)"), std::string::npos) << "x <= 0 cannot be drawn on a log2 axis";
  c.series = {{"short", {1, 2}, {1}}};
  EXPECT_THROW(line_chart(c), Error);
}

TEST(LineChart, EmptyInputsGiveAFrameWithNoData) {
  LineChart all_empty;
  all_empty.title = "t";
  all_empty.series = {{"a", {}, {}}, {"b", {1}, {kNaN}}};
  for (const LineChart& c : {LineChart{}, all_empty}) {
    const std::string svg = line_chart(c);
    const auto el = expect_valid_chart(svg, "line");
    EXPECT_EQ(count_elements(el, "text", "no-data"), 1u);
    EXPECT_EQ(count_elements(el, "circle"), c.series.size() > 1 ? 2u : 0u) << "only legend markers";
  }
}

TEST(LineChart, ManySeriesAndExtremeValuesStayWellFormed) {
  LineChart c;
  c.x.scale = Scale::LINEAR;
  for (int i = 0; i < 10; ++i)
    c.series.push_back({"s" + std::to_string(i), {-1e300, 0, 1e300}, {1e-300, -1e300, 1e300 * (i + 1)}});
  const std::string svg = line_chart(c);
  expect_valid_chart(svg, "line");
  EXPECT_NE(svg.find("stroke-dasharray"), std::string::npos) << "the ninth series reuses a colour, dashed";
}

TEST(LineChart, FlatSinglePointAndSubnormalRangesGetAnAxis) {
  for (const std::vector<double>& y : std::vector<std::vector<double>>{{0, 0}, {5, 5}, {-3, -3}, {0, 4.9e-324}}) {
    LineChart c;
    c.x.scale = Scale::LOG2;
    c.series = {{"s", {16, 16}, y}};
    const auto el = expect_valid_chart(line_chart(c), "line");
    EXPECT_GE(tick_labels(el, "y-axis").size(), 2u) << y[0] << ", " << y[1];
    EXPECT_EQ(tick_labels(el, "x-axis"), (std::vector<std::string>{"8", "16", "32"})) << "one power each side";
  }
}

TEST(BarChart, GroupedBarsWithValueLabelsAndNa) {
  const std::string svg = bar_chart(ttft());
  const auto el = expect_valid_chart(svg, "bar");
  EXPECT_EQ(count_elements(el, "rect", "bar"), 11u) << "12 values, one NaN";
  EXPECT_EQ(count_elements(el, "text", "value-label"), 12u);
  EXPECT_NE(svg.find(">n/a</text>"), std::string::npos);
  EXPECT_NE(svg.find("<title>batch 16, p99: ms = n/a</title>"), std::string::npos);
  EXPECT_EQ(count_elements(el, "g", "legend"), 1u);
  const std::vector<std::string> groups = {"batch 1", "batch 16", "batch 64", "batch 256"};
  EXPECT_EQ(tick_labels(el, "x-axis"), groups);
  const auto y = tick_labels(el, "y-axis");
  ASSERT_FALSE(y.empty());
  EXPECT_EQ(y.front(), "0");
  EXPECT_GE(parse_compact(y.back()), 1650.8);
  EXPECT_EQ(bar_chart(ttft()), svg);
}

TEST(BarChart, SingleSeriesCompactValueLabelsAndExactTitles) {
  const std::string svg = bar_chart(kv_bytes());
  const auto el = expect_valid_chart(svg, "bar");
  EXPECT_EQ(count_elements(el, "g", "legend"), 0u);
  for (const char* label : {">31.1k</text>", ">131k</text>", ">524k</text>"})
    EXPECT_NE(svg.find(label), std::string::npos) << label;
  EXPECT_NE(svg.find("<title>GQA: bytes per token = 131,072</title>"), std::string::npos);
  BarChart quiet = kv_bytes();
  quiet.value_labels = false;
  EXPECT_EQ(count_elements(parse_svg(bar_chart(quiet)), "text", "value-label"), 0u);
  BarChart too_many;
  too_many.series = {"a"};
  too_many.groups = {{"g", {1, 2}}};
  EXPECT_THROW(bar_chart(too_many), Error);
}

TEST(BarChart, LongGroupLabelsAreCutWithTheFullLabelOnHover) {
  BarChart c = kv_bytes();
  const std::string long_label = "DeepSeek-V2-Lite with multi-head latent attention and a very long description";
  c.groups[0].label = long_label;
  const std::string svg = bar_chart(c);
  const auto el = expect_valid_chart(svg, "bar");
  EXPECT_NE(svg.find("\xE2\x80\xA6"), std::string::npos) << "an ellipsis marks the cut";
  EXPECT_NE(svg.find("<title>" + long_label + "</title>"), std::string::npos);
  size_t rotated = 0;
  for (const Element& e : el) rotated += e.name == "text" && e.parent_class == "x-axis" && e.attrs.count("transform");
  EXPECT_EQ(rotated, 3u) << "labels wider than their band are turned";
}

TEST(BarChart, NegativeAllNanAndEmpty) {
  BarChart negative;
  negative.series = {"a", "b"};
  negative.groups = {{"x", {-5, 3}}, {"y", {2, -1}}};
  EXPECT_EQ(count_elements(expect_valid_chart(bar_chart(negative), "bar"), "rect", "bar"), 4u);
  BarChart nan_only;
  nan_only.groups = {{"x", {kNaN}}, {"y", {}}};
  const std::string all_nan = bar_chart(nan_only);
  const auto el = expect_valid_chart(all_nan, "bar");
  EXPECT_EQ(count_elements(el, "rect", "bar"), 0u);
  EXPECT_EQ(count(all_nan, ">n/a</text>"), 2u);
  const auto empty = expect_valid_chart(bar_chart({}), "bar");
  EXPECT_EQ(count_elements(empty, "text", "no-data"), 1u);
}

TEST(Heatmap, CellsLabelsColourBarAndMissingCells) {
  const std::string svg = heatmap(niah());
  const auto el = expect_valid_chart(svg, "heatmap");
  EXPECT_EQ(count_elements(el, "rect", "cell"), 142u);
  EXPECT_EQ(count_elements(el, "g", "cell missing"), 2u);
  EXPECT_EQ(count_elements(el, "text", "cell-label"), 142u);
  EXPECT_EQ(count(svg, ">10</text>"), 139u + 1u) << "cell labels, and the colour bar's top tick";
  EXPECT_NE(svg.find("<title>context length (tokens) = 116K, depth (%) = 100: score (1-10) = n/a</title>"),
            std::string::npos);
  EXPECT_NE(svg.find("<title>context length (tokens) = 104K, depth (%) = 27: score (1-10) = 3</title>"),
            std::string::npos);
  const auto bar = tick_labels(el, "colour-bar");
  ASSERT_GE(bar.size(), 3u);
  EXPECT_EQ(bar.front(), "1");
  EXPECT_EQ(bar.back(), "10");
  EXPECT_NE(std::find(bar.begin(), bar.end(), "5.5"), bar.end()) << "the middle (yellow) is labelled";
  const std::vector<std::string> rows(niah().y_labels), cols(niah().x_labels);
  EXPECT_EQ(tick_labels(el, "y-axis"), rows) << "rows top to bottom as given";
  EXPECT_EQ(tick_labels(el, "x-axis"), cols);
  // A cell's text contrasts with its fill: dark on green, yellow and orange, white on the deepest red.
  EXPECT_NE(svg.find(R"(fill="#1a9850" stroke="#ffffff")"), std::string::npos);
  size_t dark = 0, white = 0;
  for (const Element& e : el)
    if (e.name == "text" && e.attrs.count("class") && e.attrs.at("class") == "cell-label")
      (e.attrs.at("fill") == "#ffffff" ? white : dark)++;
  EXPECT_EQ(white, 1u) << "only the 1 (the red anchor) takes white text";
  EXPECT_EQ(dark, 141u);
  EXPECT_EQ(heatmap(niah()), svg);
}

TEST(Heatmap, ShapeChecksAndEmpty) {
  Heatmap bad = niah();
  bad.values[2].pop_back();
  EXPECT_THROW(heatmap(bad), Error);
  bad = niah();
  bad.y_labels.pop_back();
  EXPECT_THROW(heatmap(bad), Error);
  bad = niah();
  bad.lo = 10, bad.hi = 10;
  EXPECT_THROW(heatmap(bad), Error);
  const auto el = expect_valid_chart(heatmap(Heatmap{}), "heatmap");
  EXPECT_EQ(count_elements(el, "text", "no-data"), 1u);
}

TEST(Heatmap, CrowdedGridDropsCellLabelsButKeepsHoverValues) {
  Heatmap h;
  for (int i = 0; i < 60; ++i) h.x_labels.push_back(std::to_string(i * 1000));
  for (int i = 0; i < 40; ++i) h.y_labels.push_back(std::to_string(i));
  h.values.assign(40, std::vector<double>(60, 7.25));
  const std::string svg = heatmap(h);
  const auto el = expect_valid_chart(svg, "heatmap");
  EXPECT_EQ(count_elements(el, "text", "cell-label"), 0u);
  EXPECT_EQ(count_elements(el, "rect", "cell"), 2400u);
  EXPECT_LT(tick_labels(el, "x-axis").size(), 60u) << "labels are thinned where they would overlap";
}

TEST(Escaping, HostileTextAppearsOnlyEscaped) {
  const std::string script = "<script>alert(1)</script>", attr = "\"onload=\"x", textarea = "</textarea>";
  LineChart line = decode_throughput();
  line.title = script;
  line.x.title = attr;
  line.y.title = textarea;
  line.series[0].name = script;
  line.series[1].name = attr;
  BarChart bar = ttft();
  bar.title = textarea;
  bar.value_title = script;
  bar.series[0] = attr;
  bar.groups[0].label = script;
  bar.groups[1].label = textarea + textarea + textarea + textarea;
  Heatmap hm = niah();
  hm.title = attr;
  hm.x_labels[0] = script;
  hm.y_labels[0] = attr;
  hm.scale_title = textarea;
  hm.x_title = script;
  const std::vector<std::pair<std::string, std::string>> charts = {
      {line_chart(line), "line"}, {bar_chart(bar), "bar"}, {heatmap(hm), "heatmap"}};
  for (const auto& [svg, kind] : charts) {
    expect_valid_chart(svg, kind);
    EXPECT_EQ(svg.find("<script"), std::string::npos) << kind;
    EXPECT_EQ(svg.find("</textarea"), std::string::npos) << kind;
    EXPECT_EQ(svg.find("\"onload"), std::string::npos) << kind;
    EXPECT_EQ(svg.find("alert(1)</"), std::string::npos) << kind;
  }
  EXPECT_NE(charts[0].first.find("<title>&lt;script&gt;alert(1)&lt;/script&gt;</title>"), std::string::npos);
  EXPECT_NE(charts[1].first.find("&lt;/textarea&gt;"), std::string::npos);
  EXPECT_NE(charts[2].first.find("&quot;onload=&quot;x"), std::string::npos);
}

TEST(ChartSize, OutOfBoundsIsRefused) {
  LineChart narrow;
  narrow.width = 10;
  EXPECT_THROW(line_chart(narrow), Error);
  BarChart tall;
  tall.height = 100000;
  EXPECT_THROW(bar_chart(tall), Error);
  Heatmap empty;
  empty.width = 0;
  EXPECT_THROW(heatmap(empty), Error);
}

}  // namespace
}  // namespace mlabench::reports::svg
