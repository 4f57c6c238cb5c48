// safetensors reader (mmap) and writer. Validation happens entirely in open(): after it returns, every view is
// in bounds, so the forward pass never re-checks.
#include "engine/weights/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "core/input_file.h"
#include "core/json_limits.h"

namespace mlabench {

namespace {

constexpr uint64_t kMaxHeader = 100ull << 20;  // the reference library's own limit

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

std::unique_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer; it is refused just below.
  Fd fd{::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK)};
  MLABENCH_CHECK(fd.fd >= 0, "cannot open {}: {}", path, std::strerror(errno));
  struct stat st {};
  MLABENCH_CHECK(::fstat(fd.fd, &st) == 0, "cannot stat {}: {}", path, std::strerror(errno));
  MLABENCH_CHECK(S_ISREG(st.st_mode),
                 "{} is {}, not a safetensors file. HINT: weight shards must be regular files in the model folder",
                 path, describe_file_kind(path));
  f->size_ = static_cast<uint64_t>(st.st_size);
  MLABENCH_CHECK(f->size_ >= 8,
                 "{}: file is {} bytes, too short for a safetensors header (8-byte length first). "
                 "HINT: the file is truncated; download it again",
                 path, f->size_);
  f->map_ = ::mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, fd.fd, 0);
  if (f->map_ == MAP_FAILED) {
    f->map_ = nullptr;
    MLABENCH_FAIL("cannot mmap {}: {}", path, std::strerror(errno));
  }
  const auto* bytes = static_cast<const unsigned char*>(f->map_);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];
  MLABENCH_CHECK(n <= f->size_ - 8,
                 "{}: header length {} is longer than the file allows ({} bytes after the "
                 "length). HINT: the file is truncated or not a safetensors file",
                 path, n, f->size_ - 8);
  MLABENCH_CHECK(n <= kMaxHeader, "{}: header length {} exceeds the 100 MiB limit", path, n);
  f->data_start_ = 8 + n;
  const uint64_t data_size = f->size_ - f->data_start_;

  nlohmann::json h;
  try {
    h = parse_json_bounded(std::string_view(reinterpret_cast<const char*>(bytes + 8), n), path + " (header)");
  } catch (const nlohmann::json::parse_error& e) {
    MLABENCH_FAIL("{}: header is not valid JSON ({})", path, e.what());
  }
  MLABENCH_CHECK(h.is_object(), "{}: header must be a JSON object, found {}", path, h.type_name());

  for (auto it = h.begin(); it != h.end(); ++it) {
    const std::string& name = it.key();
    const auto& v = it.value();
    if (name == "__metadata__") {
      MLABENCH_CHECK(v.is_object(), "{}: __metadata__ must be an object of strings", path);
      for (auto m = v.begin(); m != v.end(); ++m) {
        MLABENCH_CHECK(m.value().is_string(), "{}: __metadata__ value '{}' is not a string", path, m.key());
        f->metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    MLABENCH_CHECK(v.is_object() && v.contains("dtype") && v.contains("shape") && v.contains("data_offsets"),
                   "{}: tensor '{}' needs dtype, shape and data_offsets, found {}", path, name, v.dump());
    SafetensorsEntry e;
    e.name = name;
    MLABENCH_CHECK(v["dtype"].is_string(), "{}: tensor '{}': dtype must be a string", path, name);
    auto dt = dtype_from_name(v["dtype"].get<std::string>());
    MLABENCH_CHECK(dt.has_value(), "{}: tensor '{}': unknown dtype \"{}\"", path, name, v["dtype"].get<std::string>());
    e.dtype = *dt;
    MLABENCH_CHECK(v["shape"].is_array(), "{}: tensor '{}': shape must be a list", path, name);
    uint64_t numel = 1;
    for (const auto& d : v["shape"]) {
      MLABENCH_CHECK(d.is_number_unsigned(), "{}: tensor '{}': shape {} has a non-integer or negative dimension", path,
                     name, v["shape"].dump());
      const uint64_t dim = d.get<uint64_t>();
      MLABENCH_CHECK(dim == 0 || numel <= data_size / dim, "{}: tensor '{}': shape {} is larger than the whole file",
                     path, name, v["shape"].dump());
      numel *= dim;
      e.shape.push_back(static_cast<int64_t>(dim));
    }
    const auto& off = v["data_offsets"];
    MLABENCH_CHECK(off.is_array() && off.size() == 2 && off[0].is_number_unsigned() && off[1].is_number_unsigned(),
                   "{}: tensor '{}': data_offsets must be [begin, end], found {}", path, name, off.dump());
    e.begin = off[0].get<uint64_t>();
    e.end = off[1].get<uint64_t>();
    MLABENCH_CHECK(e.begin <= e.end, "{}: tensor '{}': data_offsets [{}, {}] end before they begin", path, name,
                   e.begin, e.end);
    MLABENCH_CHECK(e.end <= data_size,
                   "{}: tensor '{}': data_offsets [{}, {}] are out of range: the data section has "
                   "{} bytes. HINT: the file is truncated",
                   path, name, e.begin, e.end, data_size);
    const uint64_t expect = numel * dtype_size(e.dtype);
    MLABENCH_CHECK(e.end - e.begin == expect,
                   "{}: tensor '{}': {} x {} needs {} bytes but data_offsets [{}, {}] hold {}", path, name,
                   dtype_name(e.dtype), shape_str(e.shape), expect, e.begin, e.end, e.end - e.begin);
    f->entries_.push_back(std::move(e));
  }

  // Overlap: sort a copy by offset; each tensor must start at or after the previous one's end.
  std::vector<const SafetensorsEntry*> order;
  for (const auto& e : f->entries_) order.push_back(&e);
  std::sort(order.begin(), order.end(),
            [](auto* a, auto* b) { return a->begin < b->begin || (a->begin == b->begin && a->end < b->end); });
  for (size_t i = 1; i < order.size(); ++i) {
    const auto* a = order[i - 1];
    const auto* b = order[i];
    MLABENCH_CHECK(b->begin >= a->end || a->begin == a->end || b->begin == b->end,
                   "{}: tensors '{}' [{}, {}) and '{}' [{}, {}) overlap", path, a->name, a->begin, a->end, b->name,
                   b->begin, b->end);
  }
  for (size_t i = 0; i < f->entries_.size(); ++i) f->by_name_[f->entries_[i].name] = i;
  return f;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(map_, size_);
}

const SafetensorsEntry* SafetensorsFile::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &entries_[it->second];
}

TensorView SafetensorsFile::view(const SafetensorsEntry& e) const {
  TensorView v;
  v.dtype = e.dtype;
  v.shape = e.shape;
  v.data = static_cast<const char*>(map_) + data_start_ + e.begin;
  return v;
}

void safetensors_write(const std::string& path, const std::vector<std::pair<std::string, TensorView>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  uint64_t off = 0;
  for (const auto& [name, t] : tensors) {
    h[name] = {
        {"dtype", std::string(dtype_name(t.dtype))}, {"shape", t.shape}, {"data_offsets", {off, off + t.nbytes()}}};
    off += t.nbytes();
  }
  std::string header = h.dump();
  header.append((8 - header.size() % 8) % 8, ' ');  // data section 8-byte aligned, as the reference writer does
  std::ofstream out(path, std::ios::binary);
  MLABENCH_CHECK(out.good(), "cannot open {} for writing", path);
  const uint64_t n = header.size();
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>((n >> (8 * i)) & 0xff);
  out.write(reinterpret_cast<const char*>(len), 8);
  out.write(header.data(), static_cast<std::streamsize>(n));
  for (const auto& [name, t] : tensors)
    out.write(static_cast<const char*>(t.data), static_cast<std::streamsize>(t.nbytes()));
  MLABENCH_CHECK(out.good(), "writing {} failed", path);
}

}  // namespace mlabench
