// Helpers shared by the tests: paths to the committed fixtures and their reference data.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include <zlib.h>

#include "core/check.h"
#include "engine/core/npy.h"

namespace mlabench::test {

inline std::string data_dir() { return MLABENCH_TEST_DATA; }
inline std::string fixture_dir(const std::string& name) { return data_dir() + "/fixtures/" + name; }
inline std::string default_model_dir() { return data_dir() + "/models/mlabench-tiny-dsv2"; }
inline std::string preset_dir(const std::string& name) { return std::string(MLABENCH_CONFIGS_DIR) + "/" + name; }

/// Every fixture tools/make_fixtures.py wrote (folders with a reference.json), plus the bundled default model.
/// Folders with a weights.json hold no checkpoint (tests/engine/generated_weights.h regenerates it): not listed.
inline std::vector<std::string> all_fixture_dirs() {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(data_dir() + "/fixtures"))
    if (std::filesystem::exists(e.path() / "reference.json") && !std::filesystem::exists(e.path() / "weights.json"))
      out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  out.push_back(default_model_dir());
  return out;
}

/// A whole file's bytes ("" when it cannot be read).
inline std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  return nlohmann::json::parse(in);
}

struct Reference {
  std::vector<int32_t> tokens;
  NpyArray logits;  // [n_tokens, vocab], float64 values stored as float32
  double max_abs = 0;
};

inline Reference load_reference(const std::string& dir) {
  const nlohmann::json r = read_json(dir + "/reference.json");
  Reference ref;
  ref.tokens = r["tokens"].get<std::vector<int32_t>>();
  ref.logits = npy_read(dir + "/" + r["logits"]["file"].get<std::string>());
  for (double v : ref.logits.data) ref.max_abs = std::max(ref.max_abs, std::fabs(v));
  return ref;
}

/// Largest |a - b| over n values.
template <class A, class B>
double max_abs_diff(const A* a, const B* b, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; ++i) m = std::max(m, std::fabs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
  return m;
}

/// Row-by-row agreement of two logits matrices [rows, vocab] (a split against the unsplit engine): rows whose
/// largest |a - b| is within tol x max |a|, and the worst row's error over max |a|.
struct RowAgreement {
  int exact = 0, rows = 0;
  double worst = 0;
};
inline RowAgreement row_agreement(const std::vector<float>& a, const std::vector<float>& b, int64_t vocab,
                                  double tol) {
  double scale = 0;
  for (float v : a) scale = std::max(scale, std::fabs(static_cast<double>(v)));
  RowAgreement r;
  const auto V = static_cast<size_t>(vocab);
  for (size_t row = 0; row < a.size() / V; ++row, ++r.rows) {
    const double err = max_abs_diff(a.data() + row * V, b.data() + row * V, V);
    r.exact += err <= tol * scale;
    r.worst = std::max(r.worst, err / scale);
  }
  return r;
}

/// Whole contents of a gzip file.
inline std::string read_gz(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  EXPECT_NE(f, nullptr) << "cannot open " << path;
  std::string out;
  if (f == nullptr) return out;
  char buf[1 << 16];
  int n;
  while ((n = gzread(f, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  gzclose(f);
  return out;
}

/// CI's short mode (MLABENCH_TEST_SHORT=1, which tools/bootstrap.sh test sets): tests labelled `slow` check the
/// same properties on a smaller size there; without it (`ctest -L slow`) they run their full size. README, "Tests
/// and checks".
inline bool short_mode() {
  const char* v = std::getenv("MLABENCH_TEST_SHORT");
  return v != nullptr && *v != '\0' && std::string(v) != "0";
}

/// The shared data mirror (../shared beside the checkout), or "" when this machine has none.
inline std::string shared_dir() {
  const char* env = std::getenv("MLABENCH_SHARED_DIR");
  const std::string d = env ? env : MLABENCH_SHARED_DIR;
  return std::filesystem::exists(d) ? d : "";
}

/// FNV-1a 64 as lowercase hex (the hash tools/make_tokenizer_fixtures.py stores).
inline std::string fnv1a64_hex(const void* data, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ static_cast<const unsigned char*>(data)[i]) * 0x100000001b3ull;
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

/// The message of the mlabench::Error `f` throws; "" when it throws none.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

/// Runs `f`, which must throw mlabench::Error with a message containing every string in `parts`.
template <class F, class Parts = std::initializer_list<std::string>>
void expect_error_with(F&& f, const Parts& parts, const std::string& what = "") {
  try {
    f();
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const auto& p : parts)
      EXPECT_NE(msg.find(p), std::string::npos) << what << "\n" << msg << "\n  missing: " << p;
    return;
  }
  ADD_FAILURE() << what << ": no error was raised";
}

/// A fresh temporary folder, removed at destruction.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "mlabench-test-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace mlabench::test
