// What a report is made from: `mlabench run` folders (results.json and the first lines of each
// samples_<task>.jsonl), `mlabench bench` JSON files, and the paper's published numbers (reports/paper/). Inputs
// are read and checked here; the HTML, Markdown and CSV writers only lay them out.
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace mlabench::reports {

using json = nlohmann::ordered_json;

/// One `mlabench run`: its results.json and the first samples of each task.
struct RunInput {
  std::string label;                ///< the column it appears under (default: the model folder's name)
  std::filesystem::path path;       ///< results.json
  json results;                     ///< the results.json document
  std::map<std::string, std::vector<json>> samples;  ///< task -> its first samples lines, file order
  std::map<std::string, int64_t> samples_total;      ///< task -> lines in its samples file (-1: no file)
};

/// One `mlabench bench` JSON.
struct BenchInput {
  std::string label;
  std::filesystem::path path;
  json bench;
};

/// One `mlabench ablate` document (ablation.json): a shape under several attention mechanisms, with the paper's
/// KV-cache tables.
struct AblationInput {
  std::filesystem::path path;
  json ablation;
};

/// One number the paper publishes for a model on a benchmark.
struct PaperNumber {
  std::string benchmark;  ///< "MMLU"
  std::string model;      ///< "DeepSeek-V2-Lite"
  double value = 0;       ///< as printed (percent for accuracies, elements for KV cache)
  std::string table;      ///< "Table 6"
  int page = 0;           ///< the PDF's printed page number
};

/// A benchmark of the paper and the mlabench task and metric that measure it.
struct PaperBenchmark {
  std::string name;       ///< "GSM8K"
  std::string metric;     ///< as the paper names it: "EM"
  int shots = 0;
  std::string task;       ///< "gsm8k_cot"
  std::string value_key;  ///< results.json key: "exact_match,strict-match"
  std::string note;       ///< how our protocol relates to the paper's, shown beside the numbers
};

struct PaperModel {
  std::string name;                ///< as the paper's tables name it
  std::string kind;                ///< "base", "chat" or "ablation"
  std::string attention;           ///< "MLA", "MHA", "GQA", "MQA"
  std::vector<std::string> match;  ///< model folder names (hub repository names), lower case
};

struct PaperNumbers {
  json source;  ///< title, arXiv id, repository, commit, file
  std::vector<PaperBenchmark> benchmarks;
  std::vector<PaperModel> models;
  std::vector<PaperNumber> numbers;
  json tables;    ///< "Table 2" -> {page, caption}
  json figure4;   ///< the NIAH heatmap read off Figure 4: x_labels, y_labels, values, page, note
};

struct ReportInputs {
  std::vector<RunInput> runs;
  std::vector<BenchInput> benches;
  std::vector<AblationInput> ablations;
  std::vector<std::string> labels;  ///< every distinct label, in the order the inputs were given
  PaperNumbers paper;
  std::vector<json> comparisons;    ///< `mlabench compare --out` documents (report --compare; compare_section.h)
};

struct LoadOptions {
  int samples_per_task = 5;                 ///< first samples kept per task for the sample browser
  std::filesystem::path paper_file;         ///< default: reports/paper/deepseek_v2.json of the source tree
  std::vector<std::filesystem::path> compare_files;  ///< report --compare: `mlabench compare --out` documents
};

/// \brief Reads each input: "PATH" or "LABEL=PATH", where PATH is a run folder, its results.json, or a bench
/// JSON. A run and a bench JSON with the same label describe one model (one column side by side). Default
/// labels are the model folder's name in lower case, made unique with the precision, then "#2", "#3".
/// Throws Error naming the input and what it expected.
ReportInputs load_report_inputs(const std::vector<std::string>& inputs, const LoadOptions& options = {});

/// \brief Reads and checks a paper-numbers file (reports/paper/deepseek_v2.json's schema).
PaperNumbers load_paper_numbers(const std::filesystem::path& file);

/// \brief The paper model a run is, by its model folder's name (`PaperModel::match`), or by `name` when given
/// (an exact paper model name; unknown names throw with the list). nullptr when nothing matches.
const PaperModel* match_paper_model(const PaperNumbers& paper, const RunInput& run, const std::string& name = "");

/// \brief The published value of `benchmark` for `model`, if the paper gives one.
const PaperNumber* find_paper_number(const PaperNumbers& paper, const std::string& benchmark,
                                     const std::string& model);

// Reading results.json: small helpers shared by the writers.

/// A metric of one results.json section ("acc,none" and its "acc_stderr,none").
struct MetricValue {
  std::string task;       ///< the section's name (task, group or subtask)
  std::string metric;     ///< "acc", "acc_macro", "pass@1"
  std::string filter;     ///< "none", "strict-match"
  double value = 0;
  std::optional<double> stderr_;
  int64_t n = 0;          ///< documents behind it (0: unknown)
};

/// \brief The metrics of one estimate object as the evaluator writes them ({"acc,none": v, "acc_stderr,none":
/// se, ...}: a section of results/groups, or one value of a breakdown), in file order, each with `name` and `n`.
std::vector<MetricValue> estimate_metrics(const json& estimate, const std::string& name, int64_t n);

/// \brief The metrics of section `name` (a task, group or subtask) of a results.json, in file order.
std::vector<MetricValue> section_metrics(const json& results, const std::string& name);

/// One value of a task's breakdown (LiveCodeBench's difficulty "easy", NIAH's cell "1000@50").
struct BreakdownValue {
  std::string field;                 ///< "difficulty", "cell"
  std::string value;                 ///< "easy", "1000@50"
  std::vector<MetricValue> metrics;  ///< named by the value, with its document count
};

/// \brief A task's breakdowns from results.json "breakdowns", field by field, in file order.
std::vector<BreakdownValue> breakdown_values(const json& results, const std::string& task);

/// \brief A number of a bench JSON row: `row[key]`, or `row[key][percentile]` ("ttft_ms", "p99"); NaN when absent.
double bench_number(const json& row, const char* key, const char* percentile = nullptr);
/// \brief The schema a bench JSON was written with: its "schema_version", 1 when absent. Schema 1 took TTFT from a
/// second pass over prompts already in the prefix cache; from 2 on every measured prompt is uncached.
int bench_schema(const json& bench);
/// \brief True when the bench inputs' rows have more than one prompt length: rows are then told apart by batch
/// and prompt, not by batch alone.
bool bench_prompts_vary(const ReportInputs& in);
/// \brief "batch 16", or "batch 16, prompt 512" with `with_prompt`.
std::string bench_row_name(const json& row, bool with_prompt);

/// \brief The top-level tasks of a results.json, in run order.
std::vector<std::string> run_tasks(const json& results);

/// \brief Documents scored under a task, group or subtask (n-samples "effective", summed over members).
int64_t documents_under(const json& results, const std::string& name);

/// \brief The 95% normal interval value +- 1.96 stderr, clipped to [0, 1] for metrics that are proportions.
std::pair<double, double> interval95(const MetricValue& m);

/// \brief The metric a task is summarised by: the paper's (when the paper has the benchmark), else the first.
std::optional<MetricValue> headline_metric(const ReportInputs& in, const RunInput& run, const std::string& task);

/// One row of the paper comparison: a run's number for a benchmark of the paper, and the paper's for the model
/// the run is (when one matches).
struct PaperComparison {
  std::string label;                 ///< the run
  const PaperBenchmark* benchmark;   ///< which benchmark, and through which task
  MetricValue ours;
  const PaperModel* model = nullptr;     ///< the paper model compared with (nullptr: none matched)
  const PaperNumber* number = nullptr;   ///< its published value (nullptr: the paper has none)
};

/// \brief Every (run, benchmark) pair where the run has the benchmark's task; `paper_model` forces the model
/// for every run (else each run is matched by its model folder's name).
std::vector<PaperComparison> paper_comparisons(const ReportInputs& in, const std::string& paper_model);

/// \brief The bench input and the run with `label` (nullptr where there is none).
const BenchInput* bench_for(const ReportInputs& in, const std::string& label);
const RunInput* run_for(const ReportInputs& in, const std::string& label);

/// \brief KV-cache bytes per token of a label's model: from its bench JSON, else from its run's device
/// information (the GPU engine records it). NaN when neither says.
double kv_bytes_per_token(const ReportInputs& in, const std::string& label);

}  // namespace mlabench::reports
