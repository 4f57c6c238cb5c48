// info / logits / score / generate. Token ids are given as comma-separated integers until the tokenizer lands.
// Results go to stdout as JSON; errors to stderr as "error: <what was checked>" and exit code 1.
#include "harness/cli_model.h"

#include <fmt/format.h>

#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/core/npy.h"
#include "mlabench/engine.h"

namespace mlabench::cli {

namespace {

struct ModelArgs {
  std::string model_dir = MLABENCH_DEFAULT_MODEL;
  int64_t random_seed = -1;
  int threads = 0;
  std::string mla = "auto";
  std::string device = "cpu";
};

void add_model_args(CLI::App* cmd, ModelArgs& a, bool engine_options) {
  cmd->add_option("--model", a.model_dir, "model folder: config.json + safetensors (default: the bundled tiny model)")
      ->capture_default_str();
  if (!engine_options) return;
  cmd->add_option("--random-weights", a.random_seed, "build random weights from config.json alone with this seed")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--threads", a.threads, "CPU threads (0 = all cores)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--mla", a.mla,
                  "MLA attention form: auto (decompressed prefill, absorbed decode), decompressed, "
                  "absorbed")
      ->check(CLI::IsMember({"auto", "decompressed", "absorbed"}))
      ->capture_default_str();
  cmd->add_option("--device", a.device, "where the engine runs")->check(CLI::IsMember({"cpu"}))->capture_default_str();
}

std::vector<int32_t> parse_ids(const std::string& s, const char* flag) {
  std::vector<int32_t> out;
  size_t i = 0;
  while (i <= s.size()) {
    const size_t j = std::min(s.find(',', i), s.size());
    const std::string item = s.substr(i, j - i);
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (item.empty() || used != item.size() || v < INT32_MIN || v > INT32_MAX)
      throw Error(fmt::format("{} must be comma-separated integer token ids; \"{}\" is not one", flag, item));
    out.push_back(static_cast<int32_t>(v));
    i = j + 1;
  }
  return out;
}

std::unique_ptr<Engine> open_engine(const ModelArgs& a) {
  EngineOptions o;
  o.model_dir = a.model_dir;
  if (a.random_seed >= 0) o.random_weights_seed = static_cast<uint64_t>(a.random_seed);
  o.n_threads = a.threads;
  o.mla_attention = a.mla == "decompressed" ? MlaAttention::DECOMPRESSED
                    : a.mla == "absorbed"   ? MlaAttention::ABSORBED
                                            : MlaAttention::AUTO;
  return std::move(Engine::open(o).value());
}

// Runs a subcommand body; a checked failure becomes "error: ..." on stderr and exit code 1.
template <class F>
void run(int* exit_code, F&& body) {
  try {
    body();
    *exit_code = 0;
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    *exit_code = 1;
  }
}

}  // namespace

void add_model_commands(CLI::App& app, int* exit_code) {
  // Options outlive parsing: the callbacks run after it.
  static ModelArgs info_args, logits_args, score_args, gen_args;
  static std::string tokens, out_path, context, continuation, stop_ids;
  static GenerateOptions gen;

  auto* info = app.add_subcommand("info",
                                  "print architecture, parameter counts and KV-cache bytes per token as JSON "
                                  "(reads config.json; weights need not exist)");
  add_model_args(info, info_args, false);
  info->callback([=] {
    run(exit_code, [&] {
      ModelSummary s = summarize_model(info_args.model_dir).value();
      std::printf("%s\n", s.json.c_str());
    });
  });

  auto* logits = app.add_subcommand("logits", "write float32 logits of every position as a .npy [n_tokens, vocab]");
  add_model_args(logits, logits_args, true);
  logits->add_option("--tokens", tokens, "token ids, e.g. 1,2,3")->required();
  logits->add_option("--out", out_path, "output .npy file")->required();
  logits->callback([=] {
    run(exit_code, [&] {
      const std::vector<int32_t> ids = parse_ids(tokens, "--tokens");
      auto engine = open_engine(logits_args);
      Logits l = engine->logits(ids).value();
      npy_write_f32(out_path, {l.n_tokens, l.vocab_size}, l.data.data());
      std::printf("%s\n", nlohmann::json({{"out", out_path}, {"shape", {l.n_tokens, l.vocab_size}}}).dump().c_str());
    });
  });

  auto* score = app.add_subcommand("score", "log-probability of a continuation after a context");
  add_model_args(score, score_args, true);
  score->add_option("--context", context, "context token ids")->required();
  score->add_option("--continuation", continuation, "continuation token ids")->required();
  score->callback([=] {
    run(exit_code, [&] {
      const std::vector<int32_t> ctx = parse_ids(context, "--context"),
                                 cont = parse_ids(continuation, "--continuation");
      auto engine = open_engine(score_args);
      ScoreResult r = engine->score(ctx, cont).value();
      std::printf(
          "%s\n",
          nlohmann::json({{"logprob", r.logprob}, {"is_greedy", r.is_greedy}, {"tokens", r.n_tokens}}).dump().c_str());
    });
  });

  auto* generate = app.add_subcommand("generate", "generate token ids after a prompt (greedy unless --temperature)");
  add_model_args(generate, gen_args, true);
  generate->add_option("--tokens", tokens, "prompt token ids")->required();
  generate->add_option("--max-new-tokens", gen.max_new_tokens, "tokens to generate at most")->capture_default_str();
  generate->add_option("--temperature", gen.temperature, "0 = greedy")->capture_default_str();
  generate->add_option("--top-p", gen.top_p, "nucleus mass")->capture_default_str();
  generate->add_option("--seed", gen.seed, "sampling seed")->capture_default_str();
  generate->add_option("--stop-token-ids", stop_ids, "stop after any of these ids, e.g. 1,2");
  generate->callback([=] {
    run(exit_code, [&] {
      const std::vector<int32_t> prompt = parse_ids(tokens, "--tokens");
      if (!stop_ids.empty()) gen.stop_token_ids = parse_ids(stop_ids, "--stop-token-ids");
      auto engine = open_engine(gen_args);
      GenerateResult r = engine->generate(prompt, gen).value();
      const double steps = r.tokens.size() > 1 ? static_cast<double>(r.tokens.size() - 1) : 0.0;
      const double tps = r.decode_seconds > 0 ? steps / r.decode_seconds : 0.0;
      nlohmann::ordered_json j;
      j["model"] = engine->summary().model_dir;
      j["prompt_tokens"] = prompt;
      j["tokens"] = r.tokens;
      j["finish_reason"] = r.finish_reason;
      j["sampling"] = {{"temperature", gen.temperature}, {"top_p", gen.top_p}, {"seed", gen.seed}};
      j["timing"] = {{"device", gen_args.device},
                     {"prefill_seconds", r.prefill_seconds},
                     {"prefill_tokens_per_s", r.prefill_seconds > 0 ? prompt.size() / r.prefill_seconds : 0.0},
                     {"decode_tokens_per_s", tps},
                     {"decode_weight_gb_per_s", tps * static_cast<double>(engine->active_weight_bytes()) / 1e9},
                     {"active_weight_bytes_per_token", engine->active_weight_bytes()}};
      std::printf("%s\n", j.dump(2).c_str());
    });
  });
}

}  // namespace mlabench::cli
