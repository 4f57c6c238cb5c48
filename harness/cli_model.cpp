// info / logits / score / generate / tokenize. Prompts are text (--prompt, through the model's tokenizer) or
// comma-separated token ids (--tokens). Results go to stdout as JSON; errors to stderr as "error: <what was
// checked>" with exit code 1.
#include "harness/cli_model.h"

#include <fmt/format.h>
#include <omp.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/core/npy.h"
#include "mlabench/engine.h"

namespace mlabench::cli {

namespace {

}  // namespace

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
  cmd->add_option("--device", a.device, "where the engine runs: cpu (float32 reference) or cuda (BF16 GPU engine)")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  cmd->add_option("--kv-cache-gib", a.kv_cache_gib, "cuda: KV cache budget in GiB (0 = all free GPU memory less 1 GiB)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--max-batch", a.max_batch, "cuda: sequences decoded together")->check(CLI::PositiveNumber);
  cmd->add_option("--max-step-tokens", a.max_step_tokens, "cuda: new tokens per step (prefill chunk size)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-context", a.max_context, "cuda: longest sequence (0 = max_position_embeddings, at most 32768)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--block-size", a.block_size, "cuda: KV cache block in tokens")->check(CLI::PositiveNumber);
  cmd->add_flag("--no-prefix-sharing", a.no_prefix_sharing, "cuda: do not reuse cached blocks of shared prefixes");
  cmd->add_flag("--no-cuda-graphs", a.no_cuda_graphs, "cuda: launch decode steps kernel by kernel");
  cmd->add_option("--precision", a.precision,
                  "cuda: native (GEMMs in the checkpoint dtype, BF16 KV cache: fast) or f32 (float32 weights, GEMMs, "
                  "KV cache and attention: parity with the reference, 2x memory)")
      ->check(CLI::IsMember({"native", "f32"}))
      ->capture_default_str();
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

std::unique_ptr<Engine> open_engine(const ModelArgs& a) {
  EngineOptions o;
  o.device = a.device == "cuda" ? Device::CUDA : Device::CPU;
  o.kv_cache_gib = a.kv_cache_gib;
  o.max_batch = a.max_batch;
  o.max_step_tokens = std::max(a.max_step_tokens, a.max_batch);
  o.max_context = a.max_context;
  o.block_size = a.block_size;
  o.prefix_sharing = !a.no_prefix_sharing;
  o.cuda_graphs = !a.no_cuda_graphs;
  o.precision = a.precision == "f32" ? Precision::FLOAT32 : Precision::NATIVE;
  o.model_dir = a.model_dir;
  if (a.random_seed >= 0) o.random_weights_seed = static_cast<uint64_t>(a.random_seed);
  o.n_threads = a.threads;
  o.mla_attention = a.mla == "decompressed" ? MlaAttention::DECOMPRESSED
                    : a.mla == "absorbed"   ? MlaAttention::ABSORBED
                                            : MlaAttention::AUTO;
  return std::move(Engine::open(o).value());
}

namespace {


nlohmann::ordered_json timing_json(const Engine& e, const GenerateResult& r, size_t prompt_len,
                                   const std::string& device) {
  const double steps = r.tokens.size() > 1 ? static_cast<double>(r.tokens.size() - 1) : 0.0;
  const double tps = r.decode_seconds > 0 ? steps / r.decode_seconds : 0.0;
  return {{"device", device},
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
  auto engine = open_engine(a.model);
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
    j["timing"] = timing_json(*engine, r, prompt.size(), a.model.device);
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
    j["timing"] = timing_json(*engine, r.generation, r.prompt_tokens.size(), a.model.device);
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
      auto engine = open_engine(score_args);
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
  generate->add_option("--temperature", gen.gen.temperature, "0 = greedy")->capture_default_str();
  generate->add_option("--top-p", gen.gen.top_p, "nucleus mass")->capture_default_str();
  generate->add_option("--seed", gen.gen.seed, "sampling seed")->capture_default_str();
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
