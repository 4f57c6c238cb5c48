// safetensors files: an 8-byte little-endian header length, a JSON header {name: {dtype, shape, data_offsets}},
// then the data. The reader maps the file read-only and validates the header completely before any tensor is
// used: JSON well formed, every dtype known, offsets inside the data section, no two tensors overlapping, and
// each tensor's byte size equal to dtype size x shape. A bad file is an Error naming the file and the tensor.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/core/tensor.h"

namespace mlabench {

struct SafetensorsEntry {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets into the data section
  uint64_t end = 0;
};

class SafetensorsFile {
 public:
  /// \brief Maps and validates `path`. Throws Error describing the first problem found.
  static std::unique_ptr<SafetensorsFile> open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::vector<SafetensorsEntry>& entries() const { return entries_; }  ///< sorted by name
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  /// \brief nullptr if absent.
  const SafetensorsEntry* find(const std::string& name) const;
  /// \brief A view on the mapped bytes; valid while this object lives.
  TensorView view(const SafetensorsEntry& e) const;
  uint64_t file_size() const { return size_; }
  uint64_t data_start() const { return data_start_; }  ///< byte offset of the data section in the file

 private:
  SafetensorsFile() = default;
  std::string path_;
  void* map_ = nullptr;
  uint64_t size_ = 0;
  uint64_t data_start_ = 0;
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, size_t> by_name_;
  std::map<std::string, std::string> metadata_;
};

/// \brief Writes tensors (in the given order) as a safetensors file. Used by tests and tools.
void safetensors_write(const std::string& path, const std::vector<std::pair<std::string, TensorView>>& tensors,
                       const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

}  // namespace mlabench
