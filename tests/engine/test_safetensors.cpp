// safetensors reader against malformed files: each problem is an Error naming the file and, where there is
// one, the tensor, never a crash (this suite runs under AddressSanitizer and UBSan in CI).
#include <gtest/gtest.h>

#include <random>

#include "core/check.h"
#include "engine/weights/safetensors.h"
#include "tests/test_util.h"

namespace mlabench {
namespace {

// A file with the given header text and `data_bytes` bytes of data; `declared` overrides the length field.
void write_raw(const std::string& path, const std::string& header, size_t data_bytes, int64_t declared = -1) {
  std::ofstream f(path, std::ios::binary);
  const uint64_t n = declared < 0 ? header.size() : static_cast<uint64_t>(declared);
  for (int i = 0; i < 8; ++i) f.put(static_cast<char>((n >> (8 * i)) & 0xff));
  f << header;
  for (size_t i = 0; i < data_bytes; ++i) f.put(static_cast<char>(i));
}

void expect_error(const std::string& path, std::initializer_list<std::string> parts) {
  test::expect_error_with([&] { SafetensorsFile::open(path); }, parts, path);
}

TEST(Safetensors, RoundTrip) {
  test::TempDir dir;
  const std::vector<float> a = {1, 2, 3, 4, 5, 6};
  const std::vector<uint16_t> b = {0x3f80, 0x4000};
  TensorView va{DType::F32, {2, 3}, a.data()}, vb{DType::BF16, {2}, b.data()};
  safetensors_write(dir.file("m.safetensors"), {{"a", va}, {"b", vb}}, {{"format", "pt"}});
  auto f = SafetensorsFile::open(dir.file("m.safetensors"));
  ASSERT_EQ(f->entries().size(), 2u);
  EXPECT_EQ(f->metadata().at("format"), "pt");
  const TensorView ra = f->view(*f->find("a"));
  EXPECT_EQ(ra.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(std::memcmp(ra.data, a.data(), 24), 0);
  EXPECT_EQ(f->find("b")->dtype, DType::BF16);
  EXPECT_EQ(f->find("c"), nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(ra.data) % 8, 0u) << "writer pads the header to 8 bytes";
}

TEST(Safetensors, ReadsTransformersOutput) {
  auto f = SafetensorsFile::open(test::fixture_dir("llama-mha") + "/model.safetensors");
  const auto* e = f->find("model.embed_tokens.weight");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->shape, (std::vector<int64_t>{384, 64}));
  EXPECT_EQ(e->dtype, DType::F16);
}

TEST(Safetensors, TruncatedFile) {
  test::TempDir dir;
  const std::string src = test::fixture_dir("llama-mha") + "/model.safetensors";
  std::filesystem::copy_file(src, dir.file("half.safetensors"));
  std::filesystem::resize_file(dir.file("half.safetensors"), std::filesystem::file_size(src) / 2);
  expect_error(dir.file("half.safetensors"), {"half.safetensors", "out of range", "truncated"});
  std::filesystem::copy_file(src, dir.file("tiny.safetensors"));
  std::filesystem::resize_file(dir.file("tiny.safetensors"), 5);
  expect_error(dir.file("tiny.safetensors"), {"too short"});
  { std::ofstream(dir.file("empty.safetensors")); }
  expect_error(dir.file("empty.safetensors"), {"0 bytes"});
}

TEST(Safetensors, HeaderLongerThanFile) {
  test::TempDir dir;
  write_raw(dir.file("h.safetensors"), "{}", 0, 1 << 20);
  expect_error(dir.file("h.safetensors"), {"header length 1048576", "longer than the file"});
  write_raw(dir.file("huge.safetensors"), "{}", 0, int64_t{1} << 62);
  expect_error(dir.file("huge.safetensors"), {"longer than the file"});
}

TEST(Safetensors, OffsetsOutOfRange) {
  test::TempDir dir;
  write_raw(dir.file("o.safetensors"), R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8);
  expect_error(dir.file("o.safetensors"), {"'w'", "out of range", "8 bytes"});
  write_raw(dir.file("r.safetensors"), R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", 8);
  expect_error(dir.file("r.safetensors"), {"'w'", "end before they begin"});
  write_raw(dir.file("n.safetensors"), R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})", 8);
  expect_error(dir.file("n.safetensors"), {"'w'", "data_offsets"});
}

TEST(Safetensors, OverlappingTensors) {
  test::TempDir dir;
  write_raw(
      dir.file("v.safetensors"),
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
      16);
  expect_error(dir.file("v.safetensors"), {"'a'", "'b'", "overlap"});
}

TEST(Safetensors, DtypeShapeMismatch) {
  test::TempDir dir;
  write_raw(dir.file("d.safetensors"), R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,8]}})", 8);
  expect_error(dir.file("d.safetensors"), {"'w'", "F32 x [2, 2] needs 16 bytes", "hold 8"});
  write_raw(dir.file("u.safetensors"), R"({"w":{"dtype":"Q4_K","shape":[2],"data_offsets":[0,8]}})", 8);
  expect_error(dir.file("u.safetensors"), {"'w'", "unknown dtype", "Q4_K"});
  write_raw(dir.file("s.safetensors"), R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8);
  expect_error(dir.file("s.safetensors"), {"'w'", "negative"});
  write_raw(dir.file("big.safetensors"),
            R"({"w":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}})", 8);
  expect_error(dir.file("big.safetensors"), {"'w'", "larger than the whole file"});
}

TEST(Safetensors, MalformedHeader) {
  test::TempDir dir;
  write_raw(dir.file("j.safetensors"), R"({"w":{"dtype":"F32",)", 8);
  expect_error(dir.file("j.safetensors"), {"not valid JSON"});
  write_raw(dir.file("a.safetensors"), "[1,2]", 8);
  expect_error(dir.file("a.safetensors"), {"must be a JSON object"});
  write_raw(dir.file("m.safetensors"), R"({"w":{"dtype":"F32","shape":[2]}})", 8);
  expect_error(dir.file("m.safetensors"), {"'w'", "data_offsets"});
  write_raw(dir.file("meta.safetensors"), R"({"__metadata__":{"format":3}})", 0);
  expect_error(dir.file("meta.safetensors"), {"__metadata__"});
  expect_error(dir.file("missing.safetensors"), {"cannot open"});
}

// Randomly corrupted headers and lengths: open() either succeeds with every view inside the file, or throws
// Error. Under AddressSanitizer any out-of-bounds read during validation fails the test.
TEST(Safetensors, CorruptedFilesNeverCrash) {
  test::TempDir dir;
  const std::string src = test::fixture_dir("llama-mha") + "/model.safetensors";
  std::ifstream in(src, std::ios::binary);
  const std::string good((std::istreambuf_iterator<char>(in)), {});
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; --i) hlen = (hlen << 8) | static_cast<unsigned char>(good[i]);
  std::mt19937 rng(123);
  int accepted = 0;
  for (int trial = 0; trial < 400; ++trial) {
    std::string bad = good;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < edits; ++k) {
      const size_t pos = rng() % (8 + hlen);  // the length field and the JSON header
      bad[pos] = "0123456789[]{}\",:-. eFx"[rng() % 24];
    }
    if (trial % 5 == 0) bad.resize(rng() % bad.size());
    const std::string path = dir.file("c.safetensors");
    std::ofstream(path, std::ios::binary) << bad;
    try {
      auto f = SafetensorsFile::open(path);
      for (const auto& e : f->entries()) EXPECT_LE(f->data_start() + e.end, f->file_size());
      ++accepted;
    } catch (const Error&) {
    }
  }
  EXPECT_LT(accepted, 400) << "corruption was never detected";
}

}  // namespace
}  // namespace mlabench
