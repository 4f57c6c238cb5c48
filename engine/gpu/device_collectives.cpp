// The sharded GPU model's joins (engine/parallel/device_collectives.h): NCCL, one communicator a GPU, or the
// host-staged twin through the CPU collectives.
#include "engine/parallel/device_collectives.h"

#include <cuda_runtime_api.h>
#include <fmt/format.h>

#include <cstdlib>
#include <cstring>
#include <set>
#include <utility>
#include <vector>

#if MLABENCH_HAVE_NCCL
#include <nccl.h>
#endif

#include "core/check.h"
#include "engine/kernels/cuda/cuda_check.h"
#include "engine/parallel/shard_plan.h"
#include "engine/parallel/sharded_cpu.h"

namespace mlabench::parallel {
namespace {

cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }

// The vocabulary rows of every rank (the output head's split, plan_shards' `vocab`).
std::vector<Range> vocab_ranges(int64_t vocab, int world) {
  std::vector<Range> out;
  for (int r = 0; r < world; ++r) out.push_back(split_range(vocab, world, r));
  return out;
}

// n floats from the device into a host vector, the stream synchronized.
std::vector<float> to_host(const float* device, int64_t n, void* stream) {
  std::vector<float> host(static_cast<size_t>(n));
  if (n > 0)
    MLABENCH_CUDA(cudaMemcpyAsync(host.data(), device, static_cast<size_t>(n) * 4, cudaMemcpyDeviceToHost,
                                  as_stream(stream)));
  MLABENCH_CUDA(cudaStreamSynchronize(as_stream(stream)));
  return host;
}

// n floats from the host to the device, the stream synchronized (the host memory may go out of scope after).
void to_device(float* device, const float* host, int64_t n, void* stream) {
  if (n > 0)
    MLABENCH_CUDA(cudaMemcpyAsync(device, host, static_cast<size_t>(n) * 4, cudaMemcpyHostToDevice, as_stream(stream)));
  MLABENCH_CUDA(cudaStreamSynchronize(as_stream(stream)));
}

// The CPU twin behind copies to and from the host. Every join synchronizes the rank's stream: for tests and for
// placements NCCL refuses (ranks sharing a GPU), not for speed.
class HostStagedCollectives final : public DeviceCollectives {
 public:
  HostStagedCollectives(HostGroup& group, int64_t vocab, bool dp) : group_(group), vocab_(vocab), dp_(dp) {}
  std::string kind() const override { return "host"; }
  DeviceRankHooks hooks(int rank) override {
    CpuRankHooks cpu = dp_ ? dp_attention_hooks(group_, rank, vocab_) : tensor_parallel_hooks(group_, rank, vocab_);
    DeviceRankHooks h;
    // DP attention leaves the attention block whole on each rank and reduces the FFN's partial sums by reduce_rows:
    // its CPU hooks have no all_reduce, and these hooks keep one only so that they are not empty().
    h.all_reduce = [reduce = cpu.all_reduce](float* data, int64_t n, void* stream) {
      std::vector<float> host = to_host(data, n, stream);
      reduce(host.data(), n);
      to_device(data, host.data(), n, stream);
    };
    h.gather_logits = [gather = cpu.gather_logits, V = vocab_](const float* local, int64_t rows, int64_t local_vocab,
                                                              float* logits, void* stream) {
      const std::vector<float> mine = to_host(local, rows * local_vocab, stream);
      std::vector<float> all(static_cast<size_t>(rows * V));
      gather(mine.data(), rows, local_vocab, all.data());
      to_device(logits, all.data(), rows * V, stream);
    };
    if (dp_) {
      h.gather_rows = [gather = cpu.gather_rows](const float* mine, int64_t rows, int64_t width, float* all,
                                                 int64_t& all_rows, void* stream) {
        const std::vector<float> host = to_host(mine, rows * width, stream);
        std::vector<float> gathered;
        const int64_t first = gather(host.data(), rows, width, gathered);
        all_rows = static_cast<int64_t>(gathered.size()) / width;
        to_device(all, gathered.data(), static_cast<int64_t>(gathered.size()), stream);
        return first;
      };
      h.reduce_rows = [reduce = cpu.reduce_rows](float* all, int64_t all_rows, int64_t width, int64_t first,
                                                 int64_t rows, float* mine, void* stream) {
        std::vector<float> host = to_host(all, all_rows * width, stream), own(static_cast<size_t>(rows * width));
        reduce(host.data(), all_rows, width, first, rows, own.data());
        to_device(mine, own.data(), rows * width, stream);
      };
    }
    h.graph_capturable = false;
    return h;
  }

 private:
  HostGroup& group_;
  int64_t vocab_;
  bool dp_ = false;
};

#if MLABENCH_HAVE_NCCL

void nccl_check(ncclResult_t r, const char* call) {
  MLABENCH_CHECK(r == ncclSuccess,
                 "{} failed: {}. HINT: every rank needs its own visible GPU; NCCL_DEBUG=WARN says more; --tp 1 runs "
                 "on one GPU",
                 call, ncclGetErrorString(r));
}

// One communicator a rank. The output head's vocabulary splits unevenly (split_range), and ncclAllGather moves
// equal counts, so each rank sends its [rows, local_vocab] padded to the widest rank's width and the gathered
// [rank][rows][width] is laid out into [rows, vocab] by one 2-D copy a rank, all on the rank's stream.
//   DP attention: the ranks' row counts differ every call, so they are exchanged on the host first (the ranks are
// threads of this process: HostGroup), then each rank's rows go to all by one ncclBroadcast a rank in a group
// (exact counts, no padding; the send buffer is read on its root only), and reduce_rows is an ncclAllReduce over all
// of them with this rank's rows copied out (the all-reduce + slice form of a reduce-scatter, as the CPU's). Not
// capturable: the counts are host values.
class NcclCollectives final : public DeviceCollectives {
 public:
  NcclCollectives(HostGroup& group, const std::vector<int>& devices, int64_t vocab, int64_t max_rows, bool dp)
      : group_(group), dp_(dp), devices_(devices), vocab_(vocab), max_rows_(max_rows),
        vocab_of_(vocab_ranges(vocab, static_cast<int>(devices.size()))) {
    // NVLink multicast stays off (the device README): set before the communicators exist, unless the user chose.
    setenv("NCCL_NVLS_ENABLE", "0", 0);
    for (const Range& r : vocab_of_) width_ = std::max(width_, r.size());
    comms_.resize(devices.size());
    nccl_check(ncclCommInitAll(comms_.data(), static_cast<int>(devices.size()), devices.data()), "ncclCommInitAll");
    padded_.resize(devices.size());
    gathered_.resize(devices.size());
  }
  ~NcclCollectives() override {
    for (ncclComm_t c : comms_)
      if (c) ncclCommDestroy(c);
  }
  std::string kind() const override { return "nccl"; }

  DeviceRankHooks hooks(int rank) override {
    const auto r = static_cast<size_t>(rank);
    const int world = static_cast<int>(devices_.size());
    MLABENCH_CUDA(cudaSetDevice(devices_[r]));
    // Allocated here, on the rank's GPU, once: a captured graph keeps the pointers.
    padded_[r] = gpu::DeviceBuffer(static_cast<size_t>(max_rows_ * width_) * 4, "NCCL logits (padded)");
    gathered_[r] = gpu::DeviceBuffer(static_cast<size_t>(world * max_rows_ * width_) * 4, "NCCL logits (gathered)");
    DeviceRankHooks h;
    ncclComm_t comm = comms_[r];
    h.all_reduce = [comm](float* data, int64_t n, void* stream) {
      nccl_check(ncclAllReduce(data, data, static_cast<size_t>(n), ncclFloat32, ncclSum, comm, as_stream(stream)),
                 "ncclAllReduce");
    };
    float* padded = padded_[r].as<float>();
    float* gathered = gathered_[r].as<float>();
    h.gather_logits = [this, comm, padded, gathered, rank](const float* local, int64_t rows, int64_t local_vocab,
                                                            float* logits, void* stream) {
      MLABENCH_ICHECK(rows <= max_rows_ && local_vocab == vocab_of_[static_cast<size_t>(rank)].size(),
                      "rank {}: {} logit rows of {} vocabulary rows (bounds {} and {})", rank, rows, local_vocab,
                      max_rows_, vocab_of_[static_cast<size_t>(rank)].size());
      const cudaStream_t s = as_stream(stream);
      const size_t w = static_cast<size_t>(width_) * 4, lw = static_cast<size_t>(local_vocab) * 4;
      MLABENCH_CUDA(cudaMemcpy2DAsync(padded, w, local, lw, lw, static_cast<size_t>(rows), cudaMemcpyDeviceToDevice, s));
      nccl_check(ncclAllGather(padded, gathered, static_cast<size_t>(rows * width_), ncclFloat32, comm, s),
                 "ncclAllGather");
      for (size_t q = 0; q < vocab_of_.size(); ++q) {
        const Range vr = vocab_of_[q];
        MLABENCH_CUDA(cudaMemcpy2DAsync(logits + vr.begin, static_cast<size_t>(vocab_) * 4,
                                        gathered + static_cast<int64_t>(q) * rows * width_, w,
                                        static_cast<size_t>(vr.size()) * 4, static_cast<size_t>(rows),
                                        cudaMemcpyDeviceToDevice, s));
      }
    };
    if (dp_) {
      h.gather_rows = [this, comm, rank, world](const float* mine, int64_t rows, int64_t width, float* all,
                                                int64_t& all_rows, void* stream) {
        const std::vector<int64_t> counts = group_.all_gather_counts(rank, rows);
        int64_t first = 0, at = 0;
        nccl_check(ncclGroupStart(), "ncclGroupStart");
        for (int q = 0; q < world; ++q) {
          const int64_t n = counts[static_cast<size_t>(q)] * width;
          if (q == rank) first = at / width;
          if (n > 0)
            nccl_check(ncclBroadcast(mine, all + at, static_cast<size_t>(n), ncclFloat32, q, comm,
                                     as_stream(stream)),
                       "ncclBroadcast");
          at += n;
        }
        nccl_check(ncclGroupEnd(), "ncclGroupEnd");
        all_rows = at / width;
        return first;
      };
      h.reduce_rows = [comm](float* all, int64_t all_rows, int64_t width, int64_t first, int64_t rows, float* mine,
                             void* stream) {
        const cudaStream_t s = as_stream(stream);
        if (all_rows > 0)
          nccl_check(ncclAllReduce(all, all, static_cast<size_t>(all_rows * width), ncclFloat32, ncclSum, comm, s),
                     "ncclAllReduce");
        if (rows > 0)
          MLABENCH_CUDA(cudaMemcpyAsync(mine, all + first * width, static_cast<size_t>(rows * width) * 4,
                                        cudaMemcpyDeviceToDevice, s));
      };
    }
    h.graph_capturable = !dp_;
    return h;
  }

 private:
  HostGroup& group_;
  bool dp_ = false;
  std::vector<int> devices_;
  int64_t vocab_, max_rows_, width_ = 0;
  std::vector<Range> vocab_of_;
  std::vector<ncclComm_t> comms_;
  std::vector<gpu::DeviceBuffer> padded_, gathered_;
};

#endif  // MLABENCH_HAVE_NCCL

}  // namespace

std::vector<int> place_ranks(int world, int first_device) {
  std::string why;
  MLABENCH_CHECK(gpu::cuda_device_available(&why),
                 "--device cuda needs a CUDA GPU: {}. HINT: run on a machine with an NVIDIA GPU, or use --device cpu",
                 why);
  int devices = 0;
  MLABENCH_CUDA(cudaGetDeviceCount(&devices));
  check_cuda_device_index(first_device, devices);
  const int usable = devices - first_device;
  std::vector<int> out;
  for (int r = 0; r < world; ++r) out.push_back(first_device + r % usable);
  return out;
}

std::unique_ptr<DeviceCollectives> make_device_collectives(HostGroup& group, const std::vector<int>& devices,
                                                           int64_t vocab, int64_t max_rows, bool prefer_host,
                                                           bool dp_attention) {
  const bool distinct = std::set<int>(devices.begin(), devices.end()).size() == devices.size();
#if MLABENCH_HAVE_NCCL
  if (distinct && !prefer_host) return std::make_unique<NcclCollectives>(group, devices, vocab, max_rows, dp_attention);
#else
  (void)max_rows;
  (void)distinct;
  (void)prefer_host;
#endif
  return std::make_unique<HostStagedCollectives>(group, vocab, dp_attention);
}

}  // namespace mlabench::parallel
