// The A/B benchmarks' environment settings (core/env_setting.h): each kind's accepted values, its default when unset,
// and every other value refused with the variable's name. No GPU: the CPU engine's MLABENCH_COLLECTIVES uses them too.
#include "core/env_setting.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <string>

#include "mlabench/result.h"

namespace mlabench {
namespace {

// 1 on, 0 off, unset the default (on, or off for an opt-in one such as MLABENCH_MOE_BF16_ROWS).
TEST(EnvSetting, OnOffOrRefusedByName) {
  const char* name = "MLABENCH_TEST_ENV_SWITCH";
  ::unsetenv(name);
  EXPECT_TRUE(env_switch(name));
  EXPECT_FALSE(env_switch(name, false)) << "an opt-in switch, unset";
  ::setenv(name, "1", 1);
  EXPECT_TRUE(env_switch(name));
  EXPECT_TRUE(env_switch(name, false));
  ::setenv(name, "0", 1);
  EXPECT_FALSE(env_switch(name));
  for (const char* bad : {"yes", "", "00", "\xff"}) {
    ::setenv(name, bad, 1);
    try {
      env_switch(name);
      ADD_FAILURE() << "accepted " << name << "=" << bad;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
    }
  }
  ::unsetenv(name);
}

TEST(EnvSetting, LevelInRangeOrRefusedByName) {
  const char* name = "MLABENCH_TEST_ENV_LEVEL";
  ::unsetenv(name);
  EXPECT_EQ(env_level(name, 1, 2), 1) << "unset: the default";
  for (int v = 0; v <= 2; ++v) {
    ::setenv(name, std::to_string(v).c_str(), 1);
    EXPECT_EQ(env_level(name, 1, 2), v);
  }
  for (const char* bad : {"3", "-1", "", "1 ", "01", "x"}) {
    ::setenv(name, bad, 1);
    try {
      env_level(name, 1, 2);
      ADD_FAILURE() << "accepted " << name << "=" << bad;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("0 to 2"), std::string::npos) << e.what();
    }
  }
  ::unsetenv(name);
}

TEST(EnvSetting, ChoiceByIndexOrRefusedByName) {
  const char* name = "MLABENCH_TEST_ENV_CHOICE";
  ::unsetenv(name);
  EXPECT_EQ(env_choice(name, {"bf16", "f16"}), -1) << "unset: the caller's default";
  ::setenv(name, "", 1);
  EXPECT_EQ(env_choice(name, {"bf16", "f16"}), -1) << "empty: the caller's default";
  ::setenv(name, "bf16", 1);
  EXPECT_EQ(env_choice(name, {"bf16", "f16"}), 0);
  ::setenv(name, "f16", 1);
  EXPECT_EQ(env_choice(name, {"bf16", "f16"}), 1);
  for (const char* bad : {"F16", "f16 ", "fp16", "bf", "1"}) {
    ::setenv(name, bad, 1);
    try {
      env_choice(name, {"bf16", "f16"});
      ADD_FAILURE() << "accepted " << name << "=" << bad;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("bf16, f16"), std::string::npos) << e.what();
    }
  }
  ::unsetenv(name);
}

}  // namespace
}  // namespace mlabench
