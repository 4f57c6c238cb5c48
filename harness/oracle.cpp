#include "harness/oracle.h"

#include <algorithm>

#include <fstream>
#include <nlohmann/json.hpp>

#include "core/check.h"

namespace mlabench::harness {

void write_oracle_replay(const std::vector<tasks::Task>& tasks, OracleAnswer answer,
                         const std::filesystem::path& path) {
  std::ofstream out(path);
  MLABENCH_CHECK(out.good(), "cannot write {}. HINT: check the folder", path.string());
  for (const tasks::Task& t : tasks)
    for (const tasks::Subtask& s : t.subtasks)
      for (const tasks::TaskDoc& d : s.docs) {
        nlohmann::json j = {{"task", s.name}, {"doc_id", d.doc_id}};
        if (t.output_type == tasks::OutputType::MULTIPLE_CHOICE) {
          std::vector<double> lp(d.choices.size(), -1.0);
          lp.at(static_cast<size_t>(answer == OracleAnswer::GOLD ? d.gold : 0)) = 0.0;
          j["logprobs"] = lp;
        } else if (std::any_of(t.metrics.begin(), t.metrics.end(),
                               [](const tasks::MetricSpec& m) { return m.name == "exact_match"; })) {
          j["responses"] = {answer == OracleAnswer::GOLD
                                ? "The answer is " + d.target + ".\n#### " + d.target
                                : std::string("I do not know.")};
        } else {
          // Code and needle tasks: the target itself (HumanEval's canonical solution, the needle's answer), once
          // per sample.
          j["responses"] = std::vector<std::string>(static_cast<size_t>(t.generation.repeats),
                                                    answer == OracleAnswer::GOLD ? d.target : std::string());
        }
        out << j.dump() << '\n';
      }
  MLABENCH_CHECK(out.good(), "writing {} failed. HINT: the disk may be full", path.string());
}

}  // namespace mlabench::harness
