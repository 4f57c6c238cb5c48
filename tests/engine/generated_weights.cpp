// The C++ twin of tools/fixture_weights.py (the generator's specification is that file's doc comment). Every
// step below is exact or a single correctly rounded IEEE operation, so the two languages agree to the bit.
#include "tests/engine/generated_weights.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "core/digest.h"
#include "engine/core/dtype.h"
#include "engine/model/config.h"
#include "engine/weights/model_weights.h"
#include "engine/weights/safetensors.h"
#include "engine/weights/tensor_manifest.h"

namespace mlabench::test {

namespace {

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

}  // namespace

std::vector<uint16_t> generated_tensor(const std::string& name, const std::vector<int64_t>& shape, uint64_t seed) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  // The tensor key and the mixer are the engine's --random-weights ones: splitmix64(seed ^ fnv1a64(name)).
  const uint64_t key = random_weights_key(seed, name);
  const bool norm = shape.size() == 1;
  double a = 0;  // a matrix's half-width: sqrt(3 / fan_in), the router's three times that; embeddings: fan_in 1
  if (!norm) {
    const double fan_in = name == "model.embed_tokens.weight" ? 1.0 : static_cast<double>(shape[1]);
    a = std::sqrt((ends_with(name, "mlp.gate.weight") ? 27.0 : 3.0) / fan_in);
  }
  std::vector<uint16_t> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const double u = static_cast<double>(splitmix64(key + static_cast<uint64_t>(i)) >> 11) * 0x1.0p-53;
    const double x = norm ? 1.0 + (2.0 * u - 1.0) / 4.0 : (2.0 * u - 1.0) * a;
    out[static_cast<size_t>(i)] = f32_to_bf16(static_cast<float>(x));
  }
  return out;
}

GeneratedWeightsSpec read_generated_weights_spec(const std::string& fixture) {
  const std::string path = fixture + "/weights.json";
  std::ifstream in(path);
  MLABENCH_CHECK(in.good(), "cannot read {}. HINT: a fixture with generated weights holds config.json and weights.json",
                 path);
  const nlohmann::json j = nlohmann::json::parse(in);
  const std::string generator = j.at("generator").get<std::string>();
  MLABENCH_CHECK(generator == kFixtureWeightsGenerator,
                 "{} names generator {}, the tests implement {}. HINT: update tests/engine/generated_weights.cpp "
                 "together with tools/fixture_weights.py",
                 path, generator, kFixtureWeightsGenerator);
  return {j.at("seed").get<uint64_t>(), j.at("sha256").get<std::string>(), j.at("bytes").get<uint64_t>()};
}

std::string write_generated_checkpoint(const std::string& fixture, const std::string& out) {
  const GeneratedWeightsSpec spec = read_generated_weights_spec(fixture);
  const ModelConfig c = load_config(fixture);
  const std::vector<ExpectedTensor> manifest = tensor_manifest(c, ExpertLayout::HUB);
  std::vector<std::vector<uint16_t>> data;
  data.reserve(manifest.size());  // the views below point into these buffers
  std::vector<std::pair<std::string, TensorView>> tensors;
  for (const ExpectedTensor& t : manifest) {
    data.push_back(generated_tensor(t.name, t.shape, spec.seed));
    tensors.emplace_back(t.name, TensorView{.dtype = DType::BF16, .shape = t.shape, .data = data.back().data()});
  }
  std::filesystem::create_directories(out);
  std::filesystem::copy_file(fixture + "/config.json", out + "/config.json",
                             std::filesystem::copy_options::overwrite_existing);
  safetensors_write(out + "/model.safetensors", tensors);
  return data::sha256_file_hex(out + "/model.safetensors");
}

std::optional<LongReference> load_long_reference(const std::string& dir, std::string* why) {
  for (const char* f : {"reference.json", "logits.npy"})
    if (!std::filesystem::exists(dir + "/" + f)) {
      *why = fmt::format("{}/{} is not made yet. HINT: run `python3 tools/make_long_fixture.py {} --out OUT` on the "
                         "GPU machine and commit OUT's files there",
                         dir, f, dir);
      return std::nullopt;
    }
  LongReference r;
  r.ref = load_reference(dir);
  const nlohmann::json j = read_json(dir + "/reference.json");
  r.positions = j.at("positions").get<std::vector<int64_t>>();
  r.bf16_relative = j.at("transformers_bf16").at("relative").get<double>();
  r.bf16_top1 = j.at("transformers_bf16").at("top1_agreement").get<double>();
  MLABENCH_CHECK(r.ref.logits.shape.size() == 2 && r.ref.logits.shape[0] == static_cast<int64_t>(r.positions.size()),
                 "{}: logits.npy has {} rows for {} positions. HINT: regenerate both with tools/make_long_fixture.py",
                 dir, r.ref.logits.shape.empty() ? 0 : r.ref.logits.shape[0], r.positions.size());
  return r;
}

}  // namespace mlabench::test
