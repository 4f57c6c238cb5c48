// PythonRandom against values printed by CPython 3.11 (`random.Random(seed)`), so lm-eval's random few-shot
// sampler can be reproduced. Regenerate with the python3 one-liners in each test's comment.
#include <gtest/gtest.h>

#include "tasks/python_random.h"

namespace mlabench::tasks {
namespace {

// r = random.Random(1234); [r.getrandbits(32) for _ in range(3)]
TEST(PythonRandom, GetrandbitsMatchesCpythonForSmallSeeds) {
  PythonRandom r(1234);
  EXPECT_EQ(r.getrandbits(32), 4150886329u);
  EXPECT_EQ(r.getrandbits(32), 3342196574u);
  EXPECT_EQ(r.getrandbits(32), 1892932127u);
  PythonRandom zero(0);
  EXPECT_EQ(zero.getrandbits(32), 3626764237u);
  EXPECT_EQ(zero.getrandbits(32), 1654615998u);
}

// r = random.Random(2**40 + 5): two 32-bit words of key; then getrandbits(40) and getrandbits(64)
TEST(PythonRandom, MultiWordSeedAndWideGetrandbits) {
  PythonRandom r((1ull << 40) + 5);
  EXPECT_EQ(r.getrandbits(32), 2166296868u);
  EXPECT_EQ(r.getrandbits(32), 2220160828u);
  EXPECT_EQ(r.getrandbits(40), 727003120297ull);
  EXPECT_EQ(r.getrandbits(64), 505956256775690464ull);
}

// r = random.Random(1234); [r.sample(range(7473), 5) for _ in range(3)]  (GSM8K train: the rejection-set path)
TEST(PythonRandom, SampleFromLargePopulationMatchesCpython) {
  PythonRandom r(1234);
  EXPECT_EQ(r.sample_indices(7473, 5), (std::vector<int64_t>{6374, 3610, 957, 61, 742}));
  EXPECT_EQ(r.sample_indices(7473, 5), (std::vector<int64_t>{7462, 6610, 4769, 286, 5501}));
  EXPECT_EQ(r.sample_indices(7473, 5), (std::vector<int64_t>{5677, 687, 806, 6279, 2905}));
}

// r = random.Random(7); r.sample(range(20), 5), r.sample(range(100), 30)  (the pool path, twice)
TEST(PythonRandom, SampleFromSmallPopulationMatchesCpython) {
  PythonRandom r(7);
  EXPECT_EQ(r.sample_indices(20, 5), (std::vector<int64_t>{10, 4, 12, 1, 2}));
  EXPECT_EQ(r.sample_indices(100, 30),
            (std::vector<int64_t>{68, 12, 46, 74, 7,  64, 27, 4,  11, 55, 53, 8,  30, 91, 70,
                                  54, 95, 72, 15, 28, 96, 83, 73, 79, 50, 6,  80, 5,  71, 17}));
}

TEST(PythonRandom, SampleLargerThanPopulationIsAnError) {
  PythonRandom r(1);
  EXPECT_THROW(r.sample_indices(3, 4), std::exception);
}

}  // namespace
}  // namespace mlabench::tasks
