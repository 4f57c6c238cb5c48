// The tensors a config implies: every name and shape, in the hub naming (PyTorch Linear = [out, in]).
// One list serves three purposes: validating a checkpoint (missing / unexpected / mis-shaped), building random
// weights, and counting parameters for `mlabench info`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/model/config.h"

namespace mlabench {

/// How routed experts are stored: one tensor per expert (hub checkpoints, and what transformers 5.17 saves), or
/// transformers' fused 3-D tensors (mlp.experts.gate_up_proj [E, 2I, H] with gate rows first, then up rows;
/// mlp.experts.down_proj [E, H, I]).
enum class ExpertLayout { HUB, FUSED };

struct ExpectedTensor {
  std::string name;
  std::vector<int64_t> shape;
};

std::vector<ExpectedTensor> tensor_manifest(const ModelConfig& c, ExpertLayout layout);

std::string to_string(ExpertLayout l);

}  // namespace mlabench
