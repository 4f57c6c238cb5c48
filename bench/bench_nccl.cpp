// NCCL between the GPUs of one host (issue 22): the all-reduce and all-gather the sharded engine will run after
// each attention block and FFN (engine/parallel/shard_plan.h), at the sizes a decode step and a prefill chunk give,
// checked against the CPU twin's rank-order sum and timed.
//
//   bench_nccl [--reps N]
//
// One process drives every visible GPU (ncclCommInitAll, one stream a GPU, grouped calls), as the engine will.
// NVLink multicast (NVLS) stays off: NCCL_NVLS_ENABLE=0 is forced before the communicators exist (the device
// README: a program that uses it can take the host's GPUs out of service). Each row: the median of --reps
// (default 30) calls after 5 warm-up calls, timed between CUDA events on every GPU's stream (the slowest), and for the
// all-reduce also per call in a CUDA graph of 20 (graph_us, as a decode step will run it); algbw =
// bytes / time; busbw = algbw x 2 (n - 1) / n for the all-reduce and x (n - 1) / n for the all-gather (nccl-tests'
// convention: what each link carried). The inputs are small integers held as floats, so every summation order
// gives the same bits and the check against the CPU twin (HostGroup) is exact.
#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bench/bench_args.h"
#include "engine/parallel/host_collectives.h"

namespace {

void cuda_ok(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "bench_nccl: %s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}
void nccl_ok(ncclResult_t r, const char* what) {
  if (r != ncclSuccess) {
    std::fprintf(stderr, "bench_nccl: %s: %s. HINT: is every GPU visible and NCCL's library the toolkit's?\n", what,
                 ncclGetErrorString(r));
    std::exit(1);
  }
}

struct Rank {
  int device = 0;
  cudaStream_t stream{};
  cudaEvent_t start{}, stop{};
  float *send = nullptr, *recv = nullptr;
};

// Median microseconds of `reps` grouped calls of op(rank) on every rank, each timed on every stream (the slowest).
template <class Op>
double time_us(std::vector<Rank>& ranks, int reps, Op&& op) {
  std::vector<double> t;
  for (int i = 0; i < reps + 5; ++i) {
    for (Rank& r : ranks) {
      cuda_ok(cudaSetDevice(r.device), "cudaSetDevice");
      cuda_ok(cudaEventRecord(r.start, r.stream), "cudaEventRecord");
    }
    nccl_ok(ncclGroupStart(), "ncclGroupStart");
    for (size_t k = 0; k < ranks.size(); ++k) op(k);
    nccl_ok(ncclGroupEnd(), "ncclGroupEnd");
    double slowest = 0;
    for (Rank& r : ranks) {
      cuda_ok(cudaSetDevice(r.device), "cudaSetDevice");
      cuda_ok(cudaEventRecord(r.stop, r.stream), "cudaEventRecord");
      cuda_ok(cudaEventSynchronize(r.stop), "cudaEventSynchronize");
      float ms = 0;
      cuda_ok(cudaEventElapsedTime(&ms, r.start, r.stop), "cudaEventElapsedTime");
      slowest = std::max(slowest, 1e3 * ms);
    }
    if (i >= 5) t.push_back(slowest);
  }
  if (t.empty()) return 0.0;  // warm-up only
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// The same per call, `calls` grouped calls captured in one CUDA graph per GPU and replayed (how a decode step will
// run them: no host work between kernels), median of `reps` replays.
template <class Op>
double graph_us(std::vector<Rank>& ranks, int reps, int calls, Op&& op) {
  std::vector<cudaGraphExec_t> exec(ranks.size());
  for (Rank& r : ranks) {
    cuda_ok(cudaSetDevice(r.device), "cudaSetDevice");
    cuda_ok(cudaStreamBeginCapture(r.stream, cudaStreamCaptureModeRelaxed), "cudaStreamBeginCapture");
  }
  for (int c = 0; c < calls; ++c) {
    nccl_ok(ncclGroupStart(), "ncclGroupStart");
    for (size_t k = 0; k < ranks.size(); ++k) op(k);
    nccl_ok(ncclGroupEnd(), "ncclGroupEnd");
  }
  for (size_t k = 0; k < ranks.size(); ++k) {
    cuda_ok(cudaSetDevice(ranks[k].device), "cudaSetDevice");
    cudaGraph_t g{};
    cuda_ok(cudaStreamEndCapture(ranks[k].stream, &g), "cudaStreamEndCapture");
    cuda_ok(cudaGraphInstantiate(&exec[k], g, 0), "cudaGraphInstantiate");
    cuda_ok(cudaGraphDestroy(g), "cudaGraphDestroy");
  }
  std::vector<double> t;
  for (int i = 0; i < reps + 2; ++i) {
    for (size_t k = 0; k < ranks.size(); ++k) {
      cuda_ok(cudaSetDevice(ranks[k].device), "cudaSetDevice");
      cuda_ok(cudaEventRecord(ranks[k].start, ranks[k].stream), "cudaEventRecord");
      cuda_ok(cudaGraphLaunch(exec[k], ranks[k].stream), "cudaGraphLaunch");
      cuda_ok(cudaEventRecord(ranks[k].stop, ranks[k].stream), "cudaEventRecord");
    }
    double slowest = 0;
    for (Rank& r : ranks) {
      cuda_ok(cudaSetDevice(r.device), "cudaSetDevice");
      cuda_ok(cudaEventSynchronize(r.stop), "cudaEventSynchronize");
      float ms = 0;
      cuda_ok(cudaEventElapsedTime(&ms, r.start, r.stop), "cudaEventElapsedTime");
      slowest = std::max(slowest, 1e3 * ms / calls);
    }
    if (i >= 2) t.push_back(slowest);
  }
  for (size_t k = 0; k < ranks.size(); ++k) {
    cudaSetDevice(ranks[k].device);
    cudaGraphExecDestroy(exec[k]);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

namespace {
int run(int argc, char** argv) {
  int reps = 30;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--reps") && i + 1 < argc) {
      if (!mlabench::bench::parse_count("--reps", argv[++i], 5, 100000, &reps)) return 2;
    } else {
      std::fprintf(stderr, "usage: %s [--reps N]\n", argv[0]);
      return 2;
    }
  }
  setenv("NCCL_NVLS_ENABLE", "0", 1);  // NVLink multicast off, whatever the caller's environment says
  int n = 0;
  cuda_ok(cudaGetDeviceCount(&n), "cudaGetDeviceCount");
  if (n < 2) {
    std::printf("bench_nccl: SKIPPED: %d GPU visible; the collectives need 2 or more\n", n);
    return 0;
  }
  int version = 0;
  ncclGetVersion(&version);
  cudaDeviceProp prop{};
  cuda_ok(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
  const char* commit = std::getenv("MLABENCH_COMMIT");
  std::printf("# %d x %s; NCCL %d; NCCL_NVLS_ENABLE=0; commit %s\n", n, prop.name, version,
              commit ? commit : "(set MLABENCH_COMMIT)");

  std::vector<int> devices(static_cast<size_t>(n));
  for (int d = 0; d < n; ++d) devices[static_cast<size_t>(d)] = d;
  std::vector<ncclComm_t> comms(static_cast<size_t>(n));
  nccl_ok(ncclCommInitAll(comms.data(), n, devices.data()), "ncclCommInitAll");
  // Sizes in floats: a decode step's hidden row at V2-Lite / V2 widths and batches 1, 64, 256; a 4K-token prefill
  // chunk of V2; 256 MB for the links' bandwidth.
  const std::vector<std::pair<const char*, size_t>> sizes = {
      {"decode b1 x 2048", 2048},          {"decode b1 x 5120", 5120},       {"decode b64 x 5120", 64 * 5120},
      {"decode b256 x 5120", 256 * 5120},  {"prefill 4K x 5120", 4096 * 5120}, {"256 MB", size_t{64} << 20}};
  const size_t max_floats = size_t{64} << 20;
  std::vector<Rank> ranks(static_cast<size_t>(n));
  std::vector<std::vector<float>> host(static_cast<size_t>(n), std::vector<float>(max_floats));
  for (int d = 0; d < n; ++d) {
    Rank& r = ranks[static_cast<size_t>(d)];
    r.device = d;
    cuda_ok(cudaSetDevice(d), "cudaSetDevice");
    cuda_ok(cudaStreamCreateWithFlags(&r.stream, cudaStreamNonBlocking), "cudaStreamCreate");
    cuda_ok(cudaEventCreate(&r.start), "cudaEventCreate");
    cuda_ok(cudaEventCreate(&r.stop), "cudaEventCreate");
    cuda_ok(cudaMalloc(&r.send, max_floats * 4 * static_cast<size_t>(n)), "cudaMalloc");
    cuda_ok(cudaMalloc(&r.recv, max_floats * 4 * static_cast<size_t>(n)), "cudaMalloc");
    auto& h = host[static_cast<size_t>(d)];
    for (size_t i = 0; i < max_floats; ++i) h[i] = static_cast<float>((i * 7 + static_cast<size_t>(d) * 13) % 29) - 14.0f;
    cuda_ok(cudaMemcpy(r.send, h.data(), max_floats * 4, cudaMemcpyHostToDevice), "cudaMemcpy");
  }

  // Correctness at the largest size: NCCL's all-reduce against the CPU twin's, bit for bit.
  const size_t check = max_floats;
  time_us(ranks, 0, [&](size_t k) {
    nccl_ok(ncclAllReduce(ranks[k].send, ranks[k].recv, check, ncclFloat, ncclSum, comms[k], ranks[k].stream),
            "ncclAllReduce");
  });
  mlabench::parallel::HostGroup group(n);
  std::vector<float> want(check);
  mlabench::parallel::run_ranks(group, [&](int rank) {
    std::vector<float> out(check);
    group.all_reduce_sum(rank, host[static_cast<size_t>(rank)].data(), out.data(), static_cast<int64_t>(check));
    if (rank == 0) want = std::move(out);
  });
  int bad = 0;
  for (int d = 0; d < n; ++d) {
    std::vector<float> got(check);
    cuda_ok(cudaSetDevice(d), "cudaSetDevice");
    cuda_ok(cudaMemcpy(got.data(), ranks[static_cast<size_t>(d)].recv, check * 4, cudaMemcpyDeviceToHost), "cudaMemcpy");
    bad += std::memcmp(got.data(), want.data(), check * 4) != 0;
  }
  std::printf("# all-reduce of %zu floats on every GPU equals the CPU twin's rank-order sum: %s\n", check,
              bad == 0 ? "yes (bit for bit)" : "NO");

  std::printf("%-8s %-20s %12s %10s %10s %10s %10s\n", "op", "size", "bytes", "time_us", "algbw", "busbw", "graph_us");
  for (const auto& [name, floats] : sizes) {
    const double bytes = 4.0 * static_cast<double>(floats);
    const double ar = time_us(ranks, reps, [&](size_t k) {
      nccl_ok(ncclAllReduce(ranks[k].send, ranks[k].recv, floats, ncclFloat, ncclSum, comms[k], ranks[k].stream),
              "ncclAllReduce");
    });
    const double ar_graph = graph_us(ranks, reps, 20, [&](size_t k) {
      nccl_ok(ncclAllReduce(ranks[k].send, ranks[k].recv, floats, ncclFloat, ncclSum, comms[k], ranks[k].stream),
              "ncclAllReduce");
    });
    std::printf("%-8s %-20s %12.0f %10.1f %9.1f %9.1f %10.1f  (GB/s; graph_us: per call in a graph of 20)\n",
                "allreduce", name, bytes, ar, bytes / (ar * 1e3), bytes / (ar * 1e3) * 2.0 * (n - 1) / n, ar_graph);
    // All-gather of each rank's 1/n (the vocabulary slices of the output head, the EP dispatch's rows).
    const size_t per = floats / static_cast<size_t>(n);
    const double ag = time_us(ranks, reps, [&](size_t k) {
      nccl_ok(ncclAllGather(ranks[k].send, ranks[k].recv, per, ncclFloat, comms[k], ranks[k].stream), "ncclAllGather");
    });
    std::printf("%-8s %-20s %12.0f %10.1f %9.1f %9.1f\n", "allgather", name, bytes, ag, bytes / (ag * 1e3),
                bytes / (ag * 1e3) * (n - 1) / n);
  }
  for (int d = 0; d < n; ++d) {
    ncclCommDestroy(comms[static_cast<size_t>(d)]);
    cudaSetDevice(d);
    cudaFree(ranks[static_cast<size_t>(d)].send);
    cudaFree(ranks[static_cast<size_t>(d)].recv);
  }
  return bad == 0 ? 0 : 1;
}
}  // namespace

// An error (the host collectives' checks) is a message and exit 1, not an uncaught exception's abort.
int main(int argc, char** argv) { return mlabench::bench::main_guarded("bench_nccl", run, argc, argv); }
