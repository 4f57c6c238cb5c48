// Tokenizer throughput: encodes every {"text": ...} line of a JSONL file, single-threaded and on all cores,
// and prints MB/s and tokens/s as JSON (one line). tools/gpu/bench_tokenizer.sh runs it side by side with
// Hugging Face `tokenizers` on the same file.
//   bench_tokenizer --tokenizer DIR --jsonl FILE [--threads N] [--repeat R]
#include <omp.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench/bench_args.h"
#include "mlabench/tokenizer.h"

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

}  // namespace

static int run_bench(int argc, char** argv) {
  using mlabench::bench::parse_count;
  std::string dir, path;
  int threads = 0, repeat = 3;
  constexpr const char* kUsage = "usage: bench_tokenizer --tokenizer DIR --jsonl FILE [--threads N] [--repeat R]\n";
  for (int i = 1; i < argc; i += 2) {
    const std::string a = argv[i];
    if (i + 1 >= argc || (a != "--tokenizer" && a != "--jsonl" && a != "--threads" && a != "--repeat")) {
      std::fprintf(stderr, "%s: %s. %s", a.c_str(), i + 1 >= argc ? "no value" : "not an option", kUsage);
      return 2;
    }
    if (a == "--tokenizer") dir = argv[i + 1];
    if (a == "--jsonl") path = argv[i + 1];
    if (a == "--threads" && !parse_count("--threads", argv[i + 1], 0, 4096, &threads)) return 2;
    if (a == "--repeat" && !parse_count("--repeat", argv[i + 1], 1, 1000, &repeat)) return 2;
  }
  if (dir.empty() || path.empty()) {
    std::fprintf(stderr, "%s", kUsage);
    return 2;
  }
  auto loaded = mlabench::Tokenizer::load(dir);
  if (!loaded.ok()) {
    std::fprintf(stderr, "error: %s\n", loaded.error().what());
    return 1;
  }
  const mlabench::Tokenizer& tok = *loaded.value();
  std::vector<std::string> texts;
  size_t bytes = 0;
  std::ifstream in(path);
  int64_t line_no = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_no;
    try {
      texts.push_back(nlohmann::json::parse(line).at("text").get<std::string>());
    } catch (const nlohmann::json::exception& e) {
      std::fprintf(stderr, "error: %s:%lld: %s. HINT: each line a JSON object with a string \"text\"\n", path.c_str(),
                   static_cast<long long>(line_no), e.what());
      return 1;
    }
    bytes += texts.back().size();
  }
  if (texts.empty()) {
    std::fprintf(stderr, "error: no {\"text\": ...} lines read from %s. HINT: pass a JSONL file that exists\n",
                 path.c_str());
    return 1;
  }
  if (threads > 0) omp_set_num_threads(threads);
  const int all = omp_get_max_threads();
  // Best of `repeat` runs each; the first single-threaded run warms nothing that later ones reuse beyond the
  // per-thread BPE word cache, which is part of the design being measured (tokenizers has one too).
  auto run = [&](bool parallel) {
    double best = 1e30;
    size_t n_tokens = 0;
    for (int r = 0; r < repeat; ++r) {
      std::vector<size_t> counts(texts.size());
      const double t0 = now();
      if (parallel) {
#pragma omp parallel for schedule(dynamic, 8)
        for (size_t i = 0; i < texts.size(); ++i) counts[i] = tok.encode(texts[i], false).size();
      } else {
        for (size_t i = 0; i < texts.size(); ++i) counts[i] = tok.encode(texts[i], false).size();
      }
      best = std::min(best, now() - t0);
      n_tokens = 0;
      for (size_t c : counts) n_tokens += c;
    }
    return std::make_pair(best, n_tokens);
  };
  const auto [t1, n1] = run(false);
  const auto [tn, nn] = run(true);
  nlohmann::ordered_json j = {{"implementation", "mlabench"},
                              {"tokenizer", dir},
                              {"documents", texts.size()},
                              {"bytes", bytes},
                              {"tokens", n1},
                              {"single_thread_mb_s", bytes / t1 / 1e6},
                              {"single_thread_tokens_s", n1 / t1},
                              {"threads", all},
                              {"all_threads_mb_s", bytes / tn / 1e6},
                              {"all_threads_tokens_s", nn / tn}};
  std::printf("%s\n", j.dump().c_str());
  return n1 == nn ? 0 : 1;
}

int main(int argc, char** argv) { return mlabench::bench::main_guarded("bench_tokenizer", run_bench, argc, argv); }
