// A task's rows as read from a data file (CSV or JSONL), with the line each row starts on so malformed data
// can be reported by file and line. Values are text: templates substitute them verbatim.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace mlabench::tasks {

struct DataRow {
  int64_t line = 0;                                ///< 1-based line of the file the row starts on
  std::vector<std::optional<std::string>> values;  ///< by column; nullopt where a JSONL object lacks the key
};

struct DataTable {
  std::filesystem::path file;
  std::vector<std::string> columns;
  std::vector<DataRow> rows;

  /// Column index of `name`, or -1.
  int column(const std::string& name) const;
  /// "file:line" for messages.
  std::string where(const DataRow& row) const;
};

/// \brief RFC 4180 CSV as Python's csv module reads it (quoted fields may hold delimiters, doubled quotes and
/// line breaks, kept verbatim; records end at \n, \r\n or \r; blank lines are skipped; a UTF-8 byte order mark
/// is dropped). `columns` empty: the first record is the header. Otherwise the file has no header and every
/// record must have exactly these columns. Throws Error naming file and line for a wrong field count or an
/// unterminated quote.
DataTable read_csv(const std::filesystem::path& file, const std::vector<std::string>& columns);

/// \brief JSON Lines: one object per non-blank line; columns are the union of keys in order of appearance.
/// Strings are kept as is, numbers and booleans as their JSON text, null as absent. Throws Error naming file
/// and line for a line that is not a JSON object.
DataTable read_jsonl(const std::filesystem::path& file);

/// \brief The whole file as bytes; throws Error naming it when it cannot be read.
std::string read_text_file(const std::filesystem::path& file, const std::string& what);

}  // namespace mlabench::tasks
