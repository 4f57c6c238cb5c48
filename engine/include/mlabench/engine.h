// mlabench engine: the one public header.
//
// An Engine runs one model (DeepSeek-V2 / V2-Lite with MLA + DeepSeekMoE, or a Llama-architecture MHA/GQA
// model) from a Hugging Face style folder: config.json plus safetensors weights (one file or shards with
// model.safetensors.index.json; experts one tensor each or fused), or from config.json alone with random
// weights. It runs on the CPU reference engine (float32) or on the CUDA engine (BF16, or float32 for parity);
// both go through one serving core (scheduler, paged KV cache, prefix sharing, continuous batching).
//
// Expected failures (missing or malformed files, inconsistent config, token ids out of range) come back as
// Result errors whose message says what was checked and, after "HINT:", what to do. Nothing here aborts on
// bad input.
//
//   auto engine = mlabench::Engine::open({.model_dir = "tests/data/models/mlabench-tiny-dsv2"});
//   if (!engine) { fprintf(stderr, "%s\n", engine.error().what()); return 1; }
//   auto out = (*engine)->generate(prompt, {.max_new_tokens = 16});
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mlabench/result.h"
#include "mlabench/tokenizer.h"

namespace mlabench {

enum class Device { CPU, CUDA };

/// How MLA attends. AUTO: the decompressed form (per-head K/V rebuilt from the latent cache with kv_b_proj)
/// for prefill chunks, the absorbed form (W_UK folded into the query, W_UV applied after attention: MQA over the
/// 576-wide latent at V2 shapes) for decode steps, as vLLM/SGLang do (on both devices; the GPU engine always).
/// The other two force one form everywhere; both give the same logits to float32 rounding.
enum class MlaAttention { AUTO, DECOMPRESSED, ABSORBED };

/// Arithmetic of the GPU engine (the CPU engine always computes in float32 on the stored weights).
/// NATIVE: GEMM operands in the checkpoint's dtype (the activations rounded to it) with float32 accumulation, a
/// BF16 KV cache, tensor-core attention: serving speed, what vLLM/SGLang do. FLOAT32: weights widened to float32
/// once on upload (exact), float32 GEMMs (no TF32), a float32 KV cache and float32 attention: the CPU engine's
/// numerics, for parity with the float64 reference; twice the weight and cache memory, slower.
enum class Precision { NATIVE, FLOAT32 };

/// How the engine holds its weight matrices (issue 20). AUTO: as stored. FP8: e4m3 with one float32 scale per
/// 128 x 128 block (DeepSeek-V3's layout, engine/core/fp8.h), quantised on load; every projection and expert except
/// the embedding, the output head and the router, whose activations go through e4m3 in 1 x 128 groups as they enter
/// it (W8A8, as DeepSeek-V3's FP8 GEMMs). The CPU engine only, so far.
enum class WeightsDtype { AUTO, FP8 };

/// How the KV cache holds its values (issue 20). AUTO: the engine's own (float32 on the CPU; BF16, or float32 under
/// --precision f32, on CUDA). FP8: e4m3 with float32 scales, FlashMLA's layout for MLA (the latent in groups of 128
/// values with one scale each, the RoPE part in BF16: 656 B a layer at V2 shapes) and one scale per head's key and
/// value otherwise; attention reads the cached values, the ones just written included. The CPU engine only, so far.
enum class KvCacheDtype { AUTO, FP8 };

/// The names the CLI and the result files use: "cpu" | "cuda"; "auto" | "decompressed" | "absorbed";
/// "native" | "f32"; "auto" | "fp8". The *_from_name functions invert them (std::nullopt for any other name).
std::string to_string(Device d);
std::string to_string(MlaAttention m);
std::string to_string(Precision p);
std::string to_string(WeightsDtype w);
std::string to_string(KvCacheDtype k);
std::optional<Device> device_from_name(std::string_view name);
std::optional<MlaAttention> mla_attention_from_name(std::string_view name);
std::optional<Precision> precision_from_name(std::string_view name);
std::optional<WeightsDtype> weights_dtype_from_name(std::string_view name);
std::optional<KvCacheDtype> kv_cache_dtype_from_name(std::string_view name);
/// A --device value: "cpu", "cuda" (GPU 0) or "cuda:N" (GPU N, N >= 0 in decimal); nullopt for anything else.
struct DeviceSpec {
  Device device = Device::CPU;
  int index = 0;
};
std::optional<DeviceSpec> device_spec_from_name(std::string_view name);
/// \brief Throws Error unless 0 <= index < count (the CUDA devices this process sees), naming the count and
/// CUDA_VISIBLE_DEVICES; the GPU engine calls it before cudaSetDevice(index).
void check_cuda_device_index(int index, int count);

/// Every option of the engine, from the CLI (cli/cli_model.cpp binds its flags to these fields) to the
/// runners; the defaults are written here and nowhere else (derived sizes: engine/serving/limits.h).
struct EngineOptions {
  std::string model_dir{};  ///< folder with config.json (and weights unless random_weights_seed is set)
  std::optional<uint64_t> random_weights_seed{};  ///< build weights from config.json alone (see docs/engine.md)
  Device device = Device::CPU;
  int device_index = 0;  ///< --device cuda:N: the GPU the engine selects (cudaSetDevice) before allocating
  MlaAttention mla_attention = MlaAttention::AUTO;  ///< the CPU engine's MLA form (the GPU engine takes AUTO's)
  int n_threads = 0;  ///< CPU threads; 0 = all cores
  // The serving core, both devices (docs/engine.md "The serving core").
  double kv_cache_gib = 0;  ///< KV cache budget; 0 = on CUDA the memory left after weights and buffers less 1 GiB,
                            ///< on the CPU a quarter of the RAM (allocated block by block as it fills)
  int64_t max_batch = 256;        ///< sequences decoded together (continuous batching)
  /// New tokens per step (at least max_batch): longer prompts are prefilled in chunks of it. 0 = auto: 16384 on CUDA
  /// (a step's GEMMs at the tensor-core rate, MLA's prefix decompressed 8 times for a 128K prompt instead of 32;
  /// ~5 GB of step buffers for V2-Lite), 4096 on the CPU.
  int64_t max_step_tokens = 0;
  int64_t max_context = 0;  ///< longest sequence served; 0 = max_position_embeddings (capped at 32768 on CUDA)
  /// KV cache block, tokens; 0 = auto: 64 for an MLA model on CUDA (the Hopper decode kernel then copies a 64-key
  /// tile as one TMA box a column block, as FlashMLA's 64-token pages; 16-token blocks take four), else 16.
  int64_t block_size = 0;
  bool prefix_sharing = true;     ///< reuse cached blocks of a shared prompt prefix
  // The GPU engine only.
  bool cuda_graphs = true;  ///< replay CUDA graphs for decode steps (every batch size)
  Precision precision = Precision::NATIVE;
  WeightsDtype weights_dtype = WeightsDtype::AUTO;  ///< --weights-dtype: as stored, or FP8 blocks
  KvCacheDtype kv_cache_dtype = KvCacheDtype::AUTO;  ///< --kv-cache-dtype: the engine's own, or FP8
  /// Decode attention's split-KV plan from each sequence's own length (fixed_kv_splits, kernel_params.h), so a
  /// sequence's attention output has the same bits in any batch; slower where the throughput plan would split
  /// differently (docs/engine.md, "Batch invariance"). The GEMMs stay batch-dependent. The CPU engine's attention is
  /// batch-invariant either way.
  bool batch_invariant_attention = false;
  // Several ranks (docs/engine.md "Several GPUs"; engine/parallel/shard_plan.h): max(tp, ep) of them, one step plan.
  int tp = 1;                 ///< tensor parallelism: heads, FFN columns and vocabulary rows split over tp ranks
  int ep = 1;                 ///< expert parallelism: routed experts whole, n_routed_experts / ep to a rank
  bool dp_attention = false;  ///< data-parallel attention: each sequence on one rank (the CPU only, so far)
};

/// What `mlabench info` prints, computed from config.json alone (no weights needed).
struct ModelSummary {
  std::string model_dir;
  std::string architecture;  ///< "DeepseekV2ForCausalLM" | "LlamaForCausalLM"
  std::string model_type;    ///< "deepseek_v2" | "llama"
  std::string attention;     ///< "MLA" | "MHA" | "GQA" | "MQA"
  int64_t vocab_size = 0;
  int64_t n_layers = 0;
  int64_t max_position_embeddings = 0;
  int64_t params_total = 0;             ///< every weight, the embedding table included
  int64_t params_active_per_token = 0;  ///< weights one token's forward pass multiplies (input embedding lookup
                                        ///< excluded; only num_experts_per_tok routed experts per MoE layer)
  int64_t kv_elements_per_token = 0;    ///< cache elements per token summed over layers
  int64_t kv_bytes_per_token_bf16 = 0;
  int64_t kv_bytes_per_token_fp8 = 0;         ///< one byte an element (the paper's FP8 figure)
  int64_t kv_bytes_per_token_fp8_scaled = 0;  ///< --kv-cache-dtype fp8 as held: codes, scales, MLA's RoPE in BF16
  int64_t weight_bytes_fp8 = 0;  ///< --weights-dtype fp8 as held: e4m3 + block scales, embedding/head/router BF16
  std::string json;  ///< the full `mlabench info` document
};

struct Logits {
  int64_t n_tokens = 0;
  int64_t vocab_size = 0;
  std::vector<float> data;  ///< [n_tokens, vocab_size], row t = next-token logits after tokens[0..t]
  const float* row(int64_t t) const { return data.data() + t * vocab_size; }
};

struct ScoreResult {
  double logprob = 0.0;    ///< sum over continuation tokens of log p(token | everything before it)
  bool is_greedy = false;  ///< every continuation token was the argmax at its position
  int64_t n_tokens = 0;    ///< continuation length
};

struct GenerateOptions {
  int64_t max_new_tokens = 16;
  std::vector<int32_t> stop_token_ids{};  ///< generation ends after emitting one of these (it is included)
  float temperature = 0.0f;               ///< 0: greedy (argmax; ties to the lowest id)
  float top_p = 1.0f;                     ///< nucleus sampling mass when temperature > 0
  uint64_t seed = 0;                      ///< sampling is reproducible for a given seed
};

struct GenerateResult {
  std::vector<int32_t> tokens;   ///< new tokens only
  std::string finish_reason;     ///< "length" | "stop_token" | "stop_string"
  double prefill_seconds = 0.0;  ///< until the first new token (batched: from the start of the batch)
  double decode_seconds = 0.0;   ///< from the first new token to the last
  std::vector<double> token_seconds{};  ///< batched calls: when each new token came, from the batch's start
  int64_t prefix_tokens_reused = 0;     ///< prompt tokens taken from the prefix cache instead of computed
};

/// Counters of the serving core, summed over every call since the engine was opened: take two and subtract to
/// see what one call computed (how `mlabench bench` checks that a measured prompt was not served from the cache).
struct EngineStats {
  int64_t steps = 0;                 ///< steps the runner executed
  int64_t prefill_tokens = 0;        ///< prompt positions computed (recomputation after a pre-emption included)
  int64_t decode_tokens = 0;         ///< one-token decode rows
  int64_t prefix_tokens_reused = 0;  ///< prompt positions taken from the prefix cache instead of computed
  int64_t preemptions = 0;           ///< sequences that lost their cache to make room and were recomputed
  int64_t max_running = 0;           ///< most sequences running at once
};

/// One loglikelihood request of a batch: log p(continuation | context).
struct ScoreRequest {
  std::vector<int32_t> context;
  std::vector<int32_t> continuation;
};

/// One generation request of a batch.
struct GenerateRequest {
  std::vector<int32_t> prompt;
  GenerateOptions options{};
};

struct TextGenerateOptions {
  GenerateOptions sampling{};       ///< the tokenizer's EOS joins sampling.stop_token_ids unless ignore_eos
  std::vector<std::string> stop{};  ///< stop strings: generation ends once the text contains one; text is cut before it
  bool add_special_tokens =
      true;  ///< encode the prompt with the tokenizer's post-processor (BOS, as the model expects)
  bool ignore_eos = false;
};

struct TextGenerateResult {
  std::string text;                    ///< the generated text (special tokens skipped, cut before a stop string)
  std::vector<int32_t> prompt_tokens;  ///< the prompt as the model saw it
  GenerateResult generation;           ///< tokens and timing
};

/// One text generation of a batch.
struct TextGenerateRequest {
  std::string prompt;
  TextGenerateOptions options{};
  std::vector<int32_t> prompt_tokens{};  ///< if set, used instead of encoding `prompt` (e.g. a truncated prompt)
};

/// One request of a live serving session (LiveSession::submit): a tokenized prompt, then generation as
/// Engine::generate(text) does it (EOS unless ignore_eos, stop ids, stop strings cut, no half characters).
struct LiveRequest {
  std::vector<int32_t> prompt;     ///< token ids (Engine::encode the text first)
  TextGenerateOptions options{};   ///< sampling.max_new_tokens may be 0 (prompt only); add_special_tokens unused
  bool prompt_logits = false;      ///< also return the logits of every prompt position (Engine::logits' rows)
};

/// What a finished live request gives back.
struct LiveResult {
  std::string text;           ///< the generated text, as Engine::generate(text) returns it
  GenerateResult generation;  ///< tokens, finish_reason ("length" | "stop_token" | "stop_string" | "cancelled")
  Logits prompt_logits;       ///< LiveRequest::prompt_logits: [prompt, vocab]; empty otherwise
  double seconds = 0.0;       ///< from submit to the result
};

/// The callbacks of one live request. Both run on the engine thread: they must return quickly (hand the data to
/// another thread) and must not call back into the session.
struct LiveCallbacks {
  /// Text as it becomes final: whole characters only, held back while it could be the start of a stop string.
  /// The pieces concatenated equal LiveResult::text. May be empty (no streaming).
  std::function<void(std::string_view text)> on_text{};
  /// Exactly once per accepted request: its result, or the Error that ended it (the session stopping, the
  /// cache unable to hold it).
  std::function<void(Result<LiveResult>)> on_done{};
};

/// \brief Live serving: one engine thread owns the Engine and runs a continuous batch; requests submitted from
/// any thread join the running batch at its next step and get their text as it is generated. Made by
/// Engine::start_live; while a session exists, no other Engine call may be made (the engine thread owns it).
class LiveSession {
 public:
  /// \brief Stops the engine thread; a request not finished by then gets an Error through on_done.
  ~LiveSession();
  LiveSession(const LiveSession&) = delete;
  LiveSession& operator=(const LiveSession&) = delete;

  /// \brief Thread-safe. Checks the request (token ids, prompt + max_new_tokens against max_context, sampling
  /// ranges) and queues it; returns its id. An Error means nothing was queued and no callback will run.
  Result<uint64_t> submit(LiveRequest request, LiveCallbacks callbacks);
  /// \brief Thread-safe: ends request `id` at its next token (finish_reason "cancelled"); on_done still comes.
  /// An unknown or finished id is ignored.
  void cancel(uint64_t id);
  /// \brief Thread-safe: sequences in the running batch, and requests queued or waiting for room.
  int64_t n_running() const;
  int64_t n_waiting() const;

 private:
  friend class Engine;
  LiveSession();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// \brief Engine::encode_choices on a tokenizer alone (lm-evaluation-harness's _encode_pair), for backends without an
/// engine (the remote one); throws Error for a continuation that adds no tokens.
std::vector<ScoreRequest> encode_choices(const Tokenizer& tokenizer, std::string_view context,
                                         std::span<const std::string> continuations, bool add_special_tokens);

class Engine {
 public:
  /// \brief Loads config.json and the weights (or builds random ones) and validates both.
  static Result<std::unique_ptr<Engine>> open(const EngineOptions& options);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  const ModelSummary& summary() const;
  /// \brief Bytes of weight data as stored (what one full pass over the weights reads).
  uint64_t weight_bytes() const;
  /// \brief Bytes of weights one decode token multiplies (active experts only), at their stored dtype (FP8 weights
  /// on cuda: the BF16 count times the FP8 share of all weight bytes).
  uint64_t active_weight_bytes() const;
  /// \brief The longest sequence (prompt + generated tokens) the engine serves: EngineOptions::max_context, or
  /// its default (max_position_embeddings; capped at 32768 on CUDA).
  int64_t max_context() const;
  /// \brief New tokens per step: EngineOptions::max_step_tokens, or its default (16384 on CUDA, 4096 on the CPU).
  int64_t max_step_tokens() const;

  /// \brief Logits at every position of `tokens` (one forward pass, fresh cache).
  Result<Logits> logits(std::span<const int32_t> tokens);
  /// \brief log p(continuation | context). context must be non-empty.
  Result<ScoreResult> score(std::span<const int32_t> context, std::span<const int32_t> continuation);
  /// \brief Samples up to max_new_tokens after `prompt` through the KV cache (prefill, then one token a step).
  Result<GenerateResult> generate(std::span<const int32_t> prompt, const GenerateOptions& options);

  /// \brief Many loglikelihood requests at once, results in request order: batched, and common prefixes are
  /// computed once (the prefix cache shares their full blocks).
  Result<std::vector<ScoreResult>> score_batch(std::span<const ScoreRequest> requests);
  /// \brief Many generations at once with continuous batching; results in request order. A request draws the
  /// same tokens in any batch and on either device (sampling depends on its seed and token index only).
  Result<std::vector<GenerateResult>> generate_batch(std::span<const GenerateRequest> requests);
  /// \brief The serving core's counters since the engine was opened (EngineStats).
  EngineStats stats() const;
  /// \brief Tokens the KV cache holds at once (its blocks x block_size; the CPU engine allocates them as they fill).
  int64_t kv_cache_tokens() const;
  /// \brief Tokens per KV cache block: EngineOptions::block_size, or what its 0 (auto) chose.
  int64_t kv_block_size() const;
  /// \brief Caches kv_cache_tokens() is split over, equally (--dp-attention: one a rank, a sequence's cache on one
  /// of them; else 1).
  int kv_cache_partitions() const;
  /// \brief KV-cache bytes per token as the runner allocated them (a block's bytes over all layers / its tokens):
  /// BF16 on CUDA (float32 under --precision f32), float32 on the CPU.
  uint64_t kv_bytes_per_token() const;
  /// \brief On CUDA a JSON object describing the GPU, cache, limits and CUDA-graph counters ("" on the CPU).
  std::string device_json() const;
  /// \brief Device-to-device copy bandwidth measured at start-up (GB/s, read + write bytes), the roofline the benchmark
  /// quotes achieved bandwidth against; 0 on the CPU.
  double measure_copy_bandwidth_gbps();
  /// \brief Per-phase device time of each step (attention, MoE, dense, norms, sampling: `bench --profile`), from
  /// CUDA events; while on, decode steps run eagerly instead of from CUDA graphs, so the times include launch
  /// overhead the graphs hide. False (and nothing changes) on the CPU engine.
  bool set_profiling(bool on);
  /// \brief The phase times since set_profiling(true) or the last call, as a JSON object {"steps", "rows",
  /// "phases": [{"phase", "ms", "calls"}]} ("" when not profiling); the count starts again.
  std::string take_profile_json();

  /// \brief The model folder's tokenizer (tokenizer.json or tokenizer.model), or nullptr if it has none.
  const Tokenizer* tokenizer() const;
  /// \brief Text -> ids with the model's tokenizer. Error if the model folder has no tokenizer.
  Result<std::vector<int32_t>> encode(std::string_view text, bool add_special_tokens) const;
  /// \brief log p(continuation | context) on text, tokenized as encode_choices does (with special tokens).
  Result<ScoreResult> score(std::string_view context, std::string_view continuation);
  /// \brief Score requests for the choices of one context, tokenized as lm-evaluation-harness does: whitespace at
  /// the end of the context moves to the continuation, and a continuation's tokens are those that
  /// encode(context + continuation) adds after encode(context)'s. Every request shares the same context ids.
  Result<std::vector<ScoreRequest>> encode_choices(std::string_view context, std::span<const std::string> continuations,
                                                   bool add_special_tokens) const;
  /// \brief Generation from text, decoded incrementally (no half characters), stopped by EOS, stop ids or stop
  /// strings.
  Result<TextGenerateResult> generate(std::string_view prompt, const TextGenerateOptions& options);
  /// \brief Many text generations at once (batched; a request leaves the batch as soon as its text holds a stop
  /// string). Each result equals generate(prompt, options) up to batch-shape rounding on the GPU.
  Result<std::vector<TextGenerateResult>> generate_batch(std::span<const TextGenerateRequest> requests);
  /// \brief A conversation rendered with the tokenizer's chat template (or `override`), ready to encode with
  /// add_special_tokens = false (the template writes BOS itself), as transformers' apply_chat_template does.
  Result<std::string> apply_chat_template(std::span<const ChatMessage> messages, bool add_generation_prompt,
                                          std::optional<ChatTemplate> override_template = std::nullopt) const;
  /// \brief Starts live serving (LiveSession) on this engine. The engine must outlive the session, and no other
  /// call may be made on it while the session exists (tokenizer(), encode(), summary(), max_context() and
  /// apply_chat_template() excepted: they read only what open() built).
  Result<std::unique_ptr<LiveSession>> start_live();

 private:
  friend class LiveSession;
  Engine();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// \brief The `mlabench info` summary of a model folder from config.json alone (weights are not read).
Result<ModelSummary> summarize_model(const std::string& model_dir);

}  // namespace mlabench
