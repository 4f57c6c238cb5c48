#include "tasks/template.h"

#include "core/check.h"

namespace mlabench::tasks {

const std::string* FieldScope::lookup(const std::string& name) const {
  if (table != nullptr && row != nullptr) {
    const int index = table->column(name);
    if (index >= 0 && static_cast<size_t>(index) < row->values.size() && row->values[static_cast<size_t>(index)]) {
      return &*row->values[static_cast<size_t>(index)];
    }
  }
  for (const Fields* fields : {computed, subtask}) {
    if (fields == nullptr) continue;
    for (const auto& [key, value] : *fields) {
      if (key == name) return &value;
    }
  }
  return nullptr;
}

std::vector<std::string> FieldScope::names() const {
  std::vector<std::string> out;
  if (table != nullptr && row != nullptr) {
    for (size_t i = 0; i < table->columns.size(); ++i) {
      if (i < row->values.size() && row->values[i]) out.push_back(table->columns[i]);
    }
  }
  for (const Fields* fields : {computed, subtask}) {
    if (fields == nullptr) continue;
    for (const auto& kv : *fields) out.push_back(kv.first);
  }
  return out;
}

namespace {

std::string_view trim_ascii(std::string_view s) {
  const auto begin = s.find_first_not_of(" \t");
  if (begin == std::string_view::npos) return {};
  return s.substr(begin, s.find_last_not_of(" \t") - begin + 1);
}

bool is_python_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

// Decodes the code point starting at s[i] (well-formed UTF-8 assumed; a stray byte counts as itself).
char32_t decode_at(std::string_view s, size_t i, size_t* length) {
  const auto b = static_cast<unsigned char>(s[i]);
  size_t n = b < 0x80 ? 1 : (b >> 5) == 0x6 ? 2 : (b >> 4) == 0xe ? 3 : (b >> 3) == 0x1e ? 4 : 1;
  if (i + n > s.size()) n = 1;
  char32_t c = n == 1 ? b : n == 2 ? (b & 0x1f) : n == 3 ? (b & 0x0f) : (b & 0x07);
  for (size_t k = 1; k < n; ++k) c = (c << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3f);
  *length = n;
  return c;
}

}  // namespace

std::string_view python_strip(std::string_view text) {
  size_t begin = 0;
  while (begin < text.size()) {
    size_t length = 0;
    if (!is_python_space(decode_at(text, begin, &length))) break;
    begin += length;
  }
  size_t end = text.size();
  while (end > begin) {
    size_t start = end - 1;  // back up to the lead byte of the last code point
    while (start > begin && (static_cast<unsigned char>(text[start]) & 0xc0) == 0x80) --start;
    size_t length = 0;
    if (!is_python_space(decode_at(text, start, &length)) || start + length != end) break;
    end = start;
  }
  return text.substr(begin, end - begin);
}

Template::Template(std::string text, const std::string& where) : source_(std::move(text)) {
  size_t pos = 0;
  while (pos < source_.size()) {
    const size_t open = source_.find("{{", pos);
    if (open == std::string::npos) {
      segments_.push_back({source_.substr(pos), false, false});
      break;
    }
    if (open > pos) segments_.push_back({source_.substr(pos, open - pos), false, false});
    const size_t close = source_.find("}}", open + 2);
    MLABENCH_CHECK(close != std::string::npos,
                   "{}: template {:?} opens '{{{{' at offset {} and never closes it. "
                   "HINT: write '{{{{field}}}}'",
                   where, source_, open);
    std::string_view inner(source_.data() + open + 2, close - open - 2);
    Segment segment{.text = {}, .field = true, .strip = false};
    const size_t bar = inner.find('|');
    const std::string_view name = trim_ascii(inner.substr(0, bar));
    MLABENCH_CHECK(!name.empty(),
                   "{}: template {:?} has an empty '{{{{}}}}' at offset {}. HINT: name a field of the "
                   "data or of a hook",
                   where, source_, open);
    segment.text = std::string(name);
    if (bar != std::string_view::npos) {
      const std::string_view filter = trim_ascii(inner.substr(bar + 1));
      MLABENCH_CHECK(filter == "strip",
                     "{}: template {:?} applies filter '{}' to '{}'; the only filter is 'strip'. "
                     "HINT: write '{{{{{}|strip}}}}' or no filter",
                     where, source_, filter, name, name);
      segment.strip = true;
    }
    segments_.push_back(std::move(segment));
    pos = close + 2;
  }
}

const std::string* Template::render_into(std::string& out, const FieldScope& scope) const {
  for (const auto& segment : segments_) {
    if (!segment.field) {
      out += segment.text;
      continue;
    }
    const std::string* value = scope.lookup(segment.text);
    if (value == nullptr) return &segment.text;
    if (segment.strip) {
      out += python_strip(*value);
    } else {
      out += *value;
    }
  }
  return nullptr;
}

}  // namespace mlabench::tasks
