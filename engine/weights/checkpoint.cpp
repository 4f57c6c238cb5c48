// Checkpoint folder discovery: model.safetensors.index.json wins; otherwise model.safetensors; otherwise a
// single *.safetensors file. Several unindexed files are refused rather than guessed at.
#include "engine/weights/checkpoint.h"

#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "core/input_file.h"
#include "core/json_limits.h"

namespace fs = std::filesystem;

namespace mlabench {

namespace {

std::vector<fs::path> safetensors_in(const fs::path& dir) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.is_regular_file() && e.path().extension() == ".safetensors") out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

bool Checkpoint::exists(const std::string& dir) {
  return fs::exists(fs::path(dir) / "model.safetensors.index.json") || !safetensors_in(dir).empty();
}

std::unique_ptr<Checkpoint> Checkpoint::open(const std::string& dir) {
  auto c = std::make_unique<Checkpoint>();
  c->dir_ = dir;
  const fs::path root(dir);
  const fs::path index = root / "model.safetensors.index.json";

  if (fs::exists(index)) {
    c->sharded_ = true;
    refuse_non_regular_file(index, "the checkpoint's index");
    std::ifstream in(index);
    MLABENCH_CHECK(in.good(), "cannot read {}", index.string());
    nlohmann::json j;
    try {
      j = parse_json_bounded(std::string(std::istreambuf_iterator<char>(in), {}), index.string());
    } catch (const nlohmann::json::parse_error& e) {
      MLABENCH_FAIL("{} is not valid JSON: {}", index.string(), e.what());
    }
    MLABENCH_CHECK(j.is_object() && j.contains("weight_map") && j["weight_map"].is_object(),
                   "{}: expected an object with a 'weight_map' object", index.string());
    std::map<std::string, size_t> file_index;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      MLABENCH_CHECK(it.value().is_string(), "{}: weight_map['{}'] must be a file name", index.string(), it.key());
      const std::string file = it.value().get<std::string>();
      MLABENCH_CHECK(!file.empty() && file != "." && file != ".." && fs::path(file).filename().string() == file,
                     "{}: weight_map['{}'] = \"{}\" must be a plain file name inside the folder", index.string(),
                     it.key(), file);
      auto fi = file_index.find(file);
      if (fi == file_index.end()) {
        const fs::path p = root / file;
        MLABENCH_CHECK(fs::exists(p),
                       "{} lists shard {} (for '{}') but the file is missing. HINT: the download is "
                       "incomplete",
                       index.string(), file, it.key());
        c->files_.push_back(SafetensorsFile::open(p.string()));
        fi = file_index.emplace(file, c->files_.size() - 1).first;
      }
      const SafetensorsEntry* e = c->files_[fi->second]->find(it.key());
      MLABENCH_CHECK(e != nullptr, "{} says '{}' is in {} but that file has no such tensor", index.string(), it.key(),
                     file);
      c->where_[it.key()] = {fi->second, e};
    }
    return c;
  }

  std::vector<fs::path> files = safetensors_in(root);
  MLABENCH_CHECK(!files.empty(),
                 "no weights in {}: neither model.safetensors.index.json nor a .safetensors file. "
                 "HINT: pass --random-weights SEED to build the model from config.json alone",
                 dir);
  if (files.size() > 1) {
    const auto single = std::find(files.begin(), files.end(), root / "model.safetensors");
    MLABENCH_CHECK(single != files.end(),
                   "{} holds {} .safetensors files but no model.safetensors.index.json to say "
                   "which tensor is where. HINT: restore the index file from the checkpoint",
                   dir, files.size());
    files = {*single};
  }
  c->files_.push_back(SafetensorsFile::open(files[0].string()));
  for (const auto& e : c->files_[0]->entries()) c->where_[e.name] = {0, &e};
  return c;
}

TensorView Checkpoint::get(const std::string& name) const {
  const SafetensorsEntry& e = entry(name);
  return files_[where_.find(name)->second.first]->view(e);
}

const SafetensorsEntry& Checkpoint::entry(const std::string& name) const {
  auto it = where_.find(name);
  MLABENCH_CHECK(it != where_.end(), "tensor '{}' is not in the checkpoint at {}", name, dir_);
  return *it->second.second;
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  for (const auto& [n, _] : where_) out.push_back(n);
  return out;
}

uint64_t Checkpoint::total_bytes() const {
  uint64_t b = 0;
  for (const auto& f : files_) b += f->file_size();
  return b;
}

}  // namespace mlabench
