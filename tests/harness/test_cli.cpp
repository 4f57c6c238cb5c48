// The mlabench binary end to end: JSON on stdout, and for every kind of bad input a message on stderr and
// exit code 1 (2 for usage errors), never a signal.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <sstream>

#include <new>
#include <stdexcept>

#include "cli/cli_guard.h"
#include "engine/weights/safetensors.h"
#include "mlabench/engine.h"
#include "tests/test_util.h"

namespace mlabench {
namespace {

struct CliResult {
  int exit_code = -1;
  bool signaled = false;
  std::string out, err;
};

// env: VAR=value assignments set for this command only (the shell's prefix form).
CliResult mlabench_cli(const std::string& args, const std::string& env = "") {
  test::TempDir tmp;
  const std::string cmd = (env.empty() ? "" : "env " + env + " ") + std::string(MLABENCH_BINARY) + " " + args +
                          " >" + tmp.file("out") + " 2>" + tmp.file("err");
  const int status = std::system(cmd.c_str());
  CliResult r;
  r.signaled = WIFSIGNALED(status);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = test::read_file(tmp.file("out"));
  r.err = test::read_file(tmp.file("err"));
  return r;
}

void expect_failure(const std::string& args, const std::string& message, int code = 1) {
  const CliResult r = mlabench_cli(args);
  EXPECT_FALSE(r.signaled) << args << " crashed";
  EXPECT_EQ(r.exit_code, code) << args << "\n" << r.err;
  EXPECT_NE(r.err.find(message), std::string::npos) << args << "\nstderr: " << r.err << "\nexpected: " << message;
  if (code == 1) {
    EXPECT_EQ(r.err.rfind("error: ", 0), 0u) << r.err;
  }
}

// `mlabench tasks` lists every leaf, group and suite that --tasks accepts.
TEST(Cli, TasksListsLeavesGroupsAndSuites) {
  const CliResult r = mlabench_cli("tasks");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* name : {"\nmmlu\n", "\nmmlu_anatomy\n", "\nceval_law\n", "\ngsm8k_cot\n",
                           "\ndeepseek-v2-paper (suite: mmlu,ceval,gsm8k_cot,humaneval,livecodebench,niah)\n"})
    EXPECT_NE(("\n" + r.out).find(name), std::string::npos) << name;
}

TEST(Cli, InfoPrintsJsonForEveryPreset) {
  for (const auto& [preset, kv] : std::map<std::string, int64_t>{{"deepseek-v2", 69120},
                                                                 {"deepseek-v2-lite", 31104},
                                                                 {"deepseek-67b", 389120},
                                                                 {"llama-2-7b", 524288},
                                                                 {"llama-3-8b", 131072}}) {
    const CliResult r = mlabench_cli("info --model " + test::preset_dir(preset));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["kv_cache_per_token"]["bytes_bf16"], kv) << preset;
    EXPECT_EQ(j["kv_cache_per_token"]["bytes_fp8"], kv / 2) << preset;
    EXPECT_GT(j["parameters"]["total"].get<int64_t>(), j["parameters"]["active_per_token"].get<int64_t>());
    EXPECT_TRUE(j.contains("architecture") && j.contains("layers"));
  }
  const CliResult d = mlabench_cli("info");  // the bundled default model
  ASSERT_EQ(d.exit_code, 0) << d.err;
  EXPECT_EQ(nlohmann::json::parse(d.out)["checkpoint"]["tensors"], 198);
}

// info --tp/--ep/--dp-attention (issue 22): what every rank of a split would hold, from config.json alone. DeepSeek-V2
// at --tp 4 --ep 4 fits four H200s in BF16 (141 GB each) and not two; under TP each rank keeps the whole latent
// cache of every sequence, under DP attention the latent of its own; what does not divide is refused by name.
TEST(Cli, InfoPlansASplitOverSeveralGpus) {
  const std::string v2 = "info --model " + test::preset_dir("deepseek-v2");
  for (int world : {2, 4}) {
    const CliResult r = mlabench_cli(v2 + " --tp " + std::to_string(world) + " --ep " + std::to_string(world));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto j = nlohmann::json::parse(r.out);
    const auto& p = j["parallel"];
    EXPECT_EQ(p["world"], world);
    EXPECT_EQ(p["model_parameters"], j["parameters"]["total"]);
    ASSERT_EQ(p["ranks"].size(), static_cast<size_t>(world));
    int64_t sum = 0;
    for (const auto& rank : p["ranks"]) {
      const int64_t n = rank["parameters"];
      sum += n;
      EXPECT_LT(n, p["model_parameters"].get<int64_t>());
      EXPECT_EQ(rank["weight_bytes_bf16"], 2 * n);
      EXPECT_EQ(rank["kv_bytes_per_token_bf16"], j["kv_cache_per_token"]["bytes_bf16"]) << "the latent, whole";
      EXPECT_TRUE(rank["latent_replicated"]);
      EXPECT_TRUE(rank["experts_whole"]);
    }
    EXPECT_GT(sum, p["model_parameters"].get<int64_t>()) << "the embedding and the latent projections on every rank";
    const int64_t largest_bytes = 2 * p["largest_rank_parameters"].get<int64_t>();
    if (world == 4) {
      EXPECT_LT(largest_bytes, int64_t{141} * 1000 * 1000 * 1000) << "fits an H200";
    } else {
      EXPECT_GT(largest_bytes, int64_t{141} * 1000 * 1000 * 1000) << "does not";
    }
  }
  const CliResult d = mlabench_cli(v2 + " --ep 8 --dp-attention");
  ASSERT_EQ(d.exit_code, 0) << d.err;
  const auto dp = nlohmann::json::parse(d.out)["parallel"];
  ASSERT_EQ(dp["ranks"].size(), 8u);
  EXPECT_TRUE(dp["ranks"][0]["sequences_sharded"]);
  EXPECT_FALSE(dp["ranks"][0]["latent_replicated"]);
  EXPECT_NE(dp["ranks"][7]["holds"].get<std::string>().find("experts 140-160 whole"), std::string::npos)
      << dp["ranks"][7]["holds"];
  // FP8 weights on GPU ranks (--tp alone, every slice on the 128 grid): at --tp 4, not at 8 (192 expert columns a
  // rank), not with --ep.
  auto fp8_on_gpu_ranks = [&](const std::string& args) -> std::string {
    const CliResult f = mlabench_cli(v2 + args);
    EXPECT_EQ(f.exit_code, 0) << f.err;
    return f.exit_code == 0 ? nlohmann::json::parse(f.out)["parallel"]["fp8_weights_on_gpu_ranks"] : "";
  };
  EXPECT_EQ(fp8_on_gpu_ranks(" --tp 4"), "ok");
  EXPECT_NE(fp8_on_gpu_ranks(" --tp 8").find("no: FP8 weights on GPU ranks (--weights-dtype fp8 or an FP8 "
                                             "checkpoint): rank 0 of 8 holds each routed expert's columns 0-192 of "
                                             "1536"),
            std::string::npos);
  EXPECT_NE(fp8_on_gpu_ranks(" --tp 4 --ep 4").find("no: GPU ranks take --tp alone"), std::string::npos);
  expect_failure(v2 + " --tp 3", "num_attention_heads = 128 does not divide over 3 ranks");
  expect_failure(v2 + " --ep 2", "--ep 2 alone would make every rank compute all of attention");
  expect_failure(v2 + " --tp 2 --ep 4", "each is 1 or the group's size");
}

// --tp / --ep on the engine commands: the CPU runs the split (engine/parallel/sharded_runner.h) with the unsharded
// engine's tokens; bench records the split; what cannot run is refused before any weight is read.
TEST(Cli, EngineCommandsRunASplitOnTheCpu) {
  const std::string gen = "generate --tokens 1,2,3,4,5 --max-new-tokens 8";
  const CliResult whole = mlabench_cli(gen), split = mlabench_cli(gen + " --tp 2 --ep 2");
  ASSERT_EQ(whole.exit_code, 0) << whole.err;
  ASSERT_EQ(split.exit_code, 0) << split.err;
  EXPECT_EQ(nlohmann::json::parse(whole.out)["tokens"], nlohmann::json::parse(split.out)["tokens"]);
  EXPECT_EQ(nlohmann::json::parse(split.out)["tokens"].size(), 8u);
  const CliResult b = mlabench_cli("bench --batch 2 --prompt 4 --gen 2 --tp 2");
  ASSERT_EQ(b.exit_code, 0) << b.err;
  const auto bj = nlohmann::json::parse(b.out.substr(b.out.rfind("\n{") + 1));
  EXPECT_EQ(bj["params"]["tp"], 2);
  EXPECT_EQ(bj["params"]["ep"], 1);
  EXPECT_GT(bj["load_seconds"].get<double>(), 0.0);  // the engine's open, timed (the weights of its ranks)
  EXPECT_NE(b.out.find("# engine opened in "), std::string::npos) << b.out;
  expect_failure(gen + " --tp 4", "num_attention_heads = 6 does not divide over 4 ranks");
  const CliResult dp = mlabench_cli(gen + " --ep 2 --dp-attention");
  ASSERT_EQ(dp.exit_code, 0) << dp.err;
  EXPECT_EQ(nlohmann::json::parse(whole.out)["tokens"], nlohmann::json::parse(dp.out)["tokens"]);
  expect_failure(gen + " --tp 65", "--tp", 2);
}

TEST(Cli, LogitsWritesNpyEqualToTheReference) {
  const std::string dir = test::fixture_dir("llama-gqa-llama3-tied");
  const test::Reference ref = test::load_reference(dir);
  std::string ids;
  for (int32_t t : ref.tokens) {
    if (!ids.empty()) ids += ',';
    ids += std::to_string(t);
  }
  test::TempDir out;
  const CliResult r =
      mlabench_cli("logits --model " + dir + " --tokens " + ids + " --out " + out.file("l.npy") + " --device cpu");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const NpyArray a = npy_read(out.file("l.npy"));
  EXPECT_EQ(a.shape, ref.logits.shape);
  EXPECT_LE(test::max_abs_diff(a.data.data(), ref.logits.data.data(), a.data.size()), 1e-3 * ref.max_abs);
}

TEST(Cli, GenerateAndScore) {
  const CliResult g = mlabench_cli("generate --tokens 0,5,9 --max-new-tokens 6");
  ASSERT_EQ(g.exit_code, 0) << g.err;
  const auto j = nlohmann::json::parse(g.out);
  EXPECT_EQ(j["tokens"].size(), 6u);
  EXPECT_EQ(j["finish_reason"], "length");
  EXPECT_GT(j["timing"]["decode_tokens_per_s"].get<double>(), 0.0);
  const CliResult again = mlabench_cli("generate --tokens 0,5,9 --max-new-tokens 6 --mla absorbed --threads 1");
  EXPECT_EQ(nlohmann::json::parse(again.out)["tokens"], j["tokens"]);
  const CliResult s = mlabench_cli("score --context 0,5,9 --continuation 7,8");
  ASSERT_EQ(s.exit_code, 0) << s.err;
  EXPECT_LT(nlohmann::json::parse(s.out)["logprob"].get<double>(), 0.0);
  const CliResult rnd = mlabench_cli("generate --model " + test::preset_dir("llama-2-7b") +
                                     " --tokens 1 --max-new-tokens 1 --random-weights 3 --help");
  EXPECT_EQ(rnd.exit_code, 0) << "--help prints usage";
}

TEST(Cli, TokenizeTextAndJsonl) {
  const std::string tok = test::data_dir() + "/tokenizer/llama3-style";
  const nlohmann::json ref =
      nlohmann::json::parse(test::read_gz(test::data_dir() + "/tokenizer/ref/llama3-style.json.gz"));
  std::istringstream corpus(test::read_gz(test::data_dir() + "/tokenizer/corpus.jsonl.gz"));
  test::TempDir t;
  {
    std::ofstream in(t.file("in.jsonl"));
    std::string line;
    for (int i = 0; i < 12 && std::getline(corpus, line); ++i) in << line << "\n";
  }
  for (const char* special : {"", " --add-special"}) {
    const CliResult r = mlabench_cli("tokenize --tokenizer " + tok + " --jsonl " + t.file("in.jsonl") + " --out " +
                                     t.file("out.jsonl") + " --threads 2" + special);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    std::ifstream out(t.file("out.jsonl"));
    std::string line;
    for (size_t i = 0; i < 12; ++i) {
      ASSERT_TRUE(std::getline(out, line));
      EXPECT_EQ(nlohmann::json::parse(line)["ids"], ref[*special ? "full_ids_add_special" : "full_ids"][i]) << i;
    }
  }
  const CliResult one =
      mlabench_cli("tokenize --tokenizer " + test::default_model_dir() + " --text 'Hello world' --add-special");
  ASSERT_EQ(one.exit_code, 0) << one.err;
  EXPECT_EQ(nlohmann::json::parse(one.out)["ids"][0], 0);
  { std::ofstream(t.file("bad.jsonl")) << "{\"text\": \"ok\"}\n{\"txt\": 1}\n"; }
  expect_failure("tokenize --tokenizer " + tok + " --jsonl " + t.file("bad.jsonl") + " --out " + t.file("o.jsonl"),
                 "line 2: expected {\"text\"");
  expect_failure("tokenize --tokenizer " + t.path() + " --text x", "no tokenizer");
  expect_failure("tokenize --tokenizer " + tok, "needs --text");
  const CliResult empty = mlabench_cli("tokenize --tokenizer " + tok + " --text ''");
  EXPECT_EQ(empty.exit_code, 0) << empty.err;
  EXPECT_EQ(nlohmann::json::parse(empty.out)["ids"].size(), 0u);
}

TEST(Cli, GenerateFromTextAndChat) {
  const CliResult g = mlabench_cli("generate --prompt 'Once upon a time' --max-new-tokens 5 --ignore-eos");
  ASSERT_EQ(g.exit_code, 0) << g.err;
  const auto j = nlohmann::json::parse(g.out);
  EXPECT_EQ(j["tokens"].size(), 5u);
  EXPECT_TRUE(j["text"].is_string());
  EXPECT_EQ(j["prompt_tokens"][0], 0);
  const CliResult c = mlabench_cli("generate --prompt Hi --chat --system 'Be brief.' --max-new-tokens 2");
  ASSERT_EQ(c.exit_code, 0) << c.err;
  EXPECT_EQ(nlohmann::json::parse(c.out)["rendered_prompt"],
            "<｜begin▁of▁sentence｜>Be brief.\n\nUser: Hi\n\nAssistant:");
  const CliResult l3 = mlabench_cli("generate --prompt Hi --chat --chat-template llama-3-instruct --max-new-tokens 1");
  EXPECT_NE(nlohmann::json::parse(l3.out)["rendered_prompt"].get<std::string>().find("<|start_header_id|>user"),
            std::string::npos);
  const CliResult s = mlabench_cli("score --context-text 'The sky is' --continuation-text ' blue'");
  ASSERT_EQ(s.exit_code, 0) << s.err;
  EXPECT_LT(nlohmann::json::parse(s.out)["logprob"].get<double>(), 0.0);
  expect_failure("generate --model " + test::fixture_dir("llama-mha") + " --prompt hi", "no tokenizer");
  expect_failure("generate --tokens 1 --prompt hi", "excludes", 2);
}

// The entry of `option` in a --help text: its line and the description lines under it, up to the next option.
std::string help_entry(const std::string& help, const std::string& option) {
  std::istringstream in(help);
  std::string line, entry;
  bool inside = false;
  for (; std::getline(in, line);) {
    const size_t start = line.find_first_not_of(' ');
    const bool option_line = start != std::string::npos && line[start] == '-';
    if (option_line) {
      if (inside) break;
      const std::string head = line.substr(start);
      inside = head.rfind(option, 0) == 0 &&
               (head.size() == option.size() || head[option.size()] == ' ' || head[option.size()] == '{');
    }
    if (inside) entry += line + "\n";
  }
  return entry;
}

// A number as CLI11 shows a captured default (operator<<).
template <class T>
std::string shown(T value) {
  std::ostringstream out;
  out << value;
  return out.str();
}

// Every engine option of run, bench and generate shows the default of a default-constructed EngineOptions, the one
// place the defaults are written.
TEST(Cli, HelpListsEveryEngineOptionWithEngineOptionsDefaults) {
  const EngineOptions d{};
  // Default values as CLI11 prints them: "=16" (CLI11 2.3, Debian 12) or "[16]" (2.4, the GPU machine).
  const std::map<std::string, std::string> default_value = {
      {"--threads", shown(d.n_threads)},
      {"--device", to_string(d.device)},
      {"--mla", to_string(d.mla_attention)},
      {"--kv-cache-gib", shown(d.kv_cache_gib)},
      {"--max-batch", shown(d.max_batch)},
      {"--max-step-tokens", shown(d.max_step_tokens)},
      {"--max-context", shown(d.max_context)},
      {"--block-size", shown(d.block_size)},
      {"--precision", to_string(d.precision)},
      {"--tp", shown(d.tp)},
      {"--ep", shown(d.ep)},
      {"--model", test::default_model_dir()},
  };
  // Flags and options without a default say it in words.
  const std::map<std::string, std::string> described = {
      {"--no-prefix-sharing", std::string("(default: sharing ") + (d.prefix_sharing ? "on" : "off") + ")"},
      {"--no-cuda-graphs", std::string("(default: graphs ") + (d.cuda_graphs ? "on" : "off") + ")"},
      {"--random-weights", "SEED"},
  };
  for (const char* cmd : {"run", "bench", "generate", "logits", "score"}) {
    const CliResult r = mlabench_cli(std::string(cmd) + " --help");
    ASSERT_EQ(r.exit_code, 0) << cmd << "\n" << r.err;
    auto check = [&](const std::string& option, const std::vector<std::string>& forms) {
      const std::string entry = help_entry(r.out, option);
      ASSERT_FALSE(entry.empty()) << cmd << " --help lists no " << option << ":\n" << r.out;
      bool found = false;
      for (const std::string& f : forms) found = found || entry.find(f) != std::string::npos;
      EXPECT_TRUE(found) << cmd << " " << option << ": expected " << forms[0] << " in\n" << entry;
      if (option != "--device") {  // --device takes cuda:N (a GPU index); no other option names a device
        EXPECT_EQ(entry.find("cuda:"), std::string::npos) << option << " still says cuda:\n" << entry;
      }
    };
    for (const auto& [option, value] : default_value) check(option, {"=" + value, "[" + value + "]"});
    for (const auto& [option, text] : described) check(option, {text});
    // The enum flags list their accepted names.
    for (const std::string& name : {to_string(Device::CPU), to_string(Device::CUDA), std::string("cuda:N")})
      EXPECT_NE(help_entry(r.out, "--device").find(name), std::string::npos) << name;
    for (const std::string& name : {to_string(Precision::NATIVE), to_string(Precision::FLOAT32)})
      EXPECT_NE(help_entry(r.out, "--precision").find(name), std::string::npos) << name;
    // CUDA-only options say so; the serving limits apply to both devices.
    EXPECT_NE(help_entry(r.out, "--precision").find("cuda only"), std::string::npos);
    EXPECT_NE(help_entry(r.out, "--no-cuda-graphs").find("cuda only"), std::string::npos);
    EXPECT_EQ(help_entry(r.out, "--max-batch").find("cuda only"), std::string::npos);
  }
  // info reads config.json alone: --model only.
  const CliResult info = mlabench_cli("info --help");
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_FALSE(help_entry(info.out, "--model").empty());
  EXPECT_TRUE(help_entry(info.out, "--max-batch").empty());
}

// The names the CLI accepts and the JSON files record, and their inverses.
TEST(Cli, EngineEnumNamesRoundTrip) {
  for (Device v : {Device::CPU, Device::CUDA}) EXPECT_EQ(device_from_name(to_string(v)), v);
  for (MlaAttention v : {MlaAttention::AUTO, MlaAttention::DECOMPRESSED, MlaAttention::ABSORBED})
    EXPECT_EQ(mla_attention_from_name(to_string(v)), v);
  for (Precision v : {Precision::NATIVE, Precision::FLOAT32}) EXPECT_EQ(precision_from_name(to_string(v)), v);
  EXPECT_EQ(to_string(Device::CPU), "cpu");
  EXPECT_EQ(to_string(Device::CUDA), "cuda");
  EXPECT_EQ(to_string(MlaAttention::AUTO), "auto");
  EXPECT_EQ(to_string(MlaAttention::DECOMPRESSED), "decompressed");
  EXPECT_EQ(to_string(MlaAttention::ABSORBED), "absorbed");
  EXPECT_EQ(to_string(Precision::NATIVE), "native");
  EXPECT_EQ(to_string(Precision::FLOAT32), "f32");
  EXPECT_FALSE(device_from_name("tpu"));
  EXPECT_FALSE(device_from_name("CPU"));
  EXPECT_FALSE(mla_attention_from_name(""));
  EXPECT_FALSE(precision_from_name("bf16"));
}

// An unknown name is a usage error (exit 2) naming it and the accepted names.
TEST(Cli, EnumFlagsRejectUnknownNamesWithTheAcceptedOnes) {
  const std::string gen = "generate --tokens 1 --max-new-tokens 1 ";
  for (const auto& [args, names] : std::vector<std::pair<std::string, std::vector<std::string>>>{
           {"--device tpu", {"tpu", "cpu", "cuda"}},
           {"--mla fast", {"fast", "auto", "decompressed", "absorbed"}},
           {"--precision bf16", {"bf16", "native", "f32"}}}) {
    const CliResult r = mlabench_cli(gen + args);
    EXPECT_FALSE(r.signaled);
    EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.err;
    for (const std::string& name : names) EXPECT_NE(r.err.find(name), std::string::npos) << args << ": " << r.err;
  }
}

// The flags arrive in the options the engine is opened with: bench echoes them (and, without flags, EngineOptions'
// defaults), and --random-weights builds weights from config.json alone.
TEST(Cli, EngineOptionsReachTheEngine) {
  const std::string bench = "bench --batch 2 --prompt 4 --gen 2";
  const CliResult plain = mlabench_cli(bench);
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  const auto pj = nlohmann::json::parse(plain.out.substr(plain.out.rfind("\n{") + 1));
  const EngineOptions d{};
  EXPECT_EQ(pj["device"], to_string(d.device));
  EXPECT_EQ(pj["weights"], "checkpoint");
  EXPECT_EQ(d.max_step_tokens, 0) << "auto";
  EXPECT_EQ(pj["params"]["max_step_tokens"], 4096) << "auto on the CPU engine: 4096-token steps";
  EXPECT_EQ(d.block_size, 0) << "auto";
  EXPECT_EQ(pj["params"]["block_size"], 16) << "auto on the CPU engine: 16-token blocks";
  EXPECT_EQ(pj["params"]["kv_cache_gib"], d.kv_cache_gib);
  EXPECT_EQ(pj["params"]["prefix_sharing"], d.prefix_sharing);
  EXPECT_EQ(pj["params"]["cuda_graphs"], d.cuda_graphs);
  EXPECT_EQ(pj["params"]["precision"], to_string(d.precision));
  EXPECT_EQ(pj["params"]["tp"], d.tp);
  EXPECT_EQ(pj["params"]["ep"], d.ep);
  const CliResult set = mlabench_cli(bench + " --max-batch 16 --max-step-tokens 64 --block-size 32 --kv-cache-gib 0.25 --precision f32 "
                                             "--no-prefix-sharing --no-cuda-graphs --random-weights 7 --threads 1");
  ASSERT_EQ(set.exit_code, 0) << set.err;
  const auto sj = nlohmann::json::parse(set.out.substr(set.out.rfind("\n{") + 1));
  EXPECT_EQ(sj["weights"], "random (seed 7)");
  EXPECT_EQ(sj["params"]["max_step_tokens"], 64);
  EXPECT_EQ(sj["params"]["block_size"], 32);
  EXPECT_EQ(sj["params"]["kv_cache_gib"], 0.25);
  EXPECT_EQ(sj["params"]["prefix_sharing"], false);
  EXPECT_EQ(sj["params"]["cuda_graphs"], false);
  EXPECT_EQ(sj["params"]["precision"], "f32");

  // A folder with config.json alone opens only with --random-weights; two seeds give two models.
  test::TempDir t;
  std::filesystem::copy_file(test::fixture_dir("llama-mha") + "/config.json", t.file("config.json"));
  expect_failure("logits --model " + t.path() + " --tokens 1,2 --out " + t.file("a.npy"), "safetensors");
  for (const char* seed : {"3", "4"}) {
    const CliResult r = mlabench_cli("logits --model " + t.path() + " --tokens 1,2 --random-weights " + seed +
                                     " --out " + t.file(std::string(seed) + ".npy"));
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  EXPECT_NE(npy_read(t.file("3.npy")).data, npy_read(t.file("4.npy")).data);
  expect_failure("logits --model " + t.path() + " --tokens 1 --out x.npy --random-weights -1", "-1", 2);
}

// bench measures prompts no earlier pass (warm-up included) put in the prefix cache: the serving core's reuse
// counter is 0 for every measured pass, which computes every prompt token itself; each row has the passes its
// mode asks for, and every number a row reports says in "measures" what it measures.
TEST(Cli, BenchMeasuresUncachedPromptsAndLabelsItsColumns) {
  test::TempDir t;
  const CliResult r = mlabench_cli("bench --shapes 48x2:prefill,48x2:decode,40x3 --gen 4 --out " + t.file("b.json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err.find("warning"), std::string::npos) << r.err;
  EXPECT_NE(r.out.find("uncached"), std::string::npos) << "the table's legend says what TTFT measures:\n" << r.out;
  const auto j = nlohmann::json::parse(test::read_file(t.file("b.json")));
  EXPECT_EQ(j["schema_version"], 2);
  EXPECT_EQ(j["params"]["shapes"], nlohmann::json::parse(R"(["48x2:prefill", "48x2:decode", "40x3:prefill+decode"])"));
  ASSERT_EQ(j["rows"].size(), 3u);
  for (const auto& row : j["rows"]) {
    const int64_t B = row["batch"], P = row["prompt_tokens"];
    const std::string mode = row["mode"];
    SCOPED_TRACE(mode + " " + std::to_string(P) + "x" + std::to_string(B));
    EXPECT_EQ(row["prefix_tokens_reused"], 0);
    EXPECT_TRUE(row["passes"].contains("warmup"));
    EXPECT_FALSE(row["passes"].contains("warmup_full_prompt")) << "prompts of at most 256 tokens are warmed whole";
    for (const char* pass : {"prefill", "decode"}) {
      ASSERT_EQ(row["passes"].contains(pass), mode.find(pass) != std::string::npos) << pass;
      if (!row["passes"].contains(pass)) continue;
      const auto& p = row["passes"][pass];
      EXPECT_EQ(p["prefix_tokens_reused"], 0) << pass;
      EXPECT_EQ(p["prefill_tokens_computed"], B * P) << pass << ": every prompt token computed";
      EXPECT_EQ(p["decode_tokens"], std::string(pass) == "decode" ? B * (4 - 1) : 0) << pass;
      EXPECT_EQ(p["preemptions"], 0) << pass;
    }
    EXPECT_EQ(row.contains("prefill_tokens_per_s"), mode.find("prefill") != std::string::npos);
    EXPECT_EQ(row.contains("decode_tokens_per_s"), mode.find("decode") != std::string::npos);
    EXPECT_EQ(row.contains("tpot_ms"), mode.find("decode") != std::string::npos);
    if (mode.find("decode") != std::string::npos) {
      // Each row's prompts prefill in one step and none stops early, so every step after the first token decodes
      // the whole batch until all finish together: the full-batch window is the gen - 1 = 3 later steps, and
      // decode_tokens_per_s (to the last token) covers the same steps.
      EXPECT_EQ(row["decode_full_batch_steps"], 3);
      EXPECT_GT(row["decode_full_batch_tokens_per_s"].get<double>(), 0.0);
      EXPECT_DOUBLE_EQ(row["decode_full_batch_tokens_per_s"].get<double>(), row["decode_tokens_per_s"].get<double>());
    }
    ASSERT_TRUE(row.contains("ttft_ms"));
    EXPECT_GT(row["ttft_ms"]["p50"].get<double>(), 0.0);
    for (const auto& [key, _] : row.items()) {
      if (key != "batch" && key != "prompt_tokens" && key != "gen_tokens" && key != "mode" && key != "passes" &&
          key != "prefill_only_ttft_ms_p50") {
        EXPECT_TRUE(j["measures"].contains(key)) << "no \"measures\" entry for " << key;
      }
    }
  }
  EXPECT_NE(j["measures"]["ttft_ms"].get<std::string>().find("uncached"), std::string::npos);
  // The same prompt twice is served from the cache the second time: the counter the bench checks is live.
  auto engine = Engine::open({.model_dir = test::default_model_dir()}).value();
  std::vector<int32_t> prompt(100);
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<int32_t>(7 * i % 2000);
  const GenerateResult first = engine->generate(prompt, {.max_new_tokens = 1}).value();
  const GenerateResult again = engine->generate(prompt, {.max_new_tokens = 1}).value();
  EXPECT_EQ(first.prefix_tokens_reused, 0);
  EXPECT_EQ(again.prefix_tokens_reused, 96) << "six full blocks of 16 (the last token is always computed)";
  EXPECT_EQ(engine->stats().prefix_tokens_reused, 96);
  EXPECT_EQ(engine->stats().prefill_tokens, 100 + 4);
}

// Prompts prefilled over several steps (256-token steps for four 200-token prompts) start decoding at different
// steps, so they finish at different steps too: the full-batch window (from the last first token to the first
// sequence's last token) holds fewer than gen - 1 steps, each of them the whole batch.
TEST(Cli, BenchFullBatchWindowEndsAtTheFirstFinish) {
  test::TempDir t;
  const CliResult r =
      mlabench_cli("bench --shapes 200x4:decode --gen 8 --max-step-tokens 210 --out " + t.file("f.json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(test::read_file(t.file("f.json")));
  ASSERT_EQ(j["rows"].size(), 1u);
  const auto& row = j["rows"][0];
  EXPECT_GT(row["passes"]["decode"]["steps"].get<int64_t>(), 8) << "the prefill took more than one step";
  const int64_t steps = row["decode_full_batch_steps"];
  EXPECT_GE(steps, 1);
  EXPECT_LT(steps, 8 - 1) << row.dump(1);
  EXPECT_GT(row["decode_full_batch_tokens_per_s"].get<double>(), 0.0);
}

// bench JSON records the environment variables that change what the engine runs (MLABENCH_*, NCCL_*), and
// MLABENCH_TIMING_SKIP, whose outputs are wrong by design, runs nowhere but a cuda bench: refused by name on the CPU
// bench and by every command that reports outputs.
TEST(Cli, BenchRecordsTheEngineEnvironmentAndTimingSkipStaysInGpuBench) {
  test::TempDir t;
  const CliResult r = mlabench_cli("bench --batch 1 --prompt 8 --gen 2 --out " + t.file("e.json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto plain = nlohmann::json::parse(test::read_file(t.file("e.json")));
  ASSERT_TRUE(plain.contains("environment")) << plain.dump(1);
  EXPECT_FALSE(plain["environment"].contains("MLABENCH_SKINNY_GEMM")) << "only variables that are set";
  const CliResult set = mlabench_cli("bench --batch 1 --prompt 8 --gen 2 --out " + t.file("s.json"),
                                     "MLABENCH_SKINNY_GEMM=0 NCCL_DEBUG=WARN MLABENCH_API_KEY=sk-secret "
                                     "MLABENCH_HF_TOKEN=hf-secret MLABENCH_RAW=\"$(printf '\\377')\"");
  ASSERT_EQ(set.exit_code, 0) << set.err;
  const auto env = nlohmann::json::parse(test::read_file(t.file("s.json")))["environment"];
  EXPECT_EQ(env.value("MLABENCH_SKINNY_GEMM", ""), "0") << env.dump();
  EXPECT_EQ(env.value("NCCL_DEBUG", ""), "WARN") << env.dump();
  EXPECT_EQ(env.dump().find("secret"), std::string::npos) << "a credential recorded: " << env.dump();
  // A value that is not UTF-8 is recorded as such (JSON holds UTF-8 only), not a failure at the run's end.
  EXPECT_EQ(env.value("MLABENCH_RAW", ""), "(not valid UTF-8: byte 0 is 0xFF)") << env.dump();
  const CliResult cpu = mlabench_cli("bench --batch 1 --prompt 8 --gen 2", "MLABENCH_TIMING_SKIP=combine");
  EXPECT_EQ(cpu.exit_code, 1) << cpu.out;
  EXPECT_NE(cpu.err.find("leaves nothing out"), std::string::npos) << cpu.err;
  const CliResult gen = mlabench_cli("generate --prompt hello --max-new-tokens 2", "MLABENCH_TIMING_SKIP=combine");
  EXPECT_EQ(gen.exit_code, 1) << gen.out;
  EXPECT_NE(gen.err.find("outputs would be wrong"), std::string::npos) << gen.err;
}

// An overlong --gen or prompt (CLI11 clamps it to INT64_MAX) is refused by name before prompt + gen could wrap.
TEST(Cli, BenchRefusesOverlongGenAndPrompt) {
  const std::pair<const char*, const char*> cases[] = {
      {"--shapes 48x2:decode --gen 99999999999999999999", "past 4194304 positions"},
      {"--batch 1 --prompt 99999999999999999999", "past 4194304 positions"},
      {"--shapes 99999999999999999999x1:prefill", "--shapes prompt"}};  // the shape parser's own refusal
  for (const auto& [args, says] : cases) {
    SCOPED_TRACE(args);
    const CliResult r = mlabench_cli(std::string("bench ") + args);
    EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
    EXPECT_NE(r.err.find(says), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find("-9223372036854775"), std::string::npos) << "a wrapped sum: " << r.err;
  }
}

// Long prompts (long for the bundled model's 2,560-token window): the bench sizes the window to its longest shape (prompt + new tokens), a prompt longer than the
// step is prefilled in chunks, and a shape the model or --max-context cannot hold is refused with the flag to use.
// --batch max (the paper's maximum generation throughput): the largest batch whose sequences all fit the KV cache,
// a sweep up to it, and the peak. A 0.0005 GiB cache on the bundled model holds 512 tokens; prompt 16 + gen 8 take
// two 16-token blocks, so 16 sequences fit exactly and run without a pre-emption.
TEST(Cli, BenchBatchMaxSweepsUpToWhatTheCacheHolds) {
  test::TempDir t;
  const CliResult r =
      mlabench_cli("bench --batch 2,max --prompt 16 --gen 8 --kv-cache-gib 0.0005 --out " + t.file("m.json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("maximum generation throughput"), std::string::npos) << r.out;
  const auto j = nlohmann::json::parse(test::read_file(t.file("m.json")));
  ASSERT_TRUE(j.contains("max_generation_throughput")) << j.dump(1);
  const auto& m = j["max_generation_throughput"];
  const int64_t tokens = m["kv_cache_tokens"], per_seq = m["tokens_per_sequence"], largest = m["largest_batch"];
  EXPECT_EQ(per_seq, 32) << "prompt 16 + gen 8 in whole 16-token blocks";
  EXPECT_GT(tokens, 0);
  EXPECT_EQ(largest, tokens / per_seq);
  ASSERT_EQ(m["sweep"].size(), 4u) << m.dump(1);
  EXPECT_EQ(m["sweep"].back()["batch"], largest);
  double peak = 0;
  int64_t prev = 0;
  for (const auto& s : m["sweep"]) {
    EXPECT_GT(s["batch"].get<int64_t>(), prev) << "ascending, distinct";
    prev = s["batch"];
    EXPECT_EQ(s["preemptions"], 0) << "every batch of the sweep fits the cache at once";
    peak = std::max(peak, s["decode_tokens_per_s"].get<double>());
  }
  EXPECT_DOUBLE_EQ(m["generated_tokens_per_s"].get<double>(), peak);
  // Rows: the plain batch 2 (both passes), then the sweep (decode passes), each marked.
  ASSERT_EQ(j["rows"].size(), 5u);
  EXPECT_FALSE(j["rows"][0].contains("in_max_sweep"));
  for (size_t i = 1; i < 5; ++i) {
    EXPECT_EQ(j["rows"][i]["in_max_sweep"], true);
    EXPECT_EQ(j["rows"][i]["mode"], "decode");
  }
  // A cache that cannot hold one sequence is refused by name, before any pass.
  const CliResult small = mlabench_cli("bench --batch max --prompt 40 --gen 8 --kv-cache-gib 0.00004");  // 2 blocks
  EXPECT_NE(small.exit_code, 0);
  EXPECT_NE(small.err.find("--batch max"), std::string::npos) << small.err;
  EXPECT_NE(small.err.find("HINT"), std::string::npos) << small.err;
  // The sweep is one placeholder: naming it twice would run it twice.
  const CliResult twice = mlabench_cli("bench --batch max,max --prompt 16 --gen 8 --kv-cache-gib 0.0005");
  EXPECT_NE(twice.exit_code, 0);
  EXPECT_NE(twice.err.find("max is named twice"), std::string::npos) << twice.err;
}

// Under --dp-attention each of the 2 ranks has its own 512-token cache (the same --kv-cache-gib), holding its own
// sequences whole: twice the batch of one cache, still without a pre-emption.
TEST(Cli, BenchBatchMaxUnderDpAttentionCountsEachRanksCache) {
  test::TempDir t;
  const CliResult r = mlabench_cli("bench --batch max --prompt 16 --gen 8 --kv-cache-gib 0.0005 --tp 2 --dp-attention "
                                   "--out " + t.file("m.json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto m = nlohmann::json::parse(test::read_file(t.file("m.json")))["max_generation_throughput"];
  EXPECT_EQ(m["kv_cache_partitions"], 2) << m.dump(1);
  EXPECT_EQ(m["largest_batch"], 2 * (m["kv_cache_tokens"].get<int64_t>() / 2 / 32)) << m.dump(1);
  EXPECT_GE(m["largest_batch"].get<int64_t>(), 32) << "each rank's cache holds 16 sequences of 32 tokens";
  for (const auto& s : m["sweep"]) EXPECT_EQ(s["preemptions"], 0) << s.dump(1);
}

// --weights-dtype fp8 is never silent: bench records it (and the cache's dtype) in its params.
TEST(Cli, BenchRecordsFp8Weights) {
  test::TempDir t;
  for (const char* d : {"auto", "fp8"}) {
    const CliResult r = mlabench_cli(std::string("bench --batch 1 --prompt 8 --gen 2 --weights-dtype ") + d +
                                     " --out " + t.file(std::string(d) + ".json"));
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  const auto a = nlohmann::json::parse(test::read_file(t.file("auto.json")));
  const auto b = nlohmann::json::parse(test::read_file(t.file("fp8.json")));
  EXPECT_EQ(a["params"]["weights_dtype"], "auto");
  EXPECT_EQ(b["params"]["weights_dtype"], "fp8");
  EXPECT_EQ(a["params"]["kv_cache_dtype"], "auto");
  EXPECT_FALSE(a["kv_cache"].contains("fp8_bytes_per_token"));
  // The FP8 cache: its bytes as a GPU holds them beside the paper's one byte an element. The bundled model: 4 layers
  // of kv_lora 48 (one 4-byte scale, padded to 16 bytes as each part of a slot is) and 16 RoPE values in BF16.
  const CliResult kv =
      mlabench_cli("bench --batch 1 --prompt 8 --gen 2 --kv-cache-dtype fp8 --out " + t.file("kv.json"));
  ASSERT_EQ(kv.exit_code, 0) << kv.err;
  const auto k = nlohmann::json::parse(test::read_file(t.file("kv.json")));
  EXPECT_EQ(k["kv_cache"]["dtype"], "fp8");
  EXPECT_EQ(k["kv_cache"]["fp8_bytes_per_token"], 4 * (48 + 16 + 2 * 16));
  EXPECT_EQ(k["kv_cache"]["fp8_bytes_per_token_one_byte_an_element"], 4 * (48 + 16));
  const CliResult bad = mlabench_cli("bench --batch 1 --prompt 8 --gen 2 --weights-dtype e5m2");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("auto, fp8"), std::string::npos) << bad.err;
}

// --profile on the CPU engine: a warning that names the device, the run goes on, the rows carry no profile.
TEST(Cli, BenchProfileOnTheCpuSaysThereIsNone) {
  test::TempDir t;
  const CliResult r = mlabench_cli("bench --batch 1 --prompt 16 --gen 2 --profile --out " + t.file("b.json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("no phase timer"), std::string::npos) << r.err;
  const auto j = nlohmann::json::parse(test::read_file(t.file("b.json")));
  EXPECT_EQ(j["params"]["profile"], true);
  EXPECT_FALSE(j["rows"][0].contains("profile"));
}

// A prompt past 256 tokens is also warmed at its own length, one step of it at most, on one sequence.
TEST(Cli, BenchWarmsLongPromptsAtTheirLength) {
  test::TempDir t;
  const CliResult r = mlabench_cli("bench --shapes 300x2:prefill,600x1:prefill --gen 2 --max-step-tokens 400 --out " +
                                   t.file("b.json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(test::read_file(t.file("b.json")));
  ASSERT_EQ(j["rows"].size(), 2u);
  const auto& w0 = j["rows"][0]["passes"]["warmup_full_prompt"];
  EXPECT_EQ(w0["prefill_tokens_computed"], 300) << "one whole 300-token prompt";
  EXPECT_EQ(j["rows"][1]["passes"]["warmup_full_prompt"]["prefill_tokens_computed"], 400) << "one step of 600";
  EXPECT_EQ(j["rows"][0]["passes"]["warmup"]["prefill_tokens_computed"], 2 * 256) << "the batch at 256 tokens";
  EXPECT_EQ(j["rows"][0]["passes"]["prefill"]["prefix_tokens_reused"], 0) << "the warm-up prompts are not reused";
}

// The prompts are long (1,600 tokens, past the 512 of the default shapes) and prefilled in 7 chunks. The short mode
// (label slow) halves the prompts and the chunk, the same 7 chunks: the bench is most of the full size's 14 s under
// ASan, most of that the prefill's attention, quadratic in the prompt. A chunk is at least --max-batch (256 by
// default), so the short mode also sets --max-batch 2, the largest batch of its shapes.
TEST(Cli, BenchLongShapesSizeTheWindowAndChunkThePrefill) {
  test::TempDir t;
  const bool short_run = test::short_mode();
  const int64_t p = short_run ? 800 : 1600, chunk = short_run ? 128 : 256;
  const CliResult r = mlabench_cli(fmt::format("bench --shapes {}x1:prefill,{}x2:decode --gen 8 --max-step-tokens {}{} "
                                               "--warmup 0 --out {}",
                                               p, p / 2, chunk, short_run ? " --max-batch 2" : "", t.file("b.json")));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(test::read_file(t.file("b.json")));
  EXPECT_EQ(j["params"]["max_context"], p + 1) << "the longest shape: the prompt and one new token";
  EXPECT_EQ(j["params"]["warmup"], 0);
  const auto& prefill = j["rows"][0]["passes"]["prefill"];
  EXPECT_EQ(prefill["prefill_tokens_computed"], p);
  EXPECT_GE(prefill["steps"], 7) << p << " tokens in chunks of at most " << chunk;
  EXPECT_EQ(j["rows"][1]["passes"]["decode"]["prefill_tokens_computed"], p);
  EXPECT_FALSE(j["rows"][0]["passes"].contains("warmup"));
  // The report reads it beside a schema 1 baseline: rows told apart by batch and prompt, a missing pass n/a, the
  // old file's TTFT marked as cached.
  const std::string old_bench = std::string(MLABENCH_TEST_DATA) + "/../../reports/baselines/"
                                "2026-12-02_h200_5cccd0a_bench_dsv2_lite.json";
  const CliResult md = mlabench_cli("report long=" + t.file("b.json") + " old=" + old_bench + " --format md");
  ASSERT_EQ(md.exit_code, 0) << md.err;
  EXPECT_NE(md.out.find(fmt::format("| long | 1 | {} | ", p)), std::string::npos) << md.out;
  EXPECT_NE(md.out.find(" | n/a | "), std::string::npos) << "the prefill-only row has no decode tok/s\n" << md.out;
  EXPECT_NE(md.out.find(" (cached) | "), std::string::npos) << md.out;
  const CliResult csv = mlabench_cli("report long=" + t.file("b.json") + " --format csv");
  ASSERT_EQ(csv.exit_code, 0) << csv.err;
  EXPECT_NE(csv.out.find(fmt::format(",batch=1;prompt={},prefill_tokens_per_s,", p)), std::string::npos) << csv.out;
  const CliResult html = mlabench_cli("report long=" + t.file("b.json") + " old=" + old_bench + " --out " +
                                      t.file("r.html"));
  ASSERT_EQ(html.exit_code, 0) << html.err;
  const std::string page = test::read_file(t.file("r.html"));
  EXPECT_NE(page.find(fmt::format("prefill tokens/s, batch 1, prompt {}", p)), std::string::npos);
  EXPECT_NE(page.find("decode tokens/s, batch 64, prompt 512"), std::string::npos);
  EXPECT_NE(page.find("Bench schema 1"), std::string::npos);
  EXPECT_NE(page.find("What each column measures"), std::string::npos);

  expect_failure("bench --shapes 2600x1:prefill", "max_position_embeddings 2560");
  expect_failure("bench --shapes 1000x1 --gen 8 --max-context 900", "--max-context is 900");
  expect_failure("bench --shapes 1000", "PROMPTxBATCH");
  expect_failure("bench --shapes 1000x1:fast", "prefill, decode or both");
  expect_failure("bench --batch 2,x", "positive integer");
  // An --out nobody can write is refused before the engine starts (no table printed), not after a long run.
  const CliResult unwritable = mlabench_cli("bench --shapes 64x1 --gen 2 --out " + t.file("no-such-dir/b.json"));
  EXPECT_EQ(unwritable.exit_code, 1) << unwritable.err;
  EXPECT_NE(unwritable.err.find("cannot open it for writing"), std::string::npos) << unwritable.err;
  EXPECT_EQ(unwritable.out.find("# bench columns"), std::string::npos) << "nothing measured first:\n" << unwritable.out;
}

// Arguments that cannot go into JSON (run.json records the command line) are refused before any work, with the
// argument and byte named: a run used to score everything and then abort writing results.json. U+FFFD itself is
// valid text.
TEST(Cli, ArgumentsThatAreNotUtf8AreRefusedBeforeAnyWork) {
  test::TempDir t;
  const std::string bad_dir = t.file("out\xff");
  const CliResult run = mlabench_cli("run --tasks gsm8k --limit 1 --offline --output '" + bad_dir + "'");
  EXPECT_EQ(run.exit_code, 2) << run.err;
  EXPECT_NE(run.err.find("is not valid UTF-8"), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("0xFF"), std::string::npos) << run.err;
  EXPECT_FALSE(std::filesystem::exists(bad_dir)) << "nothing written";
  expect_failure("generate --prompt hi --chat --system 'a\xe2\x82' --max-new-tokens 1", "argument 6 is not valid UTF-8", 2);
  expect_failure("generate --prompt hi --stop '\xc0\xaf' --max-new-tokens 1", "(byte 0 is 0xC0)", 2);
  const CliResult ok = mlabench_cli("generate --prompt '\xef\xbf\xbd' --max-new-tokens 1");
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
}

// Sampling options outside their ranges are usage errors naming the option (temperature inf used to sample noise;
// seed -1 wrapped to 2^64 - 1).
TEST(Cli, SamplingOptionsOutOfRangeAreRefused) {
  expect_failure("generate --prompt hi --temperature inf --max-new-tokens 1", "--temperature", 2);
  expect_failure("generate --prompt hi --temperature 1e9 --max-new-tokens 1", "not in range", 2);
  expect_failure("generate --prompt hi --seed -1 --max-new-tokens 1", "--seed", 2);
  test::TempDir t;
  expect_failure("run --tasks gsm8k --limit 1 --offline --gen-kwargs temperature=inf --output " + t.file("run"),
                 "accepted range");
  EXPECT_FALSE(std::filesystem::exists(t.file("run"))) << "refused before the run folder is made";
}

// Whatever a command body throws becomes "error: ..." and exit code 1, never std::terminate's abort.
TEST(Cli, AnyExceptionOfACommandIsAnErrorNotAnAbort) {
  int code = -1;
  testing::internal::CaptureStderr();
  cli::run(&code, [] { throw std::runtime_error("a json type_error no check anticipated"); });
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(code, 1);
  EXPECT_NE(err.find("error: a json type_error no check anticipated. HINT:"), std::string::npos) << err;
  testing::internal::CaptureStderr();
  cli::run(&code, [] { throw std::bad_alloc(); });
  err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(code, 1);
  EXPECT_NE(err.find("error: out of memory. HINT:"), std::string::npos) << err;
  cli::run(&code, [] {});
  EXPECT_EQ(code, 0);
}

// --max-context reaches the engine on the CPU too: it bounds every request's positions.
TEST(Cli, MaxContextBoundsARequest) {
  // 3 prompt + 200 new positions do not fit a 100-position engine (the bundled model's window is 2,560).
  expect_failure("generate --tokens 0,5,9 --max-context 100 --max-new-tokens 200", "positions");
  const CliResult fits = mlabench_cli("generate --tokens 0,5,9 --max-context 100 --max-new-tokens 2");
  EXPECT_EQ(fits.exit_code, 0) << fits.err;
}

TEST(Cli, BadInputGivesAClearErrorAndNonZeroExit) {
  test::TempDir t;
  const std::string src = test::fixture_dir("llama-mha");
  auto model_copy = [&](const std::string& name) {
    const std::string d = t.file(name);
    std::filesystem::create_directory(d);
    std::filesystem::copy_file(src + "/config.json", d + "/config.json");
    std::filesystem::copy_file(src + "/model.safetensors", d + "/model.safetensors");
    return d;
  };
  const std::string ok = " --tokens 1,2 --out " + t.file("x.npy");

  const std::string truncated = model_copy("truncated");
  std::filesystem::resize_file(truncated + "/model.safetensors",
                               std::filesystem::file_size(src + "/model.safetensors") - 100);
  expect_failure("logits --model " + truncated + ok, "out of range");

  const std::string long_header = model_copy("long_header");
  {
    std::fstream f(long_header + "/model.safetensors", std::ios::in | std::ios::out | std::ios::binary);
    const uint64_t n = 1ull << 40;
    f.write(reinterpret_cast<const char*>(&n), 8);
  }
  expect_failure("logits --model " + long_header + ok, "longer than the file");

  const std::string overlap = model_copy("overlap");
  {  // two tensors over the same bytes
    auto ck = SafetensorsFile::open(src + "/model.safetensors");
    nlohmann::ordered_json h;
    for (const auto& e : ck->entries())
      h[e.name] = {{"dtype", std::string(dtype_name(e.dtype))}, {"shape", e.shape}, {"data_offsets", {e.begin, e.end}}};
    h["model.norm.weight"]["data_offsets"] = {0, 128};
    std::string header = h.dump();
    std::ofstream f(overlap + "/model.safetensors", std::ios::binary);
    const uint64_t n = header.size();
    f.write(reinterpret_cast<const char*>(&n), 8);
    f << header << std::string(ck->file_size(), '\0');
  }
  expect_failure("logits --model " + overlap + ok, "overlap");

  const std::string missing = model_copy("missing");
  {
    auto ck = SafetensorsFile::open(src + "/model.safetensors");
    std::vector<std::pair<std::string, TensorView>> keep;
    for (const auto& e : ck->entries())
      if (e.name != "lm_head.weight") keep.emplace_back(e.name, ck->view(e));
    safetensors_write(missing + "/model.safetensors.tmp", keep);
  }
  std::filesystem::rename(missing + "/model.safetensors.tmp", missing + "/model.safetensors");
  expect_failure("logits --model " + missing + ok, "no tensor 'lm_head.weight' (expected shape [384, 64]");

  const std::string arch = model_copy("arch");
  {
    auto j = test::read_json(arch + "/config.json");
    j["model_type"] = "gpt2";
    std::ofstream(arch + "/config.json") << j.dump();
  }
  expect_failure("info --model " + arch, "'model_type' is \"gpt2\"; accepted values: deepseek_v2, llama");
  expect_failure("logits --model " + arch + ok, "'model_type'");

  expect_failure("logits --model " + src + " --tokens 1,384 --out " + t.file("x.npy"),
                 "token id 384 at position 1 is out of range");
  expect_failure("generate --model " + src + " --tokens 1,x", "\"x\" is not one");
  expect_failure("generate --model " + src + " --tokens 99999999999", "is not one");
  expect_failure("info --model " + t.file("nowhere"), "cannot read");
  expect_failure("logits --model " + src + " --tokens 1 --out " + t.file("no/dir/x.npy"), "cannot open");
  expect_failure("logits --model " + src + " --tokens 1 --out x.npy --device tpu", "tpu", 2);
  expect_failure("logits --model " + src + " --tokens 1 --out x.npy --device cuda --precision f64", "f64", 2);
#if !MLABENCH_HAS_CUDA
  expect_failure("logits --model " + src + " --tokens 1 --out x.npy --device cuda", "built without CUDA");
#endif
  expect_failure("frobnicate", "subcommand", 2);
  expect_failure("run --tasks nosuchtask --backend replay:" + t.file("none.jsonl"), "none.jsonl");
  expect_failure("run --tasks nosuchtask --output " + t.file("run"), "nosuchtask");
  expect_failure("run --tasks mmlu --model " + src, "has no tokenizer");
  expect_failure("fetch nosuchdataset --offline --cache-dir " + t.file("cache"), "nosuchdataset");
}

}  // namespace
}  // namespace mlabench
