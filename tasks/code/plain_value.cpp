#include "tasks/code/plain_value.h"

#include <cmath>
#include <cstdint>
#include <cstdlib>

#include <fmt/format.h>

#include "core/utf8.h"

namespace mlabench::tasks::plain {

namespace {

using ojson = nlohmann::ordered_json;
using K = Value::Kind;

bool is_digits(const std::string& s) {
  const size_t start = !s.empty() && s[0] == '-' ? 1 : 0;
  if (s.size() == start || (s[start] == '0' && s.size() > start + 1)) return false;
  for (size_t i = start; i < s.size(); ++i)
    if (s[i] < '0' || s[i] > '9') return false;
  return s != "-0";
}

std::optional<Value> decode_items(const ojson& array, K kind) {
  if (!array.is_array()) return std::nullopt;
  Value v{.kind = kind};
  for (const ojson& x : array) {
    std::optional<Value> item = decode(x);
    if (!item) return std::nullopt;
    v.items.push_back(std::move(*item));
  }
  return v;
}

bool numeric(const Value& v) { return v.kind == K::BOOL || v.kind == K::INT || v.kind == K::FLOAT; }

// Both directions: a forged set or dict may repeat an element, which one direction alone would not notice.
bool same_elements(const std::vector<Value>& a, const std::vector<Value>& b, size_t stride) {
  const auto contained = [stride](const std::vector<Value>& x, const std::vector<Value>& y) {
    for (size_t i = 0; i < x.size(); i += stride) {
      bool found = false;
      for (size_t j = 0; j < y.size() && !found; j += stride) {
        found = python_equal(x[i], y[j]) && (stride == 1 || python_equal(x[i + 1], y[j + 1]));
      }
      if (!found) return false;
    }
    return true;
  };
  return a.size() == b.size() && contained(a, b) && contained(b, a);
}

void append_repr(const Value& v, std::string& out, size_t limit) {
  if (out.size() > limit) return;
  const auto sequence = [&](const char* open, const char* close, size_t stride) {
    out += open;
    for (size_t i = 0; i < v.items.size() && out.size() <= limit; i += stride) {
      if (i > 0) out += ", ";
      append_repr(v.items[i], out, limit);
      if (stride == 2) {
        out += ": ";
        append_repr(v.items[i + 1], out, limit);
      }
    }
    if (v.kind == K::TUPLE && v.items.size() == 1) out += ",";
    out += close;
  };
  switch (v.kind) {
    case K::NONE: out += "None"; break;
    case K::BOOL: out += v.number != 0.0 ? "True" : "False"; break;
    case K::INT: out += v.text; break;
    case K::FLOAT:
      if (std::isnan(v.number) || std::isinf(v.number)) {
        out += std::isnan(v.number) ? "nan" : v.number > 0 ? "inf" : "-inf";
      } else {
        const std::string shortest = fmt::format("{}", v.number);  // Python's repr, but "2" for 2.0
        out += shortest.find_first_of(".e") == std::string::npos ? shortest + ".0" : shortest;
      }
      break;
    case K::STR: out += ojson(unicode::sanitize(v.text)).dump(); break;
    case K::LIST: sequence("[", "]", 1); break;
    case K::TUPLE: sequence("(", ")", 1); break;
    case K::SET: v.items.empty() ? void(out += "set()") : sequence("{", "}", 1); break;
    case K::DICT: sequence("{", "}", 2); break;
    case K::OPAQUE: out += "<" + unicode::sanitize(v.text) + " object>"; break;
  }
}

}  // namespace

std::optional<Value> decode(const ojson& j) {
  switch (j.type()) {
    case ojson::value_t::null: return Value{};
    case ojson::value_t::boolean: return Value{.kind = K::BOOL, .number = j.get<bool>() ? 1.0 : 0.0};
    case ojson::value_t::number_integer: return Value{.kind = K::INT, .text = std::to_string(j.get<int64_t>())};
    case ojson::value_t::number_unsigned: return Value{.kind = K::INT, .text = std::to_string(j.get<uint64_t>())};
    case ojson::value_t::number_float: return Value{.kind = K::FLOAT, .number = j.get<double>()};
    case ojson::value_t::string: return Value{.kind = K::STR, .text = j.get<std::string>()};
    case ojson::value_t::array: return decode_items(j, K::LIST);
    case ojson::value_t::object: break;
    default: return std::nullopt;
  }
  if (j.size() != 1) return std::nullopt;
  const auto first = j.begin();  // named: references through a temporary iterator read as dangling to gcc 13
  const std::string& tag = first.key();
  const ojson& body = first.value();
  if (tag == "int" && body.is_string() && is_digits(body.get<std::string>()))
    return Value{.kind = K::INT, .text = body.get<std::string>()};
  if (tag == "float" && body.is_string()) {
    const std::string s = body.get<std::string>();
    if (s == "nan") return Value{.kind = K::FLOAT, .number = std::nan("")};
    if (s == "inf" || s == "-inf") return Value{.kind = K::FLOAT, .number = s == "inf" ? HUGE_VAL : -HUGE_VAL};
    return std::nullopt;
  }
  if (tag == "tuple") return decode_items(body, K::TUPLE);
  if (tag == "set") return decode_items(body, K::SET);
  if (tag == "dict") {
    if (!body.is_array()) return std::nullopt;
    Value v{.kind = K::DICT};
    for (const ojson& pair : body) {
      if (!pair.is_array() || pair.size() != 2) return std::nullopt;
      for (const ojson& x : pair) {
        std::optional<Value> item = decode(x);
        if (!item) return std::nullopt;
        v.items.push_back(std::move(*item));
      }
    }
    return v;
  }
  if (tag == "opaque" && body.is_string()) return Value{.kind = K::OPAQUE, .text = body.get<std::string>()};
  return std::nullopt;
}

std::optional<std::string> float_as_integer(double f) {
  if (!std::isfinite(f) || f != std::trunc(f)) return std::nullopt;
  if (std::fabs(f) < 9.2e18) return std::to_string(static_cast<int64_t>(f));
  int exponent = 0;
  const double mantissa = std::frexp(std::fabs(f), &exponent);  // |f| = mantissa * 2^exponent, mantissa in [0.5, 1)
  std::string digits = std::to_string(static_cast<uint64_t>(std::ldexp(mantissa, 53)));
  for (int k = 0; k < exponent - 53; ++k) {  // times two, in decimal
    int carry = 0;
    for (auto it = digits.rbegin(); it != digits.rend(); ++it) {
      const int v = (*it - '0') * 2 + carry;
      *it = static_cast<char>('0' + v % 10);
      carry = v / 10;
    }
    if (carry) digits.insert(digits.begin(), static_cast<char>('0' + carry));
  }
  return (f < 0 ? "-" : "") + digits;
}

bool python_equal(const Value& a, const Value& b) {
  if (numeric(a) && numeric(b)) {
    if (a.kind == K::FLOAT && b.kind == K::FLOAT) return a.number == b.number;
    const auto as_int = [](const Value& v) -> std::optional<std::string> {
      if (v.kind == K::BOOL) return v.number != 0.0 ? "1" : "0";
      if (v.kind == K::INT) return v.text;
      return float_as_integer(v.number);
    };
    const auto x = as_int(a), y = as_int(b);
    return x && y && *x == *y;
  }
  // set and frozenset are one kind here (Python: {1} == frozenset({1})).
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case K::NONE: return true;
    case K::STR: return a.text == b.text;
    case K::LIST:
    case K::TUPLE:
      if (a.items.size() != b.items.size()) return false;
      for (size_t i = 0; i < a.items.size(); ++i)
        if (!python_equal(a.items[i], b.items[i])) return false;
      return true;
    case K::SET: return same_elements(a.items, b.items, 1);
    case K::DICT: return same_elements(a.items, b.items, 2);
    default: return false;  // OPAQUE
  }
}

std::optional<double> as_double(const Value& v) {
  if (v.kind == K::BOOL || v.kind == K::FLOAT) return v.number;
  if (v.kind == K::INT) return std::strtod(v.text.c_str(), nullptr);  // correctly rounded, as Python's float(int)
  return std::nullopt;
}

std::string repr(const Value& v, size_t limit) {
  std::string out;
  append_repr(v, out, limit);
  if (out.size() > limit) out = out.substr(0, limit) + "...";
  return unicode::sanitize(out);
}

}  // namespace mlabench::tasks::plain
