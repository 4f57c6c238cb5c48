// The GPU runner: executes the serving core's StepPlans on one GPU. Per step: the plan's integers are packed into
// pinned memory and sent in one copy; the forward runs eagerly or, for decode-only steps, as a replayed CUDA graph
// of the step's shape bucket; sampling and scoring kernels run on the logit rows; one download brings back the
// tokens and scores (full-logit rows are copied straight to their destinations). Also: the paged KV pools sized
// from the memory left after the weights and buffers, and the device description.
#include "engine/gpu/gpu_runner.h"

#include <cuda_profiler_api.h>
#include <cuda_runtime_api.h>
#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <tuple>
#include <nlohmann/json.hpp>

#include "engine/gpu/gpu_model.h"
#include "engine/gpu/phase_timer.h"
#include "engine/kernels/cuda/kernels.h"
#include "engine/serving/limits.h"

namespace mlabench {

namespace {

namespace k = mlabench::kernels;
using gpu::DeviceBuffer;

// Pinned host memory (for the per-step uploads and downloads).
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  explicit PinnedBuffer(size_t bytes) : bytes_(bytes) { MLABENCH_CUDA(cudaMallocHost(&p_, bytes)); }
  ~PinnedBuffer() {
    if (p_) cudaFreeHost(p_);
  }
  PinnedBuffer(PinnedBuffer&& o) noexcept : p_(std::exchange(o.p_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  PinnedBuffer& operator=(PinnedBuffer&& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(bytes_, o.bytes_);
    return *this;
  }
  char* get() const { return static_cast<char*>(p_); }
  size_t bytes() const { return bytes_; }

 private:
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

// Device-to-device copy of 1 GiB, best of 5 after a warm-up: (read + write bytes) / time.
double measure_copy_gbps(cudaStream_t stream) {
  const size_t n = size_t{1} << 30;
  DeviceBuffer a(n, "bandwidth probe"), b(n, "bandwidth probe");
  cudaEvent_t e0, e1;
  MLABENCH_CUDA(cudaEventCreate(&e0));
  MLABENCH_CUDA(cudaEventCreate(&e1));
  float best = 1e30f;
  for (int i = 0; i < 6; ++i) {
    MLABENCH_CUDA(cudaEventRecord(e0, stream));
    MLABENCH_CUDA(cudaMemcpyAsync(b.get(), a.get(), n, cudaMemcpyDeviceToDevice, stream));
    MLABENCH_CUDA(cudaEventRecord(e1, stream));
    MLABENCH_CUDA(cudaEventSynchronize(e1));
    float ms = 0;
    MLABENCH_CUDA(cudaEventElapsedTime(&ms, e0, e1));
    if (i > 0) best = std::min(best, ms);  // the first copy warms up
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  return 2.0 * static_cast<double>(n) / (static_cast<double>(best) * 1e-3) / 1e9;
}

// Packs a step's arrays into pinned memory at 16-byte offsets, mirrored at the same offsets on the device.
class Staging {
 public:
  Staging(char* host, char* device, size_t bytes) : h_(host), d_(device), bytes_(bytes) {}
  template <class T>
  T* put(const std::vector<T>& v) {
    at_ = (at_ + 15) / 16 * 16;
    const size_t n = v.size() * sizeof(T);
    MLABENCH_ICHECK(at_ + n <= bytes_, "step staging overflow: {} + {} > {}", at_, n, bytes_);
    if (n) std::memcpy(h_ + at_, v.data(), n);
    T* dev = reinterpret_cast<T*>(d_ + at_);
    at_ += n;
    return dev;
  }
  size_t used() const { return at_; }

 private:
  char *h_, *d_;
  size_t bytes_, at_ = 0;
};

class GpuRunner final : public serving::ModelRunner {
 public:
  GpuRunner(const ModelConfig& c, const ModelWeights* host, uint64_t seed, const EngineOptions& o,
            const serving::ServingLimits& limits, parallel::DeviceRankHooks hooks)
      : config_(c), limits_(limits), cuda_graphs_(o.cuda_graphs && (hooks.empty() || hooks.graph_capturable)),
        batch_invariant_attention_(o.batch_invariant_attention) {
    std::string why;
    MLABENCH_CHECK(gpu::cuda_device_available(&why),
                   "--device cuda needs a CUDA GPU: {}. HINT: run on a machine with an NVIDIA GPU, or use --device cpu",
                   why);
    int devices = 0;  // --device cuda:N: this runner's GPU, selected before anything is allocated
    MLABENCH_CUDA(cudaGetDeviceCount(&devices));
    check_cuda_device_index(o.device_index, devices);
    device_ = o.device_index;
    MLABENCH_CUDA(cudaSetDevice(device_));
    cudaDeviceProp prop{};
    MLABENCH_CUDA(cudaGetDeviceProperties(&prop, device_));
    gpu_name_ = prop.name;
    total_gib_ = static_cast<double>(prop.totalGlobalMem) / 1073741824.0;
    cudaDriverGetVersion(&driver_);
    MLABENCH_CUDA(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    model_ = std::make_unique<gpu::GpuModel>(c, host, seed, o.precision, stream_, o.batch_invariant_attention,
                                             o.weights_dtype == WeightsDtype::FP8);
    model_->set_fp8_kv_cache(o.kv_cache_dtype == KvCacheDtype::FP8);
    model_->set_rank_hooks(std::move(hooks));
    model_->allocate_buffers(limits);
    const int64_t max_blocks = (limits.max_context + limits.block_size - 1) / limits.block_size;
    const auto graph_seqs = static_cast<size_t>(std::bit_ceil(static_cast<uint64_t>(limits.max_seqs)));
    // The block tables, twice where the model gathers its prefill sequences' caches (gathered_prefill_layout).
    const size_t tables = model_->gathers_prefill() ? 2 : 1;
    const size_t stage = static_cast<size_t>(limits.max_step_tokens) * 16 + graph_seqs * (44 + 4 * tables) +
                         graph_seqs * std::bit_ceil(static_cast<uint64_t>(max_blocks)) * 4 * tables +
                         static_cast<size_t>(limits.max_logit_rows) * 40 + 4096;
    h_stage_ = PinnedBuffer(stage);
    d_stage_ = DeviceBuffer(stage, "step staging");
    const size_t out = static_cast<size_t>(limits.max_logit_rows) * 16 + 256;
    h_out_ = PinnedBuffer(out);
    d_out_ = DeviceBuffer(out, "step results");
    copy_gbps_ = measure_copy_gbps(stream_);
    allocate_cache(o.kv_cache_gib, max_blocks);
  }

  ~GpuRunner() override {
    for (auto& [key, g] : graphs_)
      if (g) cudaGraphExecDestroy(g);
    model_.reset();
    if (stream_) cudaStreamDestroy(stream_);
  }

  int64_t n_blocks() const override { return pools_.n_blocks - 1; }  // the last block is the padding rows' trash
  uint64_t bytes_per_block() const override {
    return static_cast<uint64_t>(pools_.block_size) * (pools_.k_slot_bytes + pools_.v_slot_bytes) *
           static_cast<uint64_t>(config_.n_layers);
  }
  int64_t prefill_key_budget() const override { return model_->prefill_key_budget(); }
  uint64_t weight_bytes() const override { return model_->weight_bytes(); }
  double copy_bandwidth_gbps() const override { return copy_gbps_; }

  bool set_profiling(bool on) override {
    profiling_ = on;
    gpu::phases::set_enabled(on);
    gpu::phases::reset();
    profile_[0] = profile_[1] = {};
    return true;
  }

  std::string take_profile_json() override {
    if (!profiling_) return "";
    auto kind_json = [](const ProfileKind& k) {
      nlohmann::json list = nlohmann::json::array();
      for (const gpu::phases::PhaseTotal& t : k.phases)
        list.push_back({{"phase", t.name}, {"ms", t.ms}, {"calls", t.calls}});
      return nlohmann::json{{"steps", k.steps}, {"rows", k.rows}, {"phases", list}};
    };
    const nlohmann::json j = {{"prefill_steps", kind_json(profile_[0])}, {"decode_steps", kind_json(profile_[1])}};
    profile_[0] = profile_[1] = {};
    return j.dump();
  }
  std::string describe_json() const override;
  void execute(const serving::StepPlan& plan, serving::StepOutput& out) override;

 private:
  // KV cache: what the budget allows, in whole blocks.
  void allocate_cache(double kv_cache_gib, int64_t max_blocks) {
    pools_.block_size = limits_.block_size;
    pools_.dtype = model_->cache_dtype();
    std::tie(pools_.k_slot_bytes, pools_.v_slot_bytes) = model_->kv_slot_bytes();
    size_t free_b = 0, total_b = 0;
    MLABENCH_CUDA(cudaMemGetInfo(&free_b, &total_b));
    double budget = kv_cache_gib * 1073741824.0;
    if (budget <= 0) budget = static_cast<double>(free_b) - 1073741824.0;
    MLABENCH_CHECK(budget < static_cast<double>(free_b),
                   "--kv-cache-gib {:.2f} exceeds the {:.2f} GiB free on {} after the weights and buffers. HINT: "
                   "lower --kv-cache-gib, --max-batch or --max-step-tokens",
                   kv_cache_gib, static_cast<double>(free_b) / 1073741824.0, gpu_name_);
    const auto n_blocks = static_cast<int64_t>(budget / static_cast<double>(bytes_per_block()));
    MLABENCH_CHECK(n_blocks >= max_blocks / 8 + 1 && n_blocks >= 2,
                   "the KV cache budget holds {} blocks of {} tokens ({} bytes each): too few to serve a sequence. "
                   "HINT: raise --kv-cache-gib or lower --max-context",
                   n_blocks, limits_.block_size, bytes_per_block());
    pools_.n_blocks = n_blocks;
    const auto slots = static_cast<size_t>(n_blocks * limits_.block_size);
    for (int64_t l = 0; l < config_.n_layers; ++l) {
      pools_.k.emplace_back(slots * pools_.k_slot_bytes, "KV cache (K / latent)");
      if (pools_.v_slot_bytes > 0) pools_.v.emplace_back(slots * pools_.v_slot_bytes, "KV cache (V)");
    }
    trash_block_ = static_cast<int32_t>(n_blocks - 1);  // padding rows of graphed steps write here
  }

  gpu::DeviceStep upload(const serving::StepPlan& plan, int32_t n_pad, int32_t max_blocks);
  bool replay(const gpu::DeviceStep& d);

  ModelConfig config_;
  serving::ServingLimits limits_;
  bool cuda_graphs_ = true;
  // MLABENCH_FINE_GRAPH_BUCKETS=0 pads graphed decode batches to the power of two (the rule before, for an A/B run);
  // read when the runner is built, so a bad value fails the engine's open, not a step.
  bool fine_buckets_ = gpu::env_switch("MLABENCH_FINE_GRAPH_BUCKETS");
  bool batch_invariant_attention_ = false;
  bool profiling_ = false;  // set_profiling: phases timed, every step eager
  // Profiled phase times by step kind: [0] steps with prompt rows (prefill, mixed), [1] decode-only steps.
  struct ProfileKind {
    long long steps = 0, rows = 0;
    std::vector<gpu::phases::PhaseTotal> phases;  // the forward pass's order
  };
  ProfileKind profile_[2];
  void add_profiled_step(bool decode_only) {
    ProfileKind& k = profile_[decode_only ? 1 : 0];
    for (const gpu::phases::PhaseTotal& t : gpu::phases::totals()) {
      auto it = std::find_if(k.phases.begin(), k.phases.end(), [&](const auto& p) { return p.name == t.name; });
      if (it == k.phases.end()) it = k.phases.insert(k.phases.end(), {t.name, 0.0, 0});
      it->ms += t.ms;
      it->calls += t.calls;
    }
    k.steps += gpu::phases::steps();
    k.rows += gpu::phases::rows();
    gpu::phases::reset();
  }
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<gpu::GpuModel> model_;
  gpu::KvPools pools_;
  int32_t trash_block_ = 0;
  std::string gpu_name_;
  int device_ = 0;  // the CUDA device (--device cuda:N); steps may run on another thread (a live session)
  int driver_ = 0;
  double total_gib_ = 0;
  double copy_gbps_ = 0;  // measured at start-up, before the KV cache takes the free memory
  PinnedBuffer h_stage_, h_out_;
  DeviceBuffer d_stage_, d_out_;
  // Decode graphs by (batch bucket, block-table width); null until captured. The first step of a shape runs
  // eagerly (it sizes every lazily grown buffer), the second captures, later ones replay.
  std::map<std::pair<int32_t, int32_t>, cudaGraphExec_t> graphs_;
  struct GraphNodes {
    int64_t kernels = 0, copies = 0, other = 0;
  };
  std::map<std::pair<int32_t, int32_t>, GraphNodes> graph_nodes_;  // by the same key, once captured
  static GraphNodes count_graph_nodes(cudaGraph_t g);
  void profiler_window(bool decode_only);
  int64_t decode_steps_seen_ = 0;
  bool profiler_on_ = false;
  int64_t graph_replays_ = 0, graphed_batch_max_ = 0;
  // Where this step's sampling and scoring parameters and results live on the device.
  float* d_temp_ = nullptr;
  float* d_top_p_ = nullptr;
  uint64_t* d_seed_ = nullptr;
  int64_t* d_step_ = nullptr;
  int32_t* d_targets_ = nullptr;
  size_t out_lp_ = 0, out_greedy_ = 0;
};

void GpuRunner::execute(const serving::StepPlan& plan, serving::StepOutput& out) {
  MLABENCH_CUDA(cudaSetDevice(device_));  // the calling thread's current device (a live session's thread)
  const int64_t bs = limits_.block_size, V = config_.vocab_size;
  // Decode-only steps replay a CUDA graph captured for their shape bucket: the batch is padded to
  // serving::decode_graph_bucket(n) with rows that write to the reserved trash block, and the block table to a
  // power-of-two width. Every decode batch the buffers hold is graphed: the MoE layer's graph-safe path keeps expert
  // counts on the device. The step buffers are sized for bit_ceil(max_seqs) rows, which bounds both bucket rules.
  const auto n = static_cast<int64_t>(plan.seqs.size());
  const auto pow2 = static_cast<int64_t>(std::bit_ceil(static_cast<uint64_t>(std::max<int64_t>(n, 1))));
  const int64_t bucket = fine_buckets_ ? serving::decode_graph_bucket(n) : pow2;
  const auto max_bucket = static_cast<int64_t>(std::bit_ceil(static_cast<uint64_t>(limits_.max_seqs)));
  const bool graphed = cuda_graphs_ && !profiling_ && plan.n_decode == n && plan.n_score == 0 && plan.n_full == 0 &&
                       bucket <= std::min({limits_.max_step_tokens, limits_.max_logit_rows, max_bucket});
  auto max_blocks = static_cast<int32_t>(plan.max_blocks());
  int32_t n_pad = 0;
  if (graphed) {
    n_pad = static_cast<int32_t>(bucket - n);
    max_blocks = static_cast<int32_t>(std::bit_ceil(static_cast<uint32_t>(max_blocks)));
  }
  profiler_window(plan.n_decode == n && plan.n_score == 0 && plan.n_full == 0);
  gpu::DeviceStep d = upload(plan, n_pad, max_blocks);
  if (graphed) {
    d.graphed = true;
    d.max_kv_decode = max_blocks * static_cast<int32_t>(bs);  // baked into the graph: the bucket's bound
    if (replay(d)) {
      ++graph_replays_;
      graphed_batch_max_ = std::max(graphed_batch_max_, n);
    }
  } else {
    model_->forward(d, pools_);
  }
  const int64_t ns = plan.n_sample, nsc = plan.n_score;
  char* dout = d_out_.as<char>();
  if (!graphed) gpu::phases::at(stream_, "sampling, scoring");
  if (ns > 0)
    k::cuda::sample({.logits = model_->logits(), .ld = V, .n_rows = ns, .vocab = V, .temperature = d_temp_,
                     .top_p = d_top_p_, .seed = d_seed_, .step = d_step_, .out = reinterpret_cast<int32_t*>(dout)},
                    stream_);
  if (nsc > 0)
    k::cuda::log_softmax_gather({.logits = model_->logits() + ns * V, .ld = V, .n_rows = nsc, .vocab = V,
                                 .targets = d_targets_, .logprob = reinterpret_cast<double*>(dout + out_lp_),
                                 .is_greedy = reinterpret_cast<int32_t*>(dout + out_greedy_)},
                                stream_);
  if (!graphed) gpu::phases::end_step(stream_, d.n_rows);
  if (profiling_) add_profiled_step(plan.n_decode == n && plan.n_score == 0 && plan.n_full == 0);
  MLABENCH_CUDA(cudaMemcpyAsync(h_out_.get(), dout, out_greedy_ + static_cast<size_t>(nsc) * 4,
                                cudaMemcpyDeviceToHost, stream_));
  for (int64_t i = 0; i < plan.n_full; ++i) {
    const serving::LogitRow& r = plan.logits[static_cast<size_t>(ns + nsc + i)];
    MLABENCH_CUDA(cudaMemcpyAsync(r.dst, model_->logits() + (ns + nsc + i) * V, static_cast<size_t>(V) * 4,
                                  cudaMemcpyDeviceToHost, stream_));
  }
  MLABENCH_CUDA(cudaStreamSynchronize(stream_));
  out.sampled.resize(static_cast<size_t>(ns));
  out.logprob.resize(static_cast<size_t>(nsc));
  out.is_greedy.resize(static_cast<size_t>(nsc));
  if (ns > 0) std::memcpy(out.sampled.data(), h_out_.get(), static_cast<size_t>(ns) * 4);
  for (int64_t i = 0; i < nsc; ++i) {
    int32_t greedy;
    std::memcpy(&out.logprob[static_cast<size_t>(i)], h_out_.get() + out_lp_ + static_cast<size_t>(i) * 8, 8);
    std::memcpy(&greedy, h_out_.get() + out_greedy_ + static_cast<size_t>(i) * 4, 4);
    out.is_greedy[static_cast<size_t>(i)] = greedy != 0;
  }
}

// Packs the step's integers (and the sampling/scoring parameters) into pinned memory, one copy to the device.
// n_pad padding sequences of one row each follow the plan's (graphed decode steps).
gpu::DeviceStep GpuRunner::upload(const serving::StepPlan& plan, int32_t n_pad, int32_t max_blocks) {
  const int64_t bs = limits_.block_size;
  std::vector<int32_t> tokens = plan.tokens, positions = plan.positions, cu_q{0}, kv_len, rows;
  std::vector<int64_t> slots = plan.slots;
  for (const serving::PlannedSequence& s : plan.seqs) {
    cu_q.push_back(cu_q.back() + static_cast<int32_t>(s.n_new));
    kv_len.push_back(static_cast<int32_t>(s.first_position + s.n_new));
  }
  for (int32_t i = 0; i < n_pad; ++i) {
    tokens.push_back(0);
    positions.push_back(0);
    slots.push_back(trash_block_ * bs);
    cu_q.push_back(cu_q.back() + 1);
    kv_len.push_back(1);
  }
  const size_t n_seqs = kv_len.size();
  std::vector<int32_t> tables(n_seqs * static_cast<size_t>(max_blocks), trash_block_);
  for (size_t i = 0; i < plan.seqs.size(); ++i)
    std::copy(plan.seqs[i].blocks.begin(), plan.seqs[i].blocks.end(),
              tables.begin() + static_cast<std::ptrdiff_t>(i * static_cast<size_t>(max_blocks)));
  for (const serving::LogitRow& r : plan.logits) rows.push_back(r.row);
  for (int32_t i = 0; i < n_pad; ++i) rows.push_back(static_cast<int32_t>(plan.seqs.size()) + i);

  gpu::DeviceStep st;
  st.n_seqs = static_cast<int32_t>(n_seqs);
  st.n_rows = static_cast<int32_t>(tokens.size());
  st.n_decode = plan.n_decode + n_pad;  // padding rows are decode rows too (one key, in the trash block)
  st.max_blocks = max_blocks;
  st.n_logit_rows = static_cast<int32_t>(rows.size());
  std::vector<int32_t> cu_kv{0};
  for (size_t s = static_cast<size_t>(st.n_decode); s < n_seqs; ++s) {
    cu_kv.push_back(cu_kv.back() + kv_len[s]);
    st.max_q_prefill = std::max(st.max_q_prefill, cu_q[s + 1] - cu_q[s]);
    st.max_kv_prefill = std::max(st.max_kv_prefill, kv_len[s]);
  }
  for (size_t s = 0; s < static_cast<size_t>(st.n_decode); ++s) st.max_kv_decode = std::max(st.max_kv_decode, kv_len[s]);
  st.prefill_keys = cu_kv.back();
  serving::GatheredPrefill gathered;  // only for a model that reads it, and steps with prefill sequences
  if (model_->gathers_prefill() && st.n_decode < st.n_seqs) {
    gathered = serving::gathered_prefill_layout(
        std::span<const int32_t>(kv_len).subspan(static_cast<size_t>(st.n_decode)), bs, max_blocks);
    st.gathered_slots = gathered.cu_slots.back();
  }
  std::vector<float> temp, top_p;
  std::vector<uint64_t> seed;
  std::vector<int64_t> step;
  std::vector<int32_t> targets;
  for (const serving::LogitRow& r : plan.logits) {
    if (r.use == serving::RowUse::SAMPLE) {
      temp.push_back(r.sampling.temperature);
      top_p.push_back(r.sampling.top_p);
      seed.push_back(r.sampling.seed);
      step.push_back(r.sampling.step);
    } else if (r.use == serving::RowUse::SCORE) {
      targets.push_back(r.target);
    }
  }
  Staging sg(h_stage_.get(), d_stage_.as<char>(), h_stage_.bytes());
  st.tokens = sg.put(tokens);
  st.positions = sg.put(positions);
  st.slots = sg.put(slots);
  st.cu_q = sg.put(cu_q);
  st.kv_len = sg.put(kv_len);
  st.block_tables = sg.put(tables);
  st.logit_rows = sg.put(rows);
  st.cu_kv = sg.put(cu_kv);
  if (!gathered.cu_slots.empty()) {
    st.gathered_cu_slots = sg.put(gathered.cu_slots);
    st.gathered_tables = sg.put(gathered.tables);
  }
  d_temp_ = sg.put(temp);
  d_top_p_ = sg.put(top_p);
  d_seed_ = sg.put(seed);
  d_step_ = sg.put(step);
  d_targets_ = sg.put(targets);
  MLABENCH_CUDA(cudaMemcpyAsync(d_stage_.get(), h_stage_.get(), sg.used(), cudaMemcpyHostToDevice, stream_));
  out_lp_ = (static_cast<size_t>(plan.n_sample) * 4 + 15) / 16 * 16;
  out_greedy_ = out_lp_ + targets.size() * 8;
  return st;
}

// MLABENCH_PROFILER_DECODE_STEPS=FIRST,COUNT: the profiler API's window (cudaProfilerStart / Stop) covers decode-only
// steps FIRST .. FIRST + COUNT - 1 of the run (0-based), so `ncu --profile-from-start off` times the kernels of
// steady decode steps (graphed ones included) and nothing else (tools/gpu/check.sh, profile stage).
void GpuRunner::profiler_window(bool decode_only) {
  static const std::pair<int64_t, int64_t> window = [] {
    const char* e = std::getenv("MLABENCH_PROFILER_DECODE_STEPS");
    long long first = -1, count = 0;
    if (e == nullptr || std::sscanf(e, "%lld,%lld", &first, &count) != 2 || first < 0 || count <= 0) return std::pair<int64_t, int64_t>{-1, 0};
    return std::pair<int64_t, int64_t>{first, count};
  }();
  if (window.first < 0) return;
  if (profiler_on_) {
    cudaStreamSynchronize(stream_);
    cudaProfilerStop();
    profiler_on_ = false;
  }
  if (!decode_only) return;
  const int64_t i = decode_steps_seen_++;
  if (i >= window.first && i < window.first + window.second) {
    cudaStreamSynchronize(stream_);
    cudaProfilerStart();
    profiler_on_ = true;
  }
}

// What one captured decode step launches: kernels, and memset/memcpy nodes apart (the "launches per token").
GpuRunner::GraphNodes GpuRunner::count_graph_nodes(cudaGraph_t g) {
  size_t n = 0;
  MLABENCH_CUDA(cudaGraphGetNodes(g, nullptr, &n));
  std::vector<cudaGraphNode_t> nodes(n);
  if (n > 0) MLABENCH_CUDA(cudaGraphGetNodes(g, nodes.data(), &n));
  GraphNodes c;
  for (cudaGraphNode_t node : nodes) {
    cudaGraphNodeType t{};
    MLABENCH_CUDA(cudaGraphNodeGetType(node, &t));
    if (t == cudaGraphNodeTypeKernel) ++c.kernels;
    else if (t == cudaGraphNodeTypeMemset || t == cudaGraphNodeTypeMemcpy) ++c.copies;
    else ++c.other;
  }
  return c;
}

// Runs a graphed step: eagerly the first time its shape is seen, captured the second, replayed after. Returns
// whether a graph ran.
bool GpuRunner::replay(const gpu::DeviceStep& d) {
  const auto key = std::make_pair(d.n_seqs, d.max_blocks);
  auto it = graphs_.find(key);
  if (it == graphs_.end()) {
    graphs_[key] = nullptr;
    model_->forward(d, pools_);
    return false;
  }
  if (!it->second) {
    cudaGraph_t g = nullptr;
    MLABENCH_CUDA(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    try {
      model_->forward(d, pools_);
    } catch (...) {
      cudaStreamEndCapture(stream_, &g);
      if (g) cudaGraphDestroy(g);
      throw;
    }
    MLABENCH_CUDA(cudaStreamEndCapture(stream_, &g));
    graph_nodes_[key] = count_graph_nodes(g);
    MLABENCH_CUDA(cudaGraphInstantiate(&it->second, g, 0));
    MLABENCH_CUDA(cudaGraphDestroy(g));
  }
  MLABENCH_CUDA(cudaGraphLaunch(it->second, stream_));
  return true;
}

std::string GpuRunner::describe_json() const {
  nlohmann::ordered_json j;
  j["gpu"] = gpu_name_;
  j["gpu_memory_gib"] = total_gib_;
  j["cuda_driver"] = driver_;
  j["dtype"] = std::string(dtype_name(model_->dtype()));
  j["precision"] = model_->precision() == Precision::FLOAT32 ? "f32" : "native";
  j["weights_dtype"] = model_->fp8_weights() ? "fp8" : "auto";  // fp8: projections and experts e4m3, 128 x 128 scales
  j["kv_cache_dtype"] = std::string(dtype_name(pools_.dtype));
  j["weight_bytes"] = model_->weight_bytes();
  j["kv_cache"] = {{"blocks", pools_.n_blocks},
                   {"block_size", pools_.block_size},
                   {"tokens", pools_.n_blocks * pools_.block_size},
                   {"bytes", pools_.bytes()},
                   {"bytes_per_token", pools_.n_blocks > 0 ? pools_.bytes() / static_cast<uint64_t>(
                                                                 pools_.n_blocks * pools_.block_size)
                                                           : 0}};
  j["limits"] = {{"max_seqs", limits_.max_seqs},
                 {"max_step_tokens", limits_.max_step_tokens},
                 {"max_logit_rows", limits_.max_logit_rows},
                 {"max_context", limits_.max_context},
                 {"prefix_sharing", limits_.prefix_sharing},
                 {"cuda_graphs", cuda_graphs_},
                 {"batch_invariant_attention", batch_invariant_attention_}};
  // Counters so far: decode steps replayed from graphs, and the largest batch among them.
  j["graphs"] = {{"shapes", graphs_.size()}, {"replays", graph_replays_}, {"largest_batch", graphed_batch_max_}};
  // Each captured decode step's nodes: the forward pass of a padded batch (sampling launches after the graph).
  nlohmann::ordered_json captured = nlohmann::ordered_json::array();
  for (const auto& [key, c] : graph_nodes_)
    captured.push_back({{"batch_bucket", key.first}, {"block_table_width", key.second}, {"kernels", c.kernels},
                        {"memset_memcpy", c.copies}, {"other_nodes", c.other}});
  j["graphs"]["captured"] = captured;
  return j.dump();
}

}  // namespace

std::unique_ptr<serving::ModelRunner> make_gpu_runner(const ModelConfig& c, const ModelWeights* host, uint64_t seed,
                                                      const EngineOptions& o, const serving::ServingLimits& limits,
                                                      parallel::DeviceRankHooks hooks) {
  return std::make_unique<GpuRunner>(c, host, seed, o, limits, std::move(hooks));
}

}  // namespace mlabench
