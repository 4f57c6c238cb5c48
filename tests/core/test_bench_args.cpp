// The bench programs' shared command-line pieces (bench/bench_args.h): whole numbers read strictly, and a throwing
// run turned into exit 1 with its message. No GPU: every bench program's parsing goes through these two.
#include "bench/bench_args.h"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

namespace mlabench::bench {
namespace {

TEST(BenchArgs, ParseCountTakesWholeNumbersInRangeOnly) {
  int v = -1;
  EXPECT_TRUE(parse_count("--reps", "20", 20, 100, &v));
  EXPECT_EQ(v, 20);
  EXPECT_TRUE(parse_count("--reps", "100", 20, 100, &v));
  EXPECT_EQ(v, 100);
  for (const char* bad : {"19", "101", "", "x", "20x", "2.5", " ", "-20"}) {
    v = 7;
    testing::internal::CaptureStderr();
    EXPECT_FALSE(parse_count("--reps", bad, 20, 100, &v)) << "accepted '" << bad << "'";
    const std::string said = testing::internal::GetCapturedStderr();
    EXPECT_EQ(v, 7) << "wrote the value of a refused '" << bad << "'";
    EXPECT_NE(said.find("--reps"), std::string::npos) << said;
    EXPECT_NE(said.find("from 20 to 100"), std::string::npos) << said;
  }
}

TEST(BenchArgs, MainGuardedTurnsAnExceptionIntoExitOne) {
  char name[] = "bench";
  char* argv[] = {name, nullptr};
  EXPECT_EQ(main_guarded("bench", [](int argc, char**) { return argc == 1 ? 3 : 4; }, 1, argv), 3);
  testing::internal::CaptureStderr();
  const int rc = main_guarded("bench_x", [](int, char**) -> int { throw std::runtime_error("no GPU here"); }, 1, argv);
  const std::string said = testing::internal::GetCapturedStderr();
  EXPECT_EQ(rc, 1);
  EXPECT_EQ(said, "bench_x: no GPU here\n");
}

}  // namespace
}  // namespace mlabench::bench
