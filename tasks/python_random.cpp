#include "tasks/python_random.h"

#include <bit>
#include <cmath>
#include <unordered_set>

#include "core/check.h"

namespace mlabench::tasks {

namespace {
constexpr int N = 624;
constexpr int M = 397;
constexpr uint32_t MATRIX_A = 0x9908b0dfU;
constexpr uint32_t UPPER_MASK = 0x80000000U;
constexpr uint32_t LOWER_MASK = 0x7fffffffU;
}  // namespace

void PythonRandom::init_genrand(uint32_t s) {
  state_[0] = s;
  for (int i = 1; i < N; ++i) {
    state_[i] = 1812433253U * (state_[i - 1] ^ (state_[i - 1] >> 30)) + static_cast<uint32_t>(i);
  }
  index_ = N;
}

PythonRandom::PythonRandom(uint64_t seed) {
  // CPython random_seed(): the key is abs(seed) as 32-bit words, and zero is the one-word key {0}.
  std::vector<uint32_t> key;
  for (uint64_t v = seed; v != 0; v >>= 32) key.push_back(static_cast<uint32_t>(v & 0xffffffffU));
  if (key.empty()) key.push_back(0);

  init_genrand(19650218U);
  int i = 1;
  size_t j = 0;
  const int key_length = static_cast<int>(key.size());
  for (int k = (N > key_length ? N : key_length); k > 0; --k) {
    state_[i] = (state_[i] ^ ((state_[i - 1] ^ (state_[i - 1] >> 30)) * 1664525U)) + key[j] + static_cast<uint32_t>(j);
    ++i;
    ++j;
    if (i >= N) {
      state_[0] = state_[N - 1];
      i = 1;
    }
    if (j >= key.size()) j = 0;
  }
  for (int k = N - 1; k > 0; --k) {
    state_[i] = (state_[i] ^ ((state_[i - 1] ^ (state_[i - 1] >> 30)) * 1566083941U)) - static_cast<uint32_t>(i);
    ++i;
    if (i >= N) {
      state_[0] = state_[N - 1];
      i = 1;
    }
  }
  state_[0] = 0x80000000U;  // MSB is 1, assuring a non-zero initial array
  index_ = N;
}

uint32_t PythonRandom::next_uint32() {
  static constexpr uint32_t mag01[2] = {0x0U, MATRIX_A};
  if (index_ >= N) {
    int kk = 0;
    for (; kk < N - M; ++kk) {
      const uint32_t y = (state_[kk] & UPPER_MASK) | (state_[kk + 1] & LOWER_MASK);
      state_[kk] = state_[kk + M] ^ (y >> 1) ^ mag01[y & 0x1U];
    }
    for (; kk < N - 1; ++kk) {
      const uint32_t y = (state_[kk] & UPPER_MASK) | (state_[kk + 1] & LOWER_MASK);
      state_[kk] = state_[kk + (M - N)] ^ (y >> 1) ^ mag01[y & 0x1U];
    }
    const uint32_t y = (state_[N - 1] & UPPER_MASK) | (state_[0] & LOWER_MASK);
    state_[N - 1] = state_[M - 1] ^ (y >> 1) ^ mag01[y & 0x1U];
    index_ = 0;
  }
  uint32_t y = state_[index_++];
  y ^= (y >> 11);
  y ^= (y << 7) & 0x9d2c5680U;
  y ^= (y << 15) & 0xefc60000U;
  y ^= (y >> 18);
  return y;
}

uint64_t PythonRandom::getrandbits(int k) {
  MLABENCH_ICHECK(k >= 0 && k <= 64, "getrandbits({}) outside 0..64", k);
  if (k == 0) return 0;
  if (k <= 32) return next_uint32() >> (32 - k);
  // CPython fills 32-bit words least significant first and drops the surplus high bits of the last word.
  const uint64_t low = next_uint32();
  const uint64_t high = next_uint32() >> (64 - k);
  return low | (high << 32);
}

uint64_t PythonRandom::randbelow(uint64_t n) {
  MLABENCH_ICHECK(n > 0, "randbelow(0)");
  const int k = std::bit_width(n);
  uint64_t r = getrandbits(k);
  while (r >= n) r = getrandbits(k);
  return r;
}

std::vector<int64_t> PythonRandom::sample_indices(int64_t n, int64_t k) {
  MLABENCH_CHECK(k >= 0 && k <= n,
                 "sample of {} from a population of {}: needs 0 <= k <= n. HINT: ask for fewer "
                 "few-shot examples (--num-fewshot) or use a larger few-shot split",
                 k, n);
  std::vector<int64_t> result(static_cast<size_t>(k));
  // CPython's cut-over between the two algorithms (the memory a set would take), computed as it does.
  int64_t setsize = 21;
  if (k > 5)
    setsize += static_cast<int64_t>(std::pow(4.0, std::ceil(std::log(static_cast<double>(k * 3)) / std::log(4.0))));
  if (n <= setsize) {
    std::vector<int64_t> pool(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) pool[static_cast<size_t>(i)] = i;
    for (int64_t i = 0; i < k; ++i) {
      const auto j = static_cast<size_t>(randbelow(static_cast<uint64_t>(n - i)));
      result[static_cast<size_t>(i)] = pool[j];
      pool[j] = pool[static_cast<size_t>(n - i - 1)];
    }
  } else {
    std::unordered_set<int64_t> selected;
    for (int64_t i = 0; i < k; ++i) {
      auto j = static_cast<int64_t>(randbelow(static_cast<uint64_t>(n)));
      while (selected.contains(j)) j = static_cast<int64_t>(randbelow(static_cast<uint64_t>(n)));
      selected.insert(j);
      result[static_cast<size_t>(i)] = j;
    }
  }
  return result;
}

}  // namespace mlabench::tasks
