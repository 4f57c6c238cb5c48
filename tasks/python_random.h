// CPython's `random.Random`, bit for bit, for the parts lm-evaluation-harness's default few-shot sampler uses:
// seeding from an integer, getrandbits, _randbelow and sample(). lm-eval draws GSM8K's shots with
// `Random(1234).sample(train_docs, 5)` once per document; reproducing its prompts needs the same stream.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

namespace mlabench::tasks {

class PythonRandom {
 public:
  /// `random.Random(seed)` for a non-negative integer seed (CPython seeds MT19937 with init_by_array over the
  /// seed's 32-bit words, least significant first).
  explicit PythonRandom(uint64_t seed);

  uint32_t next_uint32();          ///< genrand_uint32
  uint64_t getrandbits(int k);     ///< `getrandbits(k)`, 0 <= k <= 64
  uint64_t randbelow(uint64_t n);  ///< `_randbelow(n)`, n > 0
  /// `sample(range(n), k)`: the indices `sample(population, k)` picks, in order (both of CPython's algorithms:
  /// the pool for small populations, the rejection set for large ones).
  std::vector<int64_t> sample_indices(int64_t n, int64_t k);

 private:
  void init_genrand(uint32_t s);
  std::array<uint32_t, 624> state_{};
  int index_ = 625;
};

}  // namespace mlabench::tasks
