// A standalone check of one flash prefill kernel variant (MLABENCH_FLASH picks it, as in the engine), built with
// nvcc alone from five sources so that it runs on a GPU machine without the CMake build, for device calls too short
// for one: tools/gpu/flash_variant_check.sh OUT_DIR [variants...] builds it and runs it under each variant.
// Each run writes the float32 outputs of ragged batches (a chunk over a cached prefix, whole prompts off the tile
// sizes, single rows; NaN past every sequence's keys and in every unused pool slot) to OUT_DIR/<variant>_{mla,gqa}.bin
// and times MLA 16 heads and GQA 32/8 x 128 causal prefill at 1 x 32K (20 back-to-back calls between events, after 3
// warm-up calls). Two variants that differ only in scheduling must write the same bytes (the script compares them);
// the variants' correctness against the CPU twin is test_cuda_kernels' (CudaAttention.FlashBf16*, under
// MLABENCH_FLASH=<variant>).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "engine/kernels/cuda/flash_prefill.h"

namespace {

using mlabench::kernels::GqaAttentionParams;
using mlabench::kernels::MlaPrefillParams;
namespace flash = mlabench::kernels::cuda::flash;

#define CK(x)                                                                                   \
  do {                                                                                          \
    cudaError_t e_ = (x);                                                                       \
    if (e_ != cudaSuccess) {                                                                    \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      std::exit(2);                                                                             \
    }                                                                                           \
  } while (0)

uint16_t bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}
constexpr uint16_t kNaN = 0x7FC0;

template <class T>
T* dev(const std::vector<T>& h) {
  T* d = nullptr;
  CK(cudaMalloc(&d, h.size() * sizeof(T)));
  CK(cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}

std::vector<uint16_t> randn_bf16(size_t n, std::mt19937& rng) {
  std::normal_distribution<float> nd;
  std::vector<uint16_t> v(n);
  for (auto& x : v) x = bf16(nd(rng));
  return v;
}

struct Batch {
  std::vector<int32_t> cu_q{0}, kv_len, cu_kv{0};
  int32_t max_q = 0, max_kv = 0;
  void add(int32_t q, int32_t kv) {
    cu_q.push_back(cu_q.back() + q);
    kv_len.push_back(kv);
    cu_kv.push_back(cu_kv.back() + kv);
    max_q = std::max(max_q, q), max_kv = std::max(max_kv, kv);
  }
  int32_t n() const { return static_cast<int32_t>(kv_len.size()); }
};

float time_ms(const std::function<void()>& f) {
  for (int i = 0; i < 3; ++i) f();
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  CK(cudaEventRecord(a));
  for (int i = 0; i < 20; ++i) f();
  CK(cudaEventRecord(b));
  CK(cudaEventSynchronize(b));
  float ms = 0;
  CK(cudaEventElapsedTime(&ms, a, b));
  CK(cudaGetLastError());
  return ms / 20;
}

// MLA (16 heads, 192 / 128), decompressed keys in BF16 with kPad NaN rows past the last key inside n_keys.
MlaPrefillParams make_mla(const Batch& b, std::mt19937& rng, int64_t* out_floats) {
  const int heads = 16, nope = 128, rope = 64, v = 128, kPad = 131;
  const int64_t rows = b.cu_q.back(), keys = b.cu_kv.back();
  const int64_t ld_q = heads * (nope + rope), ld_kv = heads * (nope + v), ld_kpe = 576, ld_out = heads * v;
  auto q = randn_bf16(static_cast<size_t>(rows * ld_q), rng);
  auto kv = randn_bf16(static_cast<size_t>((keys + kPad) * ld_kv), rng);
  auto lat = randn_bf16(static_cast<size_t>((keys + kPad) * ld_kpe), rng);
  std::fill(kv.begin() + keys * ld_kv, kv.end(), kNaN);
  std::fill(lat.begin() + keys * ld_kpe, lat.end(), kNaN);
  MlaPrefillParams p;
  p.batch = {b.n(), dev(b.cu_q), dev(b.kv_len), b.max_q, b.max_kv};
  p.cu_kv = dev(b.cu_kv);
  p.q_bf16 = dev(q);
  p.ld_q = ld_q;
  p.kv_bf16 = dev(kv);
  p.ld_kv = ld_kv;
  p.k_pe_bf16 = dev(lat) + 512;
  p.ld_kpe = ld_kpe;
  p.ld_out = ld_out;
  p.n_heads = heads, p.nope = nope, p.rope = rope, p.v = v;
  p.scale = 0.0723f;
  p.n_keys = keys + kPad;
  std::vector<float> poison(static_cast<size_t>(rows * ld_out), -7.0f);
  p.out = dev(poison);
  *out_floats = rows * ld_out;
  return p;
}

// GQA 32/8 x 128 over a paged pool of 64-slot blocks in shuffled order, NaN in every slot no sequence owns.
GqaAttentionParams make_gqa(const Batch& b, std::mt19937& rng, int64_t* out_floats) {
  const int heads = 32, kvh = 8, hd = 128, bs = 64;
  const int64_t rows = b.cu_q.back(), w = int64_t{kvh} * hd, ld_q = int64_t{heads} * hd;
  int32_t max_blocks = 1, total = 1;
  for (int32_t n : b.kv_len) max_blocks = std::max(max_blocks, (n + bs - 1) / bs), total += (n + bs - 1) / bs;
  std::vector<int32_t> ids(static_cast<size_t>(total));
  for (int32_t i = 0; i < total; ++i) ids[static_cast<size_t>(i)] = i;
  std::shuffle(ids.begin(), ids.end(), rng);
  std::vector<int32_t> table(static_cast<size_t>(b.n() * max_blocks), ids[0]);
  std::vector<uint16_t> kc(static_cast<size_t>(total) * bs * w, kNaN), vc = kc;
  std::normal_distribution<float> nd;
  size_t next = 1;
  for (int32_t s = 0; s < b.n(); ++s)
    for (int32_t i = 0; i < (b.kv_len[static_cast<size_t>(s)] + bs - 1) / bs; ++i) {
      const int32_t blk = ids[next++];
      table[static_cast<size_t>(s * max_blocks + i)] = blk;
      for (int32_t j = 0; j < bs && i * bs + j < b.kv_len[static_cast<size_t>(s)]; ++j)
        for (int64_t c = 0; c < w; ++c) {
          kc[static_cast<size_t>((int64_t{blk} * bs + j) * w + c)] = bf16(nd(rng));
          vc[static_cast<size_t>((int64_t{blk} * bs + j) * w + c)] = bf16(nd(rng));
        }
    }
  auto q = randn_bf16(static_cast<size_t>(rows * ld_q), rng);
  GqaAttentionParams p;
  p.batch = {b.n(), dev(b.cu_q), dev(b.kv_len), b.max_q, b.max_kv};
  p.paged = {.block_size = bs, .block_tables = dev(table), .max_blocks = max_blocks};
  p.k_cache = dev(kc), p.v_cache = dev(vc);
  p.n_slots = int64_t{total} * bs;
  p.q_bf16 = dev(q);
  p.ld_q = ld_q, p.ld_out = ld_q;
  p.n_heads = heads, p.n_kv_heads = kvh, p.head_dim = hd;
  p.scale = 0.088f;
  std::vector<float> poison(static_cast<size_t>(rows * ld_q), -7.0f);
  p.out = dev(poison);
  *out_floats = rows * ld_q;
  return p;
}

void save(const std::string& path, const float* d, int64_t n) {
  std::vector<float> h(static_cast<size_t>(n));
  CK(cudaMemcpy(h.data(), d, h.size() * 4, cudaMemcpyDeviceToHost));
  size_t bad = 0;
  for (float x : h) bad += !std::isfinite(x) || x == -7.0f;
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f || std::fwrite(h.data(), 4, h.size(), f) != h.size()) std::exit(3);
  std::fclose(f);
  std::printf("%s: %lld floats, %zu not finite or unwritten\n", path.c_str(), static_cast<long long>(n), bad);
  if (bad) std::exit(4);
}

}  // namespace

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : ".";
  const std::string variant = flash::kernel_name();
  std::mt19937 rng(7);
  Batch ragged;  // a chunk deep into a prompt, whole prompts off the tile sizes, one row
  for (auto [q, kv] : {std::pair{300, 16411}, {4100, 4100}, {1, 129}, {65, 65}, {129, 1000}}) ragged.add(q, kv);
  int64_t n = 0;
  const MlaPrefillParams mla = make_mla(ragged, rng, &n);
  flash::mla_prefill_bf16(mla, nullptr);
  CK(cudaDeviceSynchronize());
  save(dir + "/" + variant + "_mla.bin", mla.out, n);
  const GqaAttentionParams gqa = make_gqa(ragged, rng, &n);
  flash::gqa_prefill_bf16(gqa, nullptr);
  CK(cudaDeviceSynchronize());
  save(dir + "/" + variant + "_gqa.bin", gqa.out, n);

  Batch big;  // 1 x 32K causal
  big.add(32768, 32768);
  const double pairs = 32768.0 * 32769 / 2;
  const MlaPrefillParams mla_big = make_mla(big, rng, &n);
  const float mla_ms = time_ms([&] { flash::mla_prefill_bf16(mla_big, nullptr); });
  const GqaAttentionParams gqa_big = make_gqa(big, rng, &n);
  const float gqa_ms = time_ms([&] { flash::gqa_prefill_bf16(gqa_big, nullptr); });
  std::printf("variant %-9s MLA 16 heads 1 x 32K causal %.3f ms %.1f TFLOP/s | GQA 32/8 x 128 1 x 32K causal %.3f ms %.1f "
              "TFLOP/s\n",
              variant.c_str(), mla_ms, 2.0 * 16 * (192 + 128) * pairs / (mla_ms * 1e9), gqa_ms,
              2.0 * 32 * (128 + 128) * pairs / (gqa_ms * 1e9));
  return 0;
}
