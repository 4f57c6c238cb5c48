#include <gtest/gtest.h>

#include "core/check.h"
#include "tests/test_util.h"

namespace mlabench {
namespace {

TEST(Npy, RoundTripFloat32) {
  test::TempDir dir;
  const std::vector<float> v = {1.5f, -2.25f, 3e-8f, 1e30f, 0.0f, -0.0f};
  npy_write_f32(dir.file("a.npy"), {2, 3}, v.data());
  const NpyArray a = npy_read(dir.file("a.npy"));
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a.dtype, "<f4");
  for (size_t i = 0; i < v.size(); ++i) EXPECT_EQ(a.data[i], static_cast<double>(v[i]));
  npy_write_f32(dir.file("b.npy"), {6}, v.data());
  EXPECT_EQ(npy_read(dir.file("b.npy")).shape, (std::vector<int64_t>{6}));
}

TEST(Npy, ReadsWhatNumpyWrote) {
  // logits.npy of every fixture was written by numpy.save on the GPU machine.
  const NpyArray a = npy_read(test::fixture_dir("llama-mha") + "/logits.npy");
  ASSERT_EQ(a.shape.size(), 2u);
  EXPECT_EQ(a.shape[1], 384);
  EXPECT_EQ(static_cast<int64_t>(a.data.size()), a.shape[0] * a.shape[1]);
}

TEST(Npy, RejectsBadFiles) {
  test::TempDir dir;
  { std::ofstream(dir.file("x.npy")) << "not numpy"; }
  EXPECT_THROW(npy_read(dir.file("x.npy")), Error);
  EXPECT_THROW(npy_read(dir.file("missing.npy")), Error);
  const float v[4] = {1, 2, 3, 4};
  npy_write_f32(dir.file("t.npy"), {4}, v);
  std::filesystem::resize_file(dir.file("t.npy"), std::filesystem::file_size(dir.file("t.npy")) - 4);
  EXPECT_THROW(npy_read(dir.file("t.npy")), Error);
  EXPECT_THROW(npy_write_f32(dir.file("no/such/dir/y.npy"), {4}, v), Error);
}

}  // namespace
}  // namespace mlabench
