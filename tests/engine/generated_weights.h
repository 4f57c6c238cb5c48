// Fixtures whose weights are regenerated, not committed: a checkpoint at DeepSeek-V2's real MLA shapes is too
// large for the repository, so its folder holds config.json and weights.json (generator, seed, SHA-256 of the
// file), and the tests write model.safetensors from them. The generator "mlabench-fixture-weights-v1" is
// specified in tools/fixture_weights.py's doc comment; this is its C++ twin, byte for byte.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "tests/test_util.h"

namespace mlabench::test {

inline constexpr const char* kFixtureWeightsGenerator = "mlabench-fixture-weights-v1";

/// \brief The BF16 bits of tensor `name` (row-major) under `seed`.
std::vector<uint16_t> generated_tensor(const std::string& name, const std::vector<int64_t>& shape, uint64_t seed);

/// \brief What a fixture's weights.json says.
struct GeneratedWeightsSpec {
  uint64_t seed = 0;
  std::string sha256;  ///< of model.safetensors as the generator writes it
  uint64_t bytes = 0;
};

/// \brief Reads `fixture`/weights.json. Throws Error when it names another generator.
GeneratedWeightsSpec read_generated_weights_spec(const std::string& fixture);

/// \brief Writes the checkpoint of `fixture` into folder `out` (model.safetensors, with a copy of config.json):
/// a model folder the engine opens. Returns model.safetensors' SHA-256 (64 lowercase hex digits).
std::string write_generated_checkpoint(const std::string& fixture, const std::string& out);

/// \brief The fixture of tools/make_long_fixture.py: transformers' float64 logits at DeepSeek-V2's MLA shapes over
/// 8,317 tokens, stored at a subset of the positions.
inline std::string long_fixture_dir() { return fixture_dir("dsv2-mla-8k-yarn"); }

/// \brief What tools/make_long_fixture.py wrote: the tokens, the logits rows at `positions` (ascending) with their
/// max |logit|, and transformers' own BF16 error at those positions.
struct LongReference {
  Reference ref;  ///< ref.logits: [positions.size(), vocab]
  std::vector<int64_t> positions;
  double bf16_relative = 0;  ///< max |transformers BF16 - float64| / max |float64|
  double bf16_top1 = 0;      ///< share of the positions where transformers BF16 has float64's top-1
};

/// \brief The fixture's reference, or nullopt (with `why` set) while its outputs have not been made: the GPU machine
/// writes them (`python3 tools/make_long_fixture.py DIR --out OUT`), and only they are committed.
std::optional<LongReference> load_long_reference(const std::string& dir, std::string* why);

}  // namespace mlabench::test
