// Named hooks: the code a task spec cannot express, each registered here under the name specs use. Three kinds:
//   readers        turn a data file into rows                        "reader": "csv_headerless"
//   subtask hooks  give each subject of a group its fields           "subtasks": {"hook": "subject_mapping"}
//   doc hooks      compute fields from a row                         "doc_hooks": ["gsm8k_gold_answer"]
// docs/tasks.md lists every hook with the fields it provides.
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "tasks/data_table.h"
#include "tasks/template.h"

namespace mlabench::tasks {

/// Reads one data file. `columns`: the spec's column names (headerless CSV) or required columns (others).
using ReaderHook = std::function<DataTable(const std::filesystem::path& file, const std::vector<std::string>& columns)>;
/// Fields of each subject, in the order of `subjects`; throws Error for a subject the dataset does not know.
using SubtaskHook = std::function<std::vector<Fields>(const std::filesystem::path& dataset_dir,
                                                      const std::vector<std::string>& subjects,
                                                      const std::filesystem::path& spec_file)>;
/// Fields computed from one row; throws Error naming table.where(row) when the row cannot give them.
using DocHook = std::function<Fields(const DataTable& table, const DataRow& row)>;

/// \brief The hook registered under `name`; throws Error naming `spec_file` and the registered names otherwise.
const ReaderHook& reader_hook(const std::string& name, const std::filesystem::path& spec_file);
const SubtaskHook& subtask_hook(const std::string& name, const std::filesystem::path& spec_file);
const DocHook& doc_hook(const std::string& name, const std::filesystem::path& spec_file);

}  // namespace mlabench::tasks
