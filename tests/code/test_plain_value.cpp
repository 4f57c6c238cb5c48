// The host half of HumanEval's output grading on values of our own (no sandbox, no dataset): decoding the plain
// encoding strictly, Python's == over the decoded values, and each call-site mode of output_passes.
#include <gtest/gtest.h>

#include <cmath>

#include "tasks/code/humaneval_outputs.h"
#include "tasks/code/plain_value.h"

namespace mlabench::tasks {
namespace {

using ojson = nlohmann::ordered_json;
using plain::Value;

Value v(const char* json) {
  const std::optional<Value> d = plain::decode(ojson::parse(json));
  EXPECT_TRUE(d.has_value()) << json;
  return d.value_or(Value{.kind = Value::Kind::OPAQUE, .text = "undecodable"});
}

bool eq(const char* a, const char* b) { return plain::python_equal(v(a), v(b)); }

TEST(PlainValue, DecodesEveryTagAndRefusesWhatIsNotTheEncoding) {
  EXPECT_EQ(v("null").kind, Value::Kind::NONE);
  EXPECT_EQ(v("true").kind, Value::Kind::BOOL);
  EXPECT_EQ(v("-7").text, "-7");
  EXPECT_EQ(v(R"({"int": "123456789012345678901234567890"})").text, "123456789012345678901234567890");
  EXPECT_EQ(v("2.5").kind, Value::Kind::FLOAT);
  EXPECT_TRUE(std::isnan(v(R"({"float": "nan"})").number));
  EXPECT_EQ(v(R"({"float": "-inf"})").number, -HUGE_VAL);
  EXPECT_EQ(v(R"({"tuple": [1, [2]]})").items.size(), 2u);
  EXPECT_EQ(v(R"({"dict": [["a", 1], [{"tuple": [1, 2]}, null]]})").items.size(), 4u);
  EXPECT_EQ(v(R"({"opaque": "Anything"})").kind, Value::Kind::OPAQUE);
  for (const char* bad : {R"({"int": "12a"})", R"({"int": "007"})", R"({"int": 5})", R"({"float": "1.5"})",
                          R"({"tuple": 1})", R"({"dict": [[1]]})", R"({"a": 1, "b": 2})", R"({"list": []})",
                          R"({})", R"([1, {"int": "-0"}])"})
    EXPECT_FALSE(plain::decode(ojson::parse(bad)).has_value()) << bad;
}

TEST(PlainValue, EqualityIsPythonsOverBuiltinTypes) {
  EXPECT_TRUE(eq("1", "1.0"));
  EXPECT_TRUE(eq("true", "1"));
  EXPECT_TRUE(eq("false", "0.0"));
  EXPECT_FALSE(eq("true", "2"));
  EXPECT_TRUE(eq(R"({"int": "9007199254740993"})", R"({"int": "9007199254740993"})"));
  EXPECT_FALSE(eq(R"({"int": "9007199254740993"})", "9007199254740992.0")) << "exact, not through double";
  EXPECT_TRUE(eq("9007199254740992", "9007199254740992.0"));
  EXPECT_FALSE(eq(R"({"float": "nan"})", R"({"float": "nan"})"));
  EXPECT_FALSE(eq("[1, 2]", "[1.0, true, 2]"));
  EXPECT_TRUE(eq("[1, 2]", "[1.0, 2]"));
  EXPECT_FALSE(eq("[1, 2]", R"({"tuple": [1, 2]})")) << "a list never equals a tuple";
  EXPECT_TRUE(eq(R"({"set": [1, 2, 3]})", R"({"set": [3, 1, 2]})"));
  EXPECT_FALSE(eq(R"({"set": [1, 1]})", R"({"set": [1, 2]})")) << "a forged set repeating an element";
  EXPECT_TRUE(eq(R"({"dict": [["a", 1], ["b", [2]]]})", R"({"dict": [["b", [2]], ["a", 1.0]]})"));
  EXPECT_FALSE(eq(R"({"dict": [["a", 1], ["a", 1]]})", R"({"dict": [["a", 1], ["b", 1]]})"));
  EXPECT_FALSE(eq(R"({"dict": [["a", 1]]})", R"({"dict": [["a", 2]]})"));
  EXPECT_FALSE(eq(R"({"opaque": "X"})", R"({"opaque": "X"})")) << "an opaque value equals nothing, itself included";
  EXPECT_FALSE(eq(R"("1")", "1"));
  EXPECT_TRUE(eq("null", "null"));
}

TEST(PlainValue, ReprShowsWhatPythonWould) {
  EXPECT_EQ(plain::repr(v(R"([1, 2.0, "a", null, true, {"tuple": [1]}, {"set": []}])")),
            R"([1, 2.0, "a", None, True, (1,), set()])");
  EXPECT_EQ(plain::repr(v(R"({"dict": [["k", {"opaque": "Anything"}]]})")), R"({"k": <Anything object>})");
  EXPECT_EQ(plain::repr(v("[1, 2, 3, 4, 5, 6]"), 5), "[1, 2...");
}

TEST(HumanEvalOutputs, EachModeComparesAsItsTestDoes) {
  const ojson call = {{"site", 0}, {"args", {{1, 0, -1}}}, {"value", 1.0}};  // poly([1, 0, -1], x) = 1 - x^2
  const auto passes = [&](const ojson& site, const char* got, const char* want) {
    return humaneval::output_passes(site, call, v(got), v(want));
  };
  const ojson eq_site = {{"mode", "eq"}}, is_site = {{"mode", "is"}}, truth = {{"mode", "truth"}};
  EXPECT_TRUE(passes(eq_site, "1", "true"));
  EXPECT_FALSE(passes(eq_site, R"({"opaque": "AlwaysEqual"})", "true"));
  EXPECT_TRUE(passes(is_site, "true", "true"));
  EXPECT_FALSE(passes(is_site, "1", "true")) << "`is True` wants the bool";
  EXPECT_FALSE(passes(is_site, "false", "true"));
  EXPECT_TRUE(passes(truth, "false", "false"));
  const ojson close = {{"mode", "close"}, {"tol", 1e-6}, {"strict", true}};
  EXPECT_TRUE(passes(close, "0.3300000001", "0.33"));
  EXPECT_FALSE(passes(close, "0.331", "0.33"));
  EXPECT_FALSE(passes(close, R"({"float": "nan"})", "0.33"));
  EXPECT_FALSE(passes(close, R"("0.33")", "0.33"));
  const ojson root = {{"mode", "poly_root"}, {"tol", 1e-4}, {"strict", true}};
  EXPECT_TRUE(passes(root, "1.0", "1.0"));
  EXPECT_TRUE(passes(root, "-1", "1.0")) << "another root of 1 - x^2 is as good";
  EXPECT_TRUE(passes(root, "1.00001", "1.0"));
  EXPECT_FALSE(passes(root, "0.5", "1.0"));
  EXPECT_FALSE(passes(root, "[1.0]", "1.0"));
}

}  // namespace
}  // namespace mlabench::tasks
