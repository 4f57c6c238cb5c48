// Checkpoint: the tensors of a model folder, from one model.safetensors or from the shards listed in
// model.safetensors.index.json, looked up by name. Opening validates every file (see safetensors.h) and the
// index (every listed tensor present in its shard, no name in two shards).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/weights/safetensors.h"

namespace mlabench {

class Checkpoint {
 public:
  /// \brief Opens the safetensors weights in `dir`. Throws Error if there are none or any is invalid.
  static std::unique_ptr<Checkpoint> open(const std::string& dir);
  /// \brief True if `dir` holds safetensors weights (index or files), without opening them.
  static bool exists(const std::string& dir);

  bool has(const std::string& name) const { return where_.count(name) != 0; }
  /// \brief The tensor `name`; Error if absent.
  TensorView get(const std::string& name) const;
  const SafetensorsEntry& entry(const std::string& name) const;
  std::vector<std::string> names() const;  ///< sorted
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }
  uint64_t total_bytes() const;
  const std::string& dir() const { return dir_; }
  bool sharded() const { return sharded_; }

 private:
  std::string dir_;
  bool sharded_ = false;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, std::pair<size_t, const SafetensorsEntry*>> where_;  // name -> (file index, entry)
};

}  // namespace mlabench
