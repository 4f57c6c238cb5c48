#include "tasks/niah/niah.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>

#include "core/check.h"
#include "core/input_file.h"
#include "tasks/spec.h"
#include "tasks/template.h"

namespace mlabench::tasks::niah {
namespace {

using Json = nlohmann::ordered_json;

// gkamradt/LLMTest_NeedleInAHaystack's defaults (run.py, providers/openai.py).
constexpr const char* DEFAULT_NEEDLE =
    "\nThe best thing to do in San Francisco is eat a sandwich and sit in Dolores Park on a sunny day.\n";
constexpr const char* DEFAULT_QUESTION = "What is the best thing to do in San Francisco?";
constexpr const char* DEFAULT_ANSWER = "eat a sandwich and sit in Dolores Park on a sunny day";
constexpr const char* DEFAULT_SYSTEM_PROMPT =
    "You are a helpful AI bot that answers questions for a user. Keep your response short and direct";
// The OpenAI provider sends the haystack and the question as two user messages; one user message joined by a
// blank line is what a single-turn backend can carry.
constexpr const char* DEFAULT_CHAT_PROMPT =
    "{{haystack}}\n\n{{question}} Don't give information outside the document or repeat your findings";
// A base model needs a completion cue: the chat wording, then "Answer:" for the model to continue.
constexpr const char* DEFAULT_BASE_PROMPT =
    "{{haystack}}\n\n{{question}} Don't give information outside the document or repeat your findings.\nAnswer:";
constexpr const char* HAYSTACK_FIELD = "{{haystack}}";
// {min, max, count} of the default grid: DeepSeek-V2's Figure 4 (12 lengths from 1K to 128K, 12 depths).
constexpr std::array<int64_t, 3> DEFAULT_LENGTHS = {1000, 128000, 12};
constexpr std::array<int64_t, 3> DEFAULT_DEPTHS = {0, 100, 12};

struct Config {
  std::string haystack_dir = "paul_graham_essays";
  std::string needle = DEFAULT_NEEDLE;
  std::string question = DEFAULT_QUESTION;
  std::string answer = DEFAULT_ANSWER;
  std::vector<int64_t> context_lengths;
  std::vector<int64_t> depth_percents;
  std::string prompt_style = "base";
  std::string base_prompt = DEFAULT_BASE_PROMPT;
  std::string chat_prompt = DEFAULT_CHAT_PROMPT;
  std::string system_prompt = DEFAULT_SYSTEM_PROMPT;
  std::string on_overflow = "skip";
  int64_t reserve_tokens = -1;  ///< -1: the run's generation budget (GeneratorContext::max_gen_toks)
};

// numpy.round(numpy.linspace(lo, hi, count)): element i is i * step + lo with the last pinned to hi, rounded
// half to even (the default floating-point rounding mode, as numpy.round).
std::vector<int64_t> rounded_linspace(int64_t min, int64_t max, int64_t count) {
  const auto lo = static_cast<double>(min), hi = static_cast<double>(max);
  std::vector<int64_t> out;
  if (count == 1) return {static_cast<int64_t>(std::nearbyint(lo))};
  const double step = (hi - lo) / static_cast<double>(count - 1);
  for (int64_t i = 0; i < count; ++i) {
    const double v = i == count - 1 ? hi : static_cast<double>(i) * step + lo;
    out.push_back(static_cast<int64_t>(std::nearbyint(v)));
  }
  return out;
}

class ConfigReader {
 public:
  explicit ConfigReader(const GeneratorContext& context) : where_(context.spec_file.string()) {}

  std::string text(const Json& value, const std::string& key) const {
    MLABENCH_CHECK(value.is_string(),
                   "niah generator ({}): \"{}\" must be a string, got {}. HINT: write it as a JSON "
                   "string in the spec's \"generator\" object or with --set.",
                   where_, key, value.dump());
    return value.get<std::string>();
  }

  std::string choice(const Json& value, const std::string& key, const std::vector<std::string>& allowed) const {
    std::string s = text(value, key);
    MLABENCH_CHECK(std::find(allowed.begin(), allowed.end(), s) != allowed.end(),
                   "niah generator ({}): \"{}\" is \"{}\", not one of {}. HINT: use one of those values.", where_, key,
                   s, fmt::join(allowed, ", "));
    return s;
  }

  int64_t integer(const Json& value, const std::string& key, int64_t min, int64_t max) const {
    MLABENCH_CHECK(value.is_number_integer(),
                   "niah generator ({}): \"{}\" must be an integer, got {}. HINT: write a whole number.", where_, key,
                   value.dump());
    const auto v = value.get<int64_t>();
    MLABENCH_CHECK(v >= min && v <= max,
                   "niah generator ({}): \"{}\" is {}, outside [{}, {}]. HINT: use a value in "
                   "that range.",
                   where_, key, v, min, max);
    return v;
  }

  // A list of integers, or {"min", "max", "count"} meaning round(linspace(min, max, count)); sorted ascending
  // and free of duplicates, so cells are distinct.
  std::vector<int64_t> grid(const Json& value, const std::string& key, int64_t lo, int64_t hi,
                            const std::array<int64_t, 3>& defaults) const {
    std::vector<int64_t> out;
    if (value.is_array()) {
      for (const auto& v : value) out.push_back(integer(v, key + "[]", lo, hi));
    } else {
      MLABENCH_CHECK(value.is_object(),
                     "niah generator ({}): \"{}\" must be a list of integers or an object "
                     "{{\"min\", \"max\", \"count\"}}, got {}. HINT: e.g. [1000, 4096] or {{\"min\": {}, \"max\": {}, "
                     "\"count\": {}}}.",
                     where_, key, value.dump(), defaults[0], defaults[1], defaults[2]);
      std::array<int64_t, 3> range = defaults;
      const char* names[3] = {"min", "max", "count"};
      for (const auto& [k, v] : value.items()) {
        const auto* at = std::find(std::begin(names), std::end(names), k);
        MLABENCH_CHECK(at != std::end(names),
                       "niah generator ({}): unknown key \"{}.{}\". HINT: the keys are min, "
                       "max and count.",
                       where_, key, k);
        const auto i = static_cast<size_t>(at - std::begin(names));
        range[i] = i == 2 ? integer(v, key + ".count", 1, 10000) : integer(v, key + "." + k, lo, hi);
      }
      MLABENCH_CHECK(range[0] <= range[1], "niah generator ({}): \"{}\" has min {} > max {}. HINT: swap them.", where_,
                     key, range[0], range[1]);
      out = rounded_linspace(range[0], range[1], range[2]);
    }
    MLABENCH_CHECK(!out.empty(), "niah generator ({}): \"{}\" is empty. HINT: give at least one value.", where_, key);
    MLABENCH_CHECK(std::is_sorted(out.begin(), out.end()) && std::adjacent_find(out.begin(), out.end()) == out.end(),
                   "niah generator ({}): \"{}\" must be strictly increasing, got {}. HINT: sort the list and drop "
                   "repeats (a small range with a large count rounds to repeated values).",
                   where_, key, fmt::join(out, ", "));
    return out;
  }

  const std::string& where() const { return where_; }

 private:
  std::string where_;
};

Config parse_config(const GeneratorContext& context) {
  const ConfigReader read(context);
  Config c;
  c.context_lengths = rounded_linspace(DEFAULT_LENGTHS[0], DEFAULT_LENGTHS[1], DEFAULT_LENGTHS[2]);
  c.depth_percents = rounded_linspace(DEFAULT_DEPTHS[0], DEFAULT_DEPTHS[1], DEFAULT_DEPTHS[2]);
  const Json& json = context.config;
  MLABENCH_CHECK(json.is_object() || json.is_null(),
                 "niah generator ({}): \"generator\" must be an object, got {}. "
                 "HINT: write {{\"hook\": \"niah\", ...}}.",
                 read.where(), json.dump());
  if (json.is_null()) return c;
  const std::map<std::string, std::function<void(const Json&, const std::string&)>> setters = {
      {"hook", [](const Json&, const std::string&) {}},  // the registry's, already resolved
      {"haystack_dir", [&](const Json& v, const std::string& k) { c.haystack_dir = read.text(v, k); }},
      {"needle", [&](const Json& v, const std::string& k) { c.needle = read.text(v, k); }},
      {"question", [&](const Json& v, const std::string& k) { c.question = read.text(v, k); }},
      {"answer", [&](const Json& v, const std::string& k) { c.answer = read.text(v, k); }},
      {"context_lengths",
       [&](const Json& v, const std::string& k) {
         c.context_lengths = read.grid(v, k, 1, 100'000'000, DEFAULT_LENGTHS);
       }},
      {"depth_percents",
       [&](const Json& v, const std::string& k) { c.depth_percents = read.grid(v, k, 0, 100, DEFAULT_DEPTHS); }},
      {"prompt_style",
       [&](const Json& v, const std::string& k) {
         c.prompt_style = read.choice(v, k, {"base", "chat"});
       }},
      {"base_prompt", [&](const Json& v, const std::string& k) { c.base_prompt = read.text(v, k); }},
      {"chat_prompt", [&](const Json& v, const std::string& k) { c.chat_prompt = read.text(v, k); }},
      {"system_prompt", [&](const Json& v, const std::string& k) { c.system_prompt = read.text(v, k); }},
      {"on_overflow",
       [&](const Json& v, const std::string& k) {
         c.on_overflow = read.choice(v, k, {"skip", "error"});
       }},
      {"reserve_tokens",
       [&](const Json& v, const std::string& k) { c.reserve_tokens = read.integer(v, k, 0, 1'000'000); }},
  };
  for (const auto& [key, value] : json.items()) {
    const auto setter = setters.find(key);
    if (setter == setters.end()) {
      std::vector<std::string> known;
      for (const auto& entry : setters) known.push_back(entry.first);
      MLABENCH_FAIL(
          "niah generator ({}): unknown key \"{}\" in \"generator\". HINT: did you mean {}? docs/tasks.md "
          "\"niah\" lists the keys.",
          read.where(), key, closest_names(key, known));
    }
    setter->second(value, key);
  }
  MLABENCH_CHECK(!needle_words(c.answer).empty(),
                 "niah generator ({}): \"answer\" (\"{}\") has no words to look for in "
                 "responses. HINT: set it to the phrase of the needle the model must repeat.",
                 read.where(), c.answer);
  MLABENCH_CHECK(!c.needle.empty(), "niah generator ({}): \"needle\" is empty. HINT: set the sentence to hide.",
                 read.where());
  return c;
}

// The prompt template split at its one {{haystack}}: the text before and after it depends only on the question,
// so it is rendered once and the haystack appended between.
struct PromptFrame {
  std::string before, after;
};

PromptFrame render_frame(const std::string& source, const std::string& key, const std::string& question,
                         const std::string& where) {
  const size_t at = source.find(HAYSTACK_FIELD);
  MLABENCH_CHECK(at != std::string::npos && source.find(HAYSTACK_FIELD, at + 1) == std::string::npos,
                 "niah generator ({}): \"{}\" must contain {} exactly once, got \"{}\". HINT: e.g. \"{}\".", where, key,
                 HAYSTACK_FIELD, source, key == "chat_prompt" ? DEFAULT_CHAT_PROMPT : DEFAULT_BASE_PROMPT);
  const Fields fields = {{"question", question}};
  const FieldScope scope{.computed = &fields};
  PromptFrame frame;
  for (auto [part, out] : {std::pair{source.substr(0, at), &frame.before},
                           std::pair{source.substr(at + std::string(HAYSTACK_FIELD).size()), &frame.after}}) {
    const Template t(part, where + " \"generator\"." + key);
    const std::string* missing = t.render_into(*out, scope);
    MLABENCH_CHECK(missing == nullptr,
                   "niah generator ({}): \"{}\" uses {{{{{}}}}}, which it cannot see. HINT: the "
                   "fields are haystack (once) and question.",
                   where, key, missing ? *missing : "");
  }
  return frame;
}

// The haystack: essays in file-name order, concatenated without separators (as gkamradt's read_context_files
// appends f.read()), repeated as often as needed.
std::string read_essays(const std::filesystem::path& dir) {
  MLABENCH_CHECK(std::filesystem::is_directory(dir),
                 "niah generator: haystack folder {} does not exist. HINT: "
                 "fetch the niah_haystack dataset, or point \"haystack_dir\" at a folder of .txt files.",
                 dir.string());
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.is_regular_file() && e.path().extension() == ".txt") files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  std::string text;
  for (const auto& f : files) {
    refuse_non_regular_file(f, "niah haystack essay");
    std::ifstream in(f, std::ios::binary);
    MLABENCH_CHECK(in.good(), "niah generator: cannot read {}. HINT: check the file's permissions.", f.string());
    std::ostringstream s;
    s << in.rdbuf();
    text += s.str();
  }
  MLABENCH_CHECK(!text.empty(),
                 "niah generator: no text in {} ({} .txt files). HINT: the haystack is the .txt "
                 "files of that folder; fetch the dataset or choose another \"haystack_dir\".",
                 dir.string(), files.size());
  return text;
}

// Haystack tokens and, for each token count i, the byte length of the text they decode to (offsets[i]), so a
// cut at i tokens is text[0, offsets[i]). The decoder holds back an incomplete UTF-8 character, so a cut
// never splits one.
struct Haystack {
  std::string text;
  std::vector<size_t> offsets;
  int64_t tokens() const { return static_cast<int64_t>(offsets.size()) - 1; }
};

Haystack tokenize_haystack(const Tokenizer& tokenizer, const std::string& essays, int64_t needed_tokens) {
  // Tokens near the end of a tokenized prefix can merge differently once more text follows; dropping this many
  // keeps the haystack the same whatever prefix was tokenized.
  constexpr int64_t UNSTABLE_TAIL = 16;
  size_t bytes = static_cast<size_t>(needed_tokens) * 6 + 4096;  // English BPE runs at ~4 bytes per token
  std::vector<int32_t> ids;
  while (true) {
    std::string source;
    source.reserve(bytes);
    while (source.size() < bytes) source.append(essays, 0, std::min(essays.size(), bytes - source.size()));
    ids = tokenizer.encode(source, false);
    if (static_cast<int64_t>(ids.size()) >= needed_tokens + UNSTABLE_TAIL) break;
    bytes *= 2;
  }
  ids.resize(ids.size() - UNSTABLE_TAIL);
  Haystack h;
  h.offsets.reserve(ids.size() + 1);
  h.offsets.push_back(0);
  StreamDecoder decoder(tokenizer, false);
  for (int32_t id : ids) {
    h.text += decoder.step(id);
    h.offsets.push_back(h.text.size());
  }
  return h;
}

// True when a sentence ends just before text[at]: a '.' followed by whitespace, or, where the essays lost
// their paragraph breaks ("accelerating.We wouldn't"), a '.' between a lower-case and an upper-case letter.
bool sentence_ends_before(const std::string& text, size_t at, size_t end) {
  if (at == 0 || at >= end || text[at - 1] != '.') return false;
  const auto next = static_cast<unsigned char>(text[at]);
  if (next == ' ' || next == '\n' || next == '\t' || next == '\r') return true;
  return at >= 2 && std::islower(static_cast<unsigned char>(text[at - 2])) && std::isupper(next);
}

// Where the needle goes in a haystack cut to `end` bytes: the byte of token int(tokens * depth / 100), moved
// back to the previous sentence end (gkamradt walks back to a '.' token); the start when there is none; the
// end at depth 100.
size_t needle_position(const Haystack& h, int64_t tokens, int64_t depth) {
  const size_t end = h.offsets[static_cast<size_t>(tokens)];
  if (depth == 100) return end;
  size_t at = h.offsets[static_cast<size_t>(tokens * depth / 100)];
  while (at > 0 && !sentence_ends_before(h.text, at, end)) --at;
  return at;
}

struct Cell {
  int64_t index = 0;
  int64_t length = 0;
  int64_t depth = 0;
};

struct BuiltPrompt {
  std::string context;
  int64_t haystack_tokens = 0;
  int64_t prompt_tokens = 0;
  size_t needle_offset = 0;
  double needle_depth = 0;
};

class PromptBuilder {
 public:
  PromptBuilder(const GeneratorContext& context, const Config& config, PromptFrame frame, Haystack haystack)
      : context_(context), config_(config), frame_(std::move(frame)), haystack_(std::move(haystack)) {
    system_prompt_ = config.prompt_style == "chat" ? config.system_prompt : "";
  }

  const std::string& system_prompt() const { return system_prompt_; }

  int64_t count(const std::string& prompt) const {
    const auto ids = context_.encode_prompt ? context_.encode_prompt(prompt, system_prompt_)
                                            : context_.tokenizer->encode(prompt, true);
    return static_cast<int64_t>(ids.size());
  }

  BuiltPrompt build(int64_t tokens, int64_t depth) const {
    BuiltPrompt p;
    const size_t end = haystack_.offsets[static_cast<size_t>(tokens)];
    const size_t at = needle_position(haystack_, tokens, depth);
    p.context.reserve(frame_.before.size() + end + config_.needle.size() + frame_.after.size());
    p.context.append(frame_.before).append(haystack_.text, 0, at).append(config_.needle);
    p.context.append(haystack_.text, at, end - at).append(frame_.after);
    p.haystack_tokens = tokens;
    p.needle_offset = frame_.before.size() + at;
    const auto before = std::upper_bound(haystack_.offsets.begin(), haystack_.offsets.begin() + tokens + 1, at);
    const auto tokens_before = std::distance(haystack_.offsets.begin(), before) - 1;
    p.needle_depth =
        tokens == 0 ? 0.0
                    : std::round(10000.0 * static_cast<double>(tokens_before) / static_cast<double>(tokens)) / 100.0;
    p.prompt_tokens = count(p.context);
    return p;
  }

  // The prompt of exactly `length` tokens. Tokens merge across the haystack's edges and the needle, so counts
  // do not add up: measure, correct the haystack cut by the difference, and repeat; then try the cuts around
  // the closest one. `guess` is a first haystack cut (the last cell's of this length is usually exact).
  BuiltPrompt exact(const Cell& cell, int64_t guess) const {
    constexpr int CORRECTIONS = 6;
    constexpr int64_t SEARCH_RADIUS = 6;
    std::map<int64_t, int64_t> measured;  // haystack tokens -> prompt tokens
    auto clamp = [&](int64_t n) { return std::clamp<int64_t>(n, 0, haystack_.tokens()); };
    int64_t n = clamp(guess);
    for (int i = 0; i < CORRECTIONS && !measured.contains(n); ++i) {
      BuiltPrompt p = build(n, cell.depth);
      if (p.prompt_tokens == cell.length) return p;
      measured[n] = p.prompt_tokens;
      n = clamp(n + cell.length - p.prompt_tokens);
    }
    const auto closest = std::min_element(measured.begin(), measured.end(), [&](const auto& a, const auto& b) {
      return std::abs(a.second - cell.length) < std::abs(b.second - cell.length);
    });
    for (int64_t d = 1; d <= SEARCH_RADIUS; ++d) {
      for (int64_t candidate : {closest->first - d, closest->first + d}) {
        if (candidate < 0 || candidate > haystack_.tokens() || measured.contains(candidate)) continue;
        BuiltPrompt p = build(candidate, cell.depth);
        if (p.prompt_tokens == cell.length) return p;
        measured[candidate] = p.prompt_tokens;
      }
    }
    std::vector<std::string> tried;
    for (const auto& [cut, count] : measured) tried.push_back(fmt::format("{}->{}", cut, count));
    MLABENCH_FAIL(
        "niah generator ({}): no haystack cut gives a prompt of exactly {} tokens for cell {}@{} "
        "(haystack tokens -> prompt tokens tried: {}). HINT: the tokenizer merges across the cut; try a "
        "nearby context length, and report this cell.",
        context_.spec_file.string(), cell.length, cell.length, cell.depth, fmt::join(tried, ", "));
  }

 private:
  const GeneratorContext& context_;
  const Config& config_;
  PromptFrame frame_;
  Haystack haystack_;
  std::string system_prompt_;
};

}  // namespace

std::vector<Subtask> generate(const GeneratorContext& context) {
  const std::string where = context.spec_file.string();
  MLABENCH_CHECK(context.tokenizer != nullptr,
                 "niah generator ({}): the backend has no tokenizer, and context "
                 "lengths are counted in the model's tokens. HINT: run niah with a backend that loads the model's "
                 "tokenizer.",
                 where);
  const Config config = parse_config(context);
  const int64_t reserve = config.reserve_tokens >= 0 ? config.reserve_tokens : context.max_gen_toks;
  const bool chat = config.prompt_style == "chat";
  PromptFrame frame = render_frame(chat ? config.chat_prompt : config.base_prompt, chat ? "chat_prompt" : "base_prompt",
                                   config.question, where);

  // Cells in grid order (lengths outer); those that leave no room for the answer are dropped or refused.
  std::vector<Cell> cells;
  std::vector<int64_t> too_long;
  const auto n_depths = static_cast<int64_t>(config.depth_percents.size());
  for (size_t li = 0; li < config.context_lengths.size(); ++li) {
    const int64_t length = config.context_lengths[li];
    if (context.max_context > 0 && length + reserve > context.max_context) {
      MLABENCH_CHECK(config.on_overflow == "skip",
                     "niah generator ({}): context length {} + reserve_tokens {} "
                     "exceeds the model's window of {} tokens. HINT: lower \"context_lengths\", or set "
                     "\"on_overflow\": \"skip\" to drop such cells.",
                     where, length, reserve, context.max_context);
      too_long.push_back(length);
      continue;
    }
    for (size_t di = 0; di < config.depth_percents.size(); ++di) {
      cells.push_back(
          {static_cast<int64_t>(li) * n_depths + static_cast<int64_t>(di), length, config.depth_percents[di]});
    }
  }
  if (!too_long.empty()) {
    fmt::print(stderr,
               "warning: niah: skipped {} cells of context lengths {}: length + reserve_tokens ({}) "
               "exceeds the model's window of {} tokens. HINT: lower \"context_lengths\" to fit the window, or widen "
               "the window (--max-context on cuda, up to the model's max_position_embeddings).\n",
               too_long.size() * config.depth_percents.size(), fmt::join(too_long, ", "), reserve,
               context.max_context);
  }
  Subtask subtask;
  subtask.name = subtask.display = context.task_name;
  subtask.n_docs_total = static_cast<int64_t>(cells.size());
  if (context.limit && *context.limit < subtask.n_docs_total) {
    cells.resize(static_cast<size_t>(std::max<int64_t>(*context.limit, 0)));
  }
  if (cells.empty()) return {subtask};

  int64_t longest = 0;
  for (const auto& c : cells) longest = std::max(longest, c.length);
  const std::string essays = read_essays(context.dataset_dir / config.haystack_dir);
  PromptBuilder builder(context, config, std::move(frame), tokenize_haystack(*context.tokenizer, essays, longest));
  // The prompt around an empty haystack: the first guess of a cut is the length minus this.
  const int64_t fixed_tokens = builder.build(0, 0).prompt_tokens;
  std::map<int64_t, int64_t> cut_by_length;
  for (const auto& cell : cells) {
    MLABENCH_CHECK(cell.length > fixed_tokens,
                   "niah generator ({}): context length {} is not longer than the "
                   "prompt without haystack ({} tokens: template, question and needle). HINT: use context lengths "
                   "above {}.",
                   where, cell.length, fixed_tokens, fixed_tokens);
    const auto known = cut_by_length.find(cell.length);
    const BuiltPrompt p =
        builder.exact(cell, known != cut_by_length.end() ? known->second : cell.length - fixed_tokens);
    cut_by_length[cell.length] = p.haystack_tokens;
    TaskDoc doc;
    doc.doc_id = cell.index;
    doc.context = p.context;
    doc.target = config.answer;
    doc.system_prompt = builder.system_prompt();
    doc.doc = Json{{"context_length", cell.length},
                   {"depth_percent", cell.depth},
                   {"cell", fmt::format("{}@{}", cell.length, cell.depth)},
                   {"needle_offset", p.needle_offset},
                   {"needle_depth_percent", p.needle_depth},
                   {"haystack_tokens", p.haystack_tokens},
                   {"prompt_tokens", p.prompt_tokens}};
    subtask.docs.push_back(std::move(doc));
  }
  return {subtask};
}

}  // namespace mlabench::tasks::niah
