#include "tasks/data_table.h"

#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "core/input_file.h"

namespace mlabench::tasks {

int DataTable::column(const std::string& name) const {
  for (size_t i = 0; i < columns.size(); ++i) {
    if (columns[i] == name) return static_cast<int>(i);
  }
  return -1;
}

std::string DataTable::where(const DataRow& row) const { return fmt::format("{}:{}", file.string(), row.line); }

std::string read_text_file(const std::filesystem::path& file, const std::string& what) {
  refuse_non_regular_file(file, what);
  std::ifstream in(file, std::ios::binary);
  MLABENCH_CHECK(in.good(),
                 "cannot open {} {}. HINT: fetch the dataset again (mlabench fetch NAME) or check "
                 "the path",
                 what, file.string());
  std::ostringstream buffer;
  buffer << in.rdbuf();
  MLABENCH_CHECK(!in.bad(), "reading {} {} failed. HINT: check the disk and the file's permissions", what,
                 file.string());
  return std::move(buffer).str();
}

namespace {

std::string join(const std::vector<std::string>& names) { return fmt::format("{}", fmt::join(names, ",")); }

// One pass over the bytes: fields split at commas, records at line ends, both ignored inside quotes.
std::vector<std::pair<int64_t, std::vector<std::string>>> parse_csv_records(const std::filesystem::path& file,
                                                                            std::string_view text) {
  if (text.starts_with("\xEF\xBB\xBF")) text.remove_prefix(3);
  std::vector<std::pair<int64_t, std::vector<std::string>>> records;
  std::vector<std::string> fields;
  std::string field;
  int64_t line = 1;
  int64_t record_line = 1;
  bool record_started = false;
  size_t i = 0;
  const size_t n = text.size();
  auto end_record = [&] {
    fields.push_back(std::move(field));
    field.clear();
    records.emplace_back(record_line, std::move(fields));
    fields.clear();
    record_started = false;
  };
  while (i < n) {
    const char c = text[i];
    if (!record_started) {
      record_line = line;
      if (c == '\n' || c == '\r') {  // blank line
        i += (c == '\r' && i + 1 < n && text[i + 1] == '\n') ? 2 : 1;
        ++line;
        continue;
      }
      record_started = true;
    }
    if (c == '"' && field.empty() && (i == 0 || text[i - 1] == ',' || text[i - 1] == '\n' || text[i - 1] == '\r')) {
      const int64_t quote_line = line;
      ++i;
      while (true) {
        MLABENCH_CHECK(i < n,
                       "{}:{}: a quoted CSV field opened here is never closed. HINT: the file is truncated "
                       "or has an unbalanced '\"'; fetch the dataset again",
                       file.string(), quote_line);
        const char q = text[i];
        if (q == '"') {
          if (i + 1 < n && text[i + 1] == '"') {
            field.push_back('"');
            i += 2;
            continue;
          }
          ++i;
          break;
        }
        if (q == '\n') ++line;
        if (q == '\r' && !(i + 1 < n && text[i + 1] == '\n')) ++line;
        field.push_back(q);
        ++i;
      }
      MLABENCH_CHECK(i >= n || text[i] == ',' || text[i] == '\n' || text[i] == '\r',
                     "{}:{}: text after the closing quote of a CSV field (expected ',' or a line end). HINT: a '\"' "
                     "inside a quoted field must be doubled; fix or fetch the file again",
                     file.string(), line);
      continue;
    }
    if (c == ',') {
      fields.push_back(std::move(field));
      field.clear();
      ++i;
    } else if (c == '\n' || c == '\r') {
      i += (c == '\r' && i + 1 < n && text[i + 1] == '\n') ? 2 : 1;
      end_record();
      ++line;
    } else {
      field.push_back(c);
      ++i;
    }
  }
  if (record_started) end_record();
  return records;
}

}  // namespace

DataTable read_csv(const std::filesystem::path& file, const std::vector<std::string>& columns) {
  const std::string text = read_text_file(file, "CSV file");
  auto records = parse_csv_records(file, text);
  DataTable table;
  table.file = file;
  size_t first = 0;
  if (columns.empty()) {
    MLABENCH_CHECK(!records.empty(), "{}: empty CSV file, expected a header row. HINT: fetch the dataset again",
                   file.string());
    table.columns = std::move(records[0].second);
    first = 1;
  } else {
    table.columns = columns;
  }
  table.rows.reserve(records.size() - first);
  for (size_t r = first; r < records.size(); ++r) {
    auto& [line, fields] = records[r];
    MLABENCH_CHECK(fields.size() == table.columns.size(),
                   "{}:{}: {} CSV fields, expected {} ({}). HINT: the row is malformed (an unquoted ',' or a lost "
                   "quote); fix it or fetch the dataset again",
                   file.string(), line, fields.size(), table.columns.size(), join(table.columns));
    DataRow row;
    row.line = line;
    row.values.reserve(fields.size());
    for (auto& f : fields) row.values.emplace_back(std::move(f));
    table.rows.push_back(std::move(row));
  }
  return table;
}

DataTable read_jsonl(const std::filesystem::path& file) {
  const std::string text = read_text_file(file, "JSONL file");
  DataTable table;
  table.file = file;
  int64_t line = 0;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    ++line;
    const std::string_view content(text.data() + start, end - start);
    start = end + 1;
    if (content.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    nlohmann::ordered_json object;  // keeps the file's key order for the columns
    try {
      object = nlohmann::ordered_json::parse(content);
    } catch (const nlohmann::ordered_json::exception& e) {  // parse_error, or out_of_range for 1e999
      MLABENCH_FAIL(
          "{}:{}: not valid JSON ({}). HINT: each line must be one JSON object; the file is damaged or "
          "truncated, fetch the dataset again",
          file.string(), line, e.what());
    }
    MLABENCH_CHECK(object.is_object(),
                   "{}:{}: a JSON {} where a JSON object was expected. HINT: each line must be "
                   "one JSON object; fetch the dataset again",
                   file.string(), line, object.type_name());
    DataRow row;
    row.line = line;
    row.values.resize(table.columns.size());
    for (const auto& [key, value] : object.items()) {
      int index = table.column(key);
      if (index < 0) {
        table.columns.push_back(key);
        row.values.resize(table.columns.size());
        index = static_cast<int>(table.columns.size()) - 1;
      }
      if (value.is_string()) {
        row.values[static_cast<size_t>(index)] = value.get<std::string>();
      } else if (!value.is_null()) {
        row.values[static_cast<size_t>(index)] = value.dump();
      }
    }
    table.rows.push_back(std::move(row));
  }
  return table;
}

}  // namespace mlabench::tasks
