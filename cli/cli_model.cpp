// info / logits / score / generate / tokenize. Prompts are text (--prompt, through the model's tokenizer) or
// comma-separated token ids (--tokens). Results go to stdout as JSON; errors to stderr as "error: <what was
// checked>" with exit code 1.
#include "cli/cli_model.h"

#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <initializer_list>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/input_file.h"
#include "core/utf8.h"
#include "engine/core/npy.h"
#include "engine/model/config.h"
#include "engine/model/model_info.h"
#include "engine/parallel/shard_plan.h"
#include "mlabench/engine.h"

extern char** environ;

namespace mlabench::cli {

namespace {

// name -> value for an enum flag, the names from mlabench/engine.h's to_string, in declaration order.
template <class E>
std::vector<std::pair<std::string, E>> names_of(std::initializer_list<E> values) {
  std::vector<std::pair<std::string, E>> out;
  for (E v : values) out.emplace_back(to_string(v), v);
  return out;
}

// A transform from the names to the enum (CheckedTransformer, which alone would also take the underlying
// numbers); its help and its error list the names.
template <class E>
CLI::Validator enum_names(std::initializer_list<E> values) {
  const auto names = names_of(values);
  std::string listed;
  for (const auto& [name, v] : names) listed += (listed.empty() ? "" : ", ") + name;
  const CLI::CheckedTransformer to_value(names);
  return CLI::Validator(
      [names, to_value, listed](std::string& input) -> std::string {
        const bool known = std::any_of(names.begin(), names.end(), [&](const auto& n) { return n.first == input; });
        const std::string given = input;
        if (known && to_value(input).empty()) return {};
        return "\"" + given + "\" is not one of " + listed;
      },
      "{" + CLI::detail::join(names, [](const auto& n) { return n.first; }, ",") + "}");
}

}  // namespace

// Every default shown here comes from a default-constructed EngineOptions: its member initialisers are the only
// place the engine's defaults are written.
void add_model_args(CLI::App* cmd, ModelArgs& a, bool engine_options) {
  EngineOptions& e = a.engine;
  const EngineOptions defaults{};
  cmd->add_option("--model", e.model_dir, "model folder: config.json + safetensors (default: the bundled tiny model)")
      ->capture_default_str();
  if (!engine_options) return;
  cmd->add_option_function<uint64_t>(
         "--random-weights", [&e](const uint64_t& seed) { e.random_weights_seed = seed; },
         "build random weights from config.json alone with this seed (default: read the checkpoint)")
      ->type_name("SEED")
      ->check(CLI::Range(uint64_t{0}, static_cast<uint64_t>(INT64_MAX)));
  cmd->add_option("--threads", e.n_threads, "CPU threads (0 = all cores)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option_function<std::string>(
         "--device",
         [&e](const std::string& name) {
           const DeviceSpec d = device_spec_from_name(name).value();  // the check below has accepted it
           e.device = d.device;
           e.device_index = d.index;
         },
         "where the engine runs: cpu (float32 reference engine), cuda (GPU engine on GPU 0) or cuda:N (GPU N)")
      ->check(CLI::Validator(
          [](std::string& input) -> std::string {
            if (device_spec_from_name(input)) return {};
            return "\"" + input + "\" is not cpu, cuda or cuda:N (N = 0, 1, ...: the GPU's index)";
          },
          "{cpu,cuda,cuda:N}"))
      ->default_str(to_string(defaults.device));
  cmd->add_option("--mla", e.mla_attention,
                  "MLA attention form: auto (decompressed for prefill, absorbed for decode), decompressed or absorbed")
      ->transform(enum_names({MlaAttention::AUTO, MlaAttention::DECOMPRESSED, MlaAttention::ABSORBED}))
      ->default_str(to_string(defaults.mla_attention));
  // The serving limits apply on both devices: the CPU engine runs the same scheduler and paged cache.
  cmd->add_option("--kv-cache-gib", e.kv_cache_gib,
                  "KV cache budget in GiB (0 = on cuda the GPU memory left after weights and buffers, less 1 GiB; "
                  "on the cpu a quarter of the RAM, allocated as it fills)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--max-batch", e.max_batch, "sequences decoded together (continuous batching)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--max-step-tokens", e.max_step_tokens,
                  "new tokens per step: longer prompts are prefilled in chunks of this size (at least --max-batch; "
                  "0 = 16384 on cuda, 4096 on the cpu)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--max-context", e.max_context,
                  "longest sequence, prompt + new tokens (0 = max_position_embeddings; on cuda at most 32768)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--block-size", e.block_size,
                  "KV cache block in tokens (0 = auto: 64 for MLA models on cuda, else 16)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_flag("!--no-prefix-sharing", e.prefix_sharing,
                fmt::format("do not reuse the cached KV blocks of a shared prompt prefix (default: sharing {})",
                            defaults.prefix_sharing ? "on" : "off"));
  cmd->add_flag("!--no-cuda-graphs", e.cuda_graphs,
                fmt::format("cuda only: launch decode steps kernel by kernel (default: graphs {})",
                            defaults.cuda_graphs ? "on" : "off"));
  cmd->add_flag("--batch-invariant-attention", e.batch_invariant_attention,
                "cuda only: split decode attention by each sequence's own length, so a request's attention output is "
                "the same in any batch (slower where the default plan splits otherwise; the GEMMs stay "
                "batch-dependent; docs/engine.md)");
  cmd->add_option("--tp", e.tp,
                  "tensor parallelism over N ranks: attention heads, FFN columns and vocabulary rows split, joined by "
                  "all-reduce (on the cpu the sharded reference; on GPUs one a rank, NCCL between them; docs/engine.md)")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  cmd->add_option("--ep", e.ep,
                  "expert parallelism over N ranks: routed experts whole, a block a rank, every rank routing each token and "
                  "computing its experts' share, summed by the all-reduce after the layer (with --tp N; cpu and cuda)")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  cmd->add_flag("--dp-attention", e.dp_attention,
                "data-parallel attention: every rank all heads over its own sequences and cache, the FFN split "
                "(cpu and cuda; each rank its own KV cache of --kv-cache-gib, the prefix cache within each)");
  cmd->add_option("--precision", e.precision,
                  "cuda only (the cpu computes in float32): native (GEMMs in the checkpoint dtype, BF16 KV cache: "
                  "fast) or f32 (float32 weights, GEMMs, KV cache and attention: parity with the reference, 2x memory)")
      ->transform(enum_names({Precision::NATIVE, Precision::FLOAT32}))
      ->default_str(to_string(defaults.precision));
  cmd->add_option("--weights-dtype", e.weights_dtype,
                  "auto (as stored) or fp8: every projection and expert (not the embedding, head or router) quantised "
                  "on load to e4m3 with a float32 scale per 128 x 128 block, activations to e4m3 per 1 x 128 group "
                  "as DeepSeek-V3's FP8 GEMMs do; kv_b_proj stays as stored (cpu; cuda where the expert widths are "
                  "multiples of 128: FP8 GEMMs on the tensor cores, QGMMA for BF16 models; docs/engine.md). An FP8 "
                  "checkpoint (DeepSeek-V3's layout) loads as stored either way")
      ->transform(enum_names({WeightsDtype::AUTO, WeightsDtype::FP8}))
      ->default_str(to_string(defaults.weights_dtype));
  cmd->add_option("--kv-cache-dtype", e.kv_cache_dtype,
                  "auto (the engine's own) or fp8: cached values rounded to e4m3 with float32 scales (MLA: the latent "
                  "in groups of 128, the RoPE part in BF16, FlashMLA's 656 B a layer; GQA/MHA: a scale per head's key "
                  "and value); attention reads what the cache holds (cpu; cuda on one GPU: MLA decode on the Hopper kernel, GQA "
                  "decode on its tensor-core kernel, prefill on the BF16 flash kernel for MLA; docs/engine.md)")
      ->transform(enum_names({KvCacheDtype::AUTO, KvCacheDtype::FP8}))
      ->default_str(to_string(defaults.kv_cache_dtype));
}

namespace {

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

}  // namespace

std::unique_ptr<Engine> open_engine(const EngineOptions& options, bool timing_experiment) {
  const char* skip = std::getenv("MLABENCH_TIMING_SKIP");
  MLABENCH_CHECK(timing_experiment || skip == nullptr || *skip == '\0',
                 "MLABENCH_TIMING_SKIP={} leaves kernels out of every step, so this command's outputs would be wrong. "
                 "HINT: it is for `mlabench bench` timing experiments only; unset it",
                 skip ? skip : "");
  return std::move(Engine::open(options).value());
}

namespace {
constexpr const char* kSecretWords[] = {"KEY", "TOKEN", "SECRET", "PASS", "AUTH", "CRED"};
}  // namespace

nlohmann::ordered_json engine_environment(const std::string& exclude) {
  std::vector<std::pair<std::string, std::string>> vars;  // name, value
  for (char** e = environ; e && *e; ++e) {
    const std::string_view kv(*e);
    const size_t eq = kv.find('=');
    const std::string name(kv.substr(0, eq));
    if (!(name.starts_with("MLABENCH_") || name.starts_with("NCCL_") || name == "CUDA_VISIBLE_DEVICES")) continue;
    // Never a credential (an --api-key-env variable is often MLABENCH_-something): names that say key, token,
    // secret, password, auth or credential are left out, whatever their prefix.
    std::string upper = name;
    std::transform(upper.begin(), upper.end(), upper.begin(), [](unsigned char ch) { return std::toupper(ch); });
    const bool secret = std::any_of(std::begin(kSecretWords), std::end(kSecretWords),
                                    [&](const char* w) { return upper.find(w) != std::string::npos; });
    if (secret || name == exclude || eq == std::string_view::npos) continue;
    // JSON holds UTF-8 only: a value that is not is recorded as such, not dumped (which would fail the run's end).
    const std::string_view value = kv.substr(eq + 1);
    const size_t bad = unicode::first_invalid(value);
    vars.emplace_back(name, bad == value.size() ? std::string(value)
                                                : fmt::format("(not valid UTF-8: byte {} is 0x{:02X})", bad,
                                                              static_cast<unsigned char>(value[bad])));
  }
  std::sort(vars.begin(), vars.end());
  nlohmann::ordered_json env = nlohmann::ordered_json::object();
  for (const auto& [name, value] : vars) env[name] = value;
  return env;
}

namespace {

nlohmann::ordered_json timing_json(const Engine& e, const GenerateResult& r, size_t prompt_len, Device device) {
  const double steps = r.tokens.size() > 1 ? static_cast<double>(r.tokens.size() - 1) : 0.0;
  const double tps = r.decode_seconds > 0 ? steps / r.decode_seconds : 0.0;
  return {{"device", to_string(device)},
          {"prefill_seconds", r.prefill_seconds},
          {"prefill_tokens_per_s", r.prefill_seconds > 0 ? static_cast<double>(prompt_len) / r.prefill_seconds : 0.0},
          {"decode_tokens_per_s", tps},
          {"decode_weight_gb_per_s", tps * static_cast<double>(e.active_weight_bytes()) / 1e9},
          {"active_weight_bytes_per_token", e.active_weight_bytes()}};
}

struct GenerateArgs {
  ModelArgs model;
  std::string tokens, prompt, system, chat_template, stop_ids;
  std::vector<std::string> stop;
  bool chat = false, ignore_eos = false;
  GenerateOptions gen;
};

void generate_command(const GenerateArgs& a) {
  auto engine = open_engine(a.model.engine);
  GenerateOptions g = a.gen;
  if (!a.stop_ids.empty()) g.stop_token_ids = parse_ids(a.stop_ids, "--stop-token-ids");
  nlohmann::ordered_json j;
  j["model"] = engine->summary().model_dir;
  if (!a.tokens.empty()) {
    const std::vector<int32_t> prompt = parse_ids(a.tokens, "--tokens");
    GenerateResult r = engine->generate(prompt, g).value();
    j["prompt_tokens"] = prompt;
    j["tokens"] = r.tokens;
    if (engine->tokenizer()) j["text"] = engine->tokenizer()->decode(r.tokens, true);
    j["finish_reason"] = r.finish_reason;
    j["timing"] = timing_json(*engine, r, prompt.size(), a.model.engine.device);
  } else {
    std::string prompt = a.prompt;
    bool add_special = true;
    if (a.chat) {
      std::vector<ChatMessage> msgs;
      if (!a.system.empty()) msgs.push_back({"system", a.system});
      msgs.push_back({"user", a.prompt});
      std::optional<ChatTemplate> t;
      if (!a.chat_template.empty()) t = chat_template_from_name(a.chat_template);
      prompt = engine->apply_chat_template(msgs, true, t).value();
      add_special = false;  // the template writes BOS itself
      j["chat_template"] = std::string(chat_template_name(t.value_or(engine->tokenizer()->chat_template())));
      j["rendered_prompt"] = prompt;
    }
    TextGenerateOptions o;
    o.sampling = g;
    o.stop = a.stop;
    o.add_special_tokens = add_special;
    o.ignore_eos = a.ignore_eos;
    TextGenerateResult r = engine->generate(std::string_view(prompt), o).value();
    j["prompt_tokens"] = r.prompt_tokens;
    j["tokens"] = r.generation.tokens;
    j["text"] = r.text;
    j["finish_reason"] = r.generation.finish_reason;
    j["timing"] = timing_json(*engine, r.generation, r.prompt_tokens.size(), a.model.engine.device);
  }
  j["sampling"] = {{"temperature", g.temperature}, {"top_p", g.top_p}, {"seed", g.seed}};
  std::printf("%s\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
}

struct TokenizeArgs {
  std::string dir, text, jsonl, out;
  bool add_special = false, has_text = false;
  int threads = 0;
};

// JSONL in, one {"text": ...} per line; JSONL out, one {"ids": [...]} per line, in order. Lines are encoded in
// parallel (each thread keeps its own BPE word cache).
void tokenize_command(const TokenizeArgs& a) {
  if (!a.has_text && a.jsonl.empty()) throw Error("tokenize needs --text STR or --jsonl IN --out OUT");
  auto tok = Tokenizer::load(a.dir).value();
  if (a.has_text) {
    std::printf("%s\n", nlohmann::json({{"ids", tok->encode(a.text, a.add_special)}}).dump().c_str());
    return;
  }
  if (a.out.empty()) throw Error("--jsonl needs --out FILE for the ids");
  refuse_non_regular_file(a.jsonl, "--jsonl");
  std::ifstream in(a.jsonl, std::ios::binary);
  if (!in.good()) throw Error(fmt::format("cannot read {}", a.jsonl));
  std::vector<std::string> texts;
  size_t line_no = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_no;
    if (line.empty()) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      throw Error(fmt::format("{} line {}: not valid JSON ({})", a.jsonl, line_no, e.what()));
    }
    if (!j.is_object() || !j.contains("text") || !j["text"].is_string())
      throw Error(fmt::format("{} line {}: expected {{\"text\": \"...\"}}", a.jsonl, line_no));
    texts.push_back(j["text"].get<std::string>());
  }
  std::vector<std::string> lines(texts.size());
  if (a.threads > 0) omp_set_num_threads(a.threads);
#pragma omp parallel for schedule(dynamic, 16)
  for (size_t i = 0; i < texts.size(); ++i)
    lines[i] = nlohmann::json({{"ids", tok->encode(texts[i], a.add_special)}}).dump();
  std::ofstream out(a.out, std::ios::binary);
  if (!out.good()) throw Error(fmt::format("cannot write {}", a.out));
  for (const auto& l : lines) out << l << '\n';
  if (!out.good()) throw Error(fmt::format("writing {} failed", a.out));
}

}  // namespace

void add_model_commands(CLI::App& app, int* exit_code) {
  // Options outlive parsing: the callbacks run after it.
  static ModelArgs info_args, logits_args, score_args;
  static std::string tokens, out_path, context, continuation, context_text, continuation_text;
  static GenerateArgs gen;
  static TokenizeArgs tk;

  auto* info = app.add_subcommand("info",
                                  "print architecture, parameter counts, KV-cache bytes per token and the tokenizer "
                                  "as JSON (reads config.json; weights need not exist)");
  add_model_args(info, info_args, false);
  static int info_tp = 1, info_ep = 1;
  static bool info_dp = false;
  info->add_option("--tp", info_tp,
                   "plan a split over N GPUs, attention heads and FFN columns by tensor parallelism: the JSON gains "
                   "`parallel`, what each rank holds and its weight and KV bytes (docs/engine.md, \"Several GPUs\")")
      ->check(CLI::Range(1, 64));
  info->add_option("--ep", info_ep, "plan routed experts split whole over N GPUs (with --tp N or --dp-attention)")
      ->check(CLI::Range(1, 64));
  info->add_flag("--dp-attention", info_dp,
                 "plan data-parallel attention: every rank all heads over its own sequences (one latent cache each)");
  info->callback([=] {
    run(exit_code, [&] {
      if (info_tp == 1 && info_ep == 1 && !info_dp) {
        std::printf("%s\n", summarize_model(info_args.engine.model_dir).value().json.c_str());
        return;
      }
      // config.json read once: the plan and the summary describe the same file.
      const ModelConfig c = load_config(info_args.engine.model_dir);
      const std::string plan =
          parallel::plan_json(c, parallel::ParallelConfig{.tp = info_tp, .ep = info_ep, .dp_attention = info_dp});
      nlohmann::ordered_json j = nlohmann::ordered_json::parse(summarize_model_dir(c, info_args.engine.model_dir).json);
      j["parallel"] = nlohmann::ordered_json::parse(plan);
      std::printf("%s\n", j.dump().c_str());
    });
  });

  auto* logits = app.add_subcommand("logits", "write float32 logits of every position as a .npy [n_tokens, vocab]");
  add_model_args(logits, logits_args, true);
  logits->add_option("--tokens", tokens, "token ids, e.g. 1,2,3")->required();
  logits->add_option("--out", out_path, "output .npy file")->required();
  logits->callback([=] {
    run(exit_code, [&] {
      const std::vector<int32_t> ids = parse_ids(tokens, "--tokens");
      auto engine = open_engine(logits_args.engine);
      Logits l = engine->logits(ids).value();
      npy_write_f32(out_path, {l.n_tokens, l.vocab_size}, l.data.data());
      std::printf("%s\n", nlohmann::json({{"out", out_path}, {"shape", {l.n_tokens, l.vocab_size}}}).dump().c_str());
    });
  });

  auto* score = app.add_subcommand("score", "log-probability of a continuation after a context (ids or text)");
  add_model_args(score, score_args, true);
  auto* ctx_ids = score->add_option("--context", context, "context token ids");
  auto* ctx_txt =
      score->add_option("--context-text", context_text, "context text (tokenized as lm-evaluation-harness does)");
  score->add_option("--continuation", continuation, "continuation token ids")->needs(ctx_ids);
  score->add_option("--continuation-text", continuation_text, "continuation text")->needs(ctx_txt);
  ctx_ids->excludes(ctx_txt);
  score->callback([=] {
    run(exit_code, [&] {
      auto engine = open_engine(score_args.engine);
      ScoreResult r;
      if (!context_text.empty()) {
        r = engine->score(std::string_view(context_text), std::string_view(continuation_text)).value();
      } else {
        if (context.empty())
          throw Error("score needs --context/--continuation ids or --context-text/--continuation-text");
        r = engine->score(parse_ids(context, "--context"), parse_ids(continuation, "--continuation")).value();
      }
      std::printf(
          "%s\n",
          nlohmann::json({{"logprob", r.logprob}, {"is_greedy", r.is_greedy}, {"tokens", r.n_tokens}}).dump().c_str());
    });
  });

  auto* generate = app.add_subcommand("generate", "generate after a prompt (greedy unless --temperature)");
  add_model_args(generate, gen.model, true);
  auto* t_opt = generate->add_option("--tokens", gen.tokens, "prompt token ids");
  auto* p_opt = generate->add_option("--prompt", gen.prompt, "prompt text, encoded with the model's tokenizer");
  t_opt->excludes(p_opt);
  generate->add_flag("--chat", gen.chat, "wrap --prompt as a user message in the model's chat template")->needs(p_opt);
  generate->add_option("--system", gen.system, "system message (with --chat)");
  generate
      ->add_option("--chat-template", gen.chat_template,
                   "override the template: raw, deepseek-v2, llama-2-chat, llama-3-instruct")
      ->check(CLI::IsMember({"raw", "deepseek-v2", "llama-2-chat", "llama-3-instruct"}));
  generate->add_option("--stop", gen.stop, "stop string (repeatable); the text is cut before it");
  generate->add_flag("--ignore-eos", gen.ignore_eos, "do not stop at the tokenizer's end-of-sequence token");
  generate->add_option("--max-new-tokens", gen.gen.max_new_tokens, "tokens to generate at most")->capture_default_str();
  generate->add_option("--temperature", gen.gen.temperature, "0 = greedy")->capture_default_str()
      ->check(CLI::Range(0.0, 100.0));
  generate->add_option("--top-p", gen.gen.top_p, "nucleus mass")->capture_default_str();
  generate->add_option("--seed", gen.gen.seed, "sampling seed")->capture_default_str()
      ->check(CLI::Range(uint64_t{0}, static_cast<uint64_t>(INT64_MAX)));
  generate->add_option("--stop-token-ids", gen.stop_ids, "stop after any of these ids, e.g. 1,2");
  generate->callback([=] {
    run(exit_code, [&] {
      if (gen.tokens.empty() && gen.prompt.empty()) throw Error("generate needs --tokens or --prompt");
      generate_command(gen);
    });
  });

  auto* tokenize = app.add_subcommand("tokenize", "text to token ids with a model folder's tokenizer");
  tokenize->add_option("--tokenizer", tk.dir, "folder with tokenizer.json or tokenizer.model")->required();
  auto* text = tokenize->add_option("--text", tk.text, "one text; prints {\"ids\": [...]}");
  auto* jsonl = tokenize->add_option("--jsonl", tk.jsonl, "input JSONL, one {\"text\": ...} per line");
  text->excludes(jsonl);
  tokenize->add_option("--out", tk.out, "output JSONL, one {\"ids\": [...]} per input line")->needs(jsonl);
  tokenize->add_flag("--add-special", tk.add_special, "apply the post-processor (e.g. BOS)");
  tokenize->add_option("--threads", tk.threads, "threads for --jsonl (0 = all cores)")->check(CLI::NonNegativeNumber);
  tokenize->callback([=] {
    run(exit_code, [&] {
      tk.has_text = text->count() > 0;  // --text "" is a valid (empty) text
      tokenize_command(tk);
    });
  });
}

}  // namespace mlabench::cli
