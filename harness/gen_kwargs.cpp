#include "harness/gen_kwargs.h"

#include <climits>
#include <cmath>
#include <sstream>

#include "core/check.h"

namespace mlabench::harness {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

GenerationOverrides parse_gen_kwargs(const std::string& text) {
  GenerationOverrides g;
  if (text.empty()) return g;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const size_t eq = item.find('=');
    MLABENCH_CHECK(eq != std::string::npos && eq > 0, "--gen-kwargs: \"{}\" is not key=value. HINT: e.g. "
                   "temperature=0.7,top_p=0.95,max_gen_toks=512,seed=1,until=Q:|\\n\\n",
                   item);
    const std::string key = item.substr(0, eq), value = item.substr(eq + 1);
    try {
      size_t used = 0;
      if (key == "temperature") {
        g.temperature = std::stod(value, &used);
      } else if (key == "top_p") {
        g.top_p = std::stod(value, &used);
      } else if (key == "max_gen_toks") {
        g.max_gen_toks = std::stoll(value, &used);
      } else if (key == "seed") {
        MLABENCH_CHECK(value.find('-') == std::string::npos, "--gen-kwargs: seed={} is negative; accepted range 0 .. "
                       "2^63 - 1", value);  // stoull would wrap -1 to 2^64 - 1
        g.seed = std::stoull(value, &used);
      } else if (key == "repeats") {
        g.repeats = std::stoll(value, &used);
      } else if (key == "until") {
        std::vector<std::string> until;
        std::string cur;
        for (size_t i = 0; i < value.size(); ++i) {
          if (value[i] == '|') {
            until.push_back(cur);
            cur.clear();
          } else if (value[i] == '\\' && i + 1 < value.size() && (value[i + 1] == 'n' || value[i + 1] == 't')) {
            cur += value[++i] == 'n' ? '\n' : '\t';
          } else {
            cur += value[i];
          }
        }
        until.push_back(cur);
        g.until = until;
        used = value.size();
      } else {
        MLABENCH_FAIL("--gen-kwargs: unknown key \"{}\". HINT: temperature, top_p, max_gen_toks, seed, repeats or "
                      "until", key);
      }
      MLABENCH_CHECK(used == value.size(), "--gen-kwargs: {}=\"{}\" is not a number", key, value);
    } catch (const std::logic_error&) {
      MLABENCH_FAIL("--gen-kwargs: {}=\"{}\" is not a number", key, value);
    }
  }
  // Ranges: a value outside one samples nothing sensible (temperature inf: uniform noise) or exhausts memory before
  // the first document (repeats 10^12 requests per document).
  MLABENCH_CHECK(!g.temperature || (std::isfinite(*g.temperature) && *g.temperature >= 0 && *g.temperature <= 100),
                 "--gen-kwargs: temperature={}; accepted range 0 .. 100 (0: greedy)", g.temperature.value_or(0));
  MLABENCH_CHECK(!g.top_p || (*g.top_p > 0 && *g.top_p <= 1), "--gen-kwargs: top_p={}; accepted range: greater "
                 "than 0, at most 1", g.top_p.value_or(0));
  MLABENCH_CHECK(!g.max_gen_toks || (*g.max_gen_toks > 0 && *g.max_gen_toks <= (int64_t{1} << 20)),
                 "--gen-kwargs: max_gen_toks={}; accepted range 1 .. 1048576", g.max_gen_toks.value_or(0));
  MLABENCH_CHECK(!g.seed || *g.seed <= static_cast<uint64_t>(INT64_MAX), "--gen-kwargs: seed={}; accepted range "
                 "0 .. 2^63 - 1", g.seed.value_or(0));
  MLABENCH_CHECK(!g.repeats || (*g.repeats > 0 && *g.repeats <= 10000), "--gen-kwargs: repeats={}; accepted range "
                 "1 .. 10000 (pass@k needs k <= repeats)", g.repeats.value_or(0));
  return g;
}

tasks::GenerationKwargs with_overrides(tasks::GenerationKwargs g, const GenerationOverrides& o) {
  if (o.temperature) g.temperature = *o.temperature;
  if (o.top_p) g.top_p = *o.top_p;
  if (o.max_gen_toks) g.max_gen_toks = *o.max_gen_toks;
  if (o.seed) g.seed = *o.seed;
  if (o.repeats) g.repeats = *o.repeats;
  if (o.until) g.until = *o.until;
  return g;
}

json gen_overrides_json(const GenerationOverrides& o) {
  json j = json::object();
  if (o.temperature) j["temperature"] = *o.temperature;
  if (o.top_p) j["top_p"] = *o.top_p;
  if (o.max_gen_toks) j["max_gen_toks"] = *o.max_gen_toks;
  if (o.seed) j["seed"] = *o.seed;
  if (o.repeats) j["repeats"] = *o.repeats;
  if (o.until) j["until"] = *o.until;
  return j;
}

}  // namespace mlabench::harness
