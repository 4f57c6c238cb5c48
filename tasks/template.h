// Prompt templates of the task specs: literal text with `{{field}}` substitutions, where a field may pass
// through filters: `{{question|strip}}` is Python's `question.strip()` (lm-evaluation-harness's MMLU and
// C-Eval templates strip the question). Parsed once, rendered per document without allocation beyond the output.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "tasks/data_table.h"

namespace mlabench::tasks {

using Fields = std::vector<std::pair<std::string, std::string>>;

/// The names a template can see while rendering one document, looked up in this order: the data row, the
/// fields a doc hook computed from it, the subtask's fields (subject, subject_name, ...).
struct FieldScope {
  const DataTable* table = nullptr;
  const DataRow* row = nullptr;
  const Fields* computed = nullptr;
  const Fields* subtask = nullptr;

  const std::string* lookup(const std::string& name) const;
  std::vector<std::string> names() const;  ///< every name visible, for error messages
};

class Template {
 public:
  Template() = default;
  /// Parses `text`; throws Error naming `where` (the spec file and key) for an unclosed `{{`, an empty field
  /// name or an unknown filter.
  Template(std::string text, const std::string& where);

  /// Appends the rendering to `out`. Returns nullptr, or the name of the first field `scope` lacks (the
  /// caller reports it with the document's file and line).
  const std::string* render_into(std::string& out, const FieldScope& scope) const;
  const std::string& source() const { return source_; }
  bool empty() const { return source_.empty(); }

 private:
  struct Segment {
    std::string text;  ///< literal text, or the field name
    bool field = false;
    bool strip = false;  ///< `|strip`
  };
  std::string source_;
  std::vector<Segment> segments_;
};

/// \brief Python's `str.strip()` on UTF-8 text: removes leading and trailing Unicode whitespace (ASCII
/// whitespace, \x1c-\x1f, U+0085, U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029, U+202F, U+205F, U+3000).
std::string_view python_strip(std::string_view text);

}  // namespace mlabench::tasks
