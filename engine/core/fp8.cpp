// e4m3fn by bit manipulation (tested against a nearest-value search over all 256 codes, every tie between two codes
// included), and the block quantisers built on it.
#include "engine/core/fp8.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/check.h"

namespace mlabench {

namespace {

float decode_e4m3(uint8_t c) {
  if ((c & 0x7fu) == 0x7fu) return std::numeric_limits<float>::quiet_NaN();
  const int e = (c >> 3) & 0xf, m = c & 7;
  const float v = e == 0 ? static_cast<float>(m) / 512.0f : std::ldexp(1.0f + static_cast<float>(m) / 8.0f, e - 7);
  return (c & 0x80u) ? -v : v;
}

const std::array<float, 256>& e4m3_table() {
  static const std::array<float, 256> t = [] {
    std::array<float, 256> a{};
    for (int c = 0; c < 256; ++c) a[static_cast<size_t>(c)] = decode_e4m3(static_cast<uint8_t>(c));
    return a;
  }();
  return t;
}

}  // namespace

float e4m3_to_f32(uint8_t code) { return e4m3_table()[code]; }

uint8_t f32_to_e4m3(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  const auto sign = static_cast<uint8_t>((bits >> 24) & 0x80u);
  const uint32_t mag = bits & 0x7fffffffu;
  if (mag > 0x7f800000u) return sign | 0x7fu;   // NaN
  if (mag >= 0x43e00000u) return sign | 0x7eu;  // |f| >= 448 (infinity included): the largest finite
  const int e = static_cast<int>(mag >> 23) - 127;
  if (e < -6) {
    // Below e4m3's smallest normal (2^-6): multiples of 2^-9. |f| * 512 is exact and below 8; nearbyint rounds ties
    // to even. 8 rounds up into code 8, which is the smallest normal.
    return sign | static_cast<uint8_t>(std::nearbyint(std::fabs(f) * 512.0f));
  }
  uint32_t mant = (mag & 0x7fffffu) >> 20, exp = static_cast<uint32_t>(e + 7);
  const uint32_t rest = mag & 0xfffffu;  // the 20 bits rounded off
  if (rest > 0x80000u || (rest == 0x80000u && (mant & 1u)))
    if (++mant == 8) mant = 0, ++exp;
  return sign | static_cast<uint8_t>(std::min<uint32_t>((exp << 3) | mant, 0x7eu));
}

float fp8_block_scale(float amax) {
  if (!(amax > 0.0f)) return 1.0f;
  const float s = amax / kE4m3Max;
  return s > 0.0f ? s : std::numeric_limits<float>::denorm_min();  // amax / 448 underflowed
}

namespace {

// Block row bi of quantize_fp8_blocks (rows [128 bi, 128 bi + 128)): each block's amax, scale and codes. False
// where the row holds a value that is not finite, with its blocks from that one on unwritten (the caller names it).
bool quantize_block_row(std::span<const float> w, int64_t n, int64_t k, int64_t bi, std::span<uint8_t> codes,
                        std::span<float> scale_inv) {
  const int64_t kb = (k + kFp8Block - 1) / kFp8Block;
  for (int64_t bj = 0; bj < kb; ++bj) {
    const int64_t r0 = bi * kFp8Block, r1 = std::min(n, r0 + kFp8Block);
    const int64_t c0 = bj * kFp8Block, c1 = std::min(k, c0 + kFp8Block);
    float amax = 0.0f;
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t c = c0; c < c1; ++c) {
        const float v = w[static_cast<size_t>(r * k + c)];
        if (!std::isfinite(v)) return false;
        amax = std::max(amax, std::fabs(v));
      }
    const float s = fp8_block_scale(amax);
    scale_inv[static_cast<size_t>(bi * kb + bj)] = s;
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t c = c0; c < c1; ++c)
        codes[static_cast<size_t>(r * k + c)] = f32_to_e4m3(w[static_cast<size_t>(r * k + c)] / s);
  }
  return true;
}

}  // namespace

void quantize_fp8_blocks(std::span<const float> w, int64_t n, int64_t k, std::span<uint8_t> codes,
                         std::span<float> scale_inv, const char* what) {
  const int64_t nb = (n + kFp8Block - 1) / kFp8Block, kb = (k + kFp8Block - 1) / kFp8Block;
  MLABENCH_ICHECK(static_cast<int64_t>(w.size()) == n * k && static_cast<int64_t>(codes.size()) == n * k &&
                      static_cast<int64_t>(scale_inv.size()) == nb * kb,
                  "quantize_fp8_blocks({}): {} values, {} codes, {} scales for [{}, {}]", what, w.size(), codes.size(),
                  scale_inv.size(), n, k);
  // Block rows are independent (a checkpoint's matrix, or a test's lm_head, is millions of values): the threads
  // share them. A value that is not finite cannot throw from inside the parallel loop, so it is only flagged there.
  bool finite = true;
#pragma omp parallel for schedule(static) reduction(&& : finite) if (n * k >= (int64_t{1} << 16))
  for (int64_t bi = 0; bi < nb; ++bi) finite = quantize_block_row(w, n, k, bi, codes, scale_inv) && finite;
  if (finite) return;
  // The first such value in block order, as a serial pass over the blocks meets it.
  for (int64_t bi = 0; bi < nb; ++bi)
    for (int64_t bj = 0; bj < kb; ++bj)
      for (int64_t r = bi * kFp8Block; r < std::min(n, (bi + 1) * kFp8Block); ++r)
        for (int64_t c = bj * kFp8Block; c < std::min(k, (bj + 1) * kFp8Block); ++c) {
          const float v = w[static_cast<size_t>(r * k + c)];
          MLABENCH_CHECK(std::isfinite(v),
                         "{}: element [{}, {}] is {}; an FP8 block scale cannot represent it. HINT: the checkpoint is "
                         "broken; load it without --weights-dtype fp8 to see where", what, r, c, v);
        }
}

uint8_t quantize_e4m3(float x, float scale) {
  const float v = x / scale;
  if (std::isnan(v)) return std::signbit(x) ? uint8_t{0xff} : uint8_t{0x7f};
  return f32_to_e4m3(v);
}

void fake_quantize_fp8_row(float* x, int64_t k) {
  for (int64_t c0 = 0; c0 < k; c0 += kFp8Block) {
    const int64_t c1 = std::min(k, c0 + kFp8Block);
    float amax = 0.0f;
    for (int64_t c = c0; c < c1; ++c) amax = std::max(amax, std::fabs(x[c]));  // max ignores NaN here
    const float s = fp8_block_scale(amax);
    for (int64_t c = c0; c < c1; ++c) x[c] = e4m3_to_f32(f32_to_e4m3(x[c] / s)) * s;
  }
}

}  // namespace mlabench
