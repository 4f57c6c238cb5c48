// .npy reader/writer. The header is a Python dict literal; we write it ourselves and parse only the three keys
// numpy writes (descr, fortran_order, shape).
#include "engine/core/npy.h"

#include <cctype>
#include <cstring>
#include <fstream>

#include "core/check.h"
#include "core/input_file.h"
#include "engine/core/tensor.h"

namespace mlabench {

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

void npy_write_f32(const std::string& path, const std::vector<int64_t>& shape, const float* data) {
  std::string dims;
  for (size_t i = 0; i < shape.size(); ++i)
    dims += std::to_string(shape[i]) + (shape.size() == 1 || i + 1 < shape.size() ? "," : "");
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  std::ofstream f(path, std::ios::binary);
  MLABENCH_CHECK(f.good(), "cannot open {} for writing. HINT: check the folder exists and is writable", path);
  const char magic[8] = {'\x93', 'N', 'U', 'M', 'P', 'Y', 1, 0};
  f.write(magic, 8);
  const uint16_t hlen = static_cast<uint16_t>(header.size());
  f.write(reinterpret_cast<const char*>(&hlen), 2);
  f.write(header.data(), static_cast<std::streamsize>(header.size()));
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(n * 4));
  MLABENCH_CHECK(f.good(), "writing {} failed (disk full?)", path);
}

NpyArray npy_read(const std::string& path) {
  refuse_non_regular_file(path, "npy file");
  std::ifstream f(path, std::ios::binary);
  MLABENCH_CHECK(f.good(), "cannot open {}", path);
  char magic[8];
  f.read(magic, 8);
  MLABENCH_CHECK(f.good() && std::memcmp(magic, "\x93NUMPY", 6) == 0, "{} is not a .npy file (bad magic)", path);
  uint32_t hlen = 0;
  if (magic[6] == 1) {
    uint16_t h16;
    f.read(reinterpret_cast<char*>(&h16), 2);
    hlen = h16;
  } else {
    f.read(reinterpret_cast<char*>(&hlen), 4);
  }
  std::string header(hlen, '\0');
  f.read(header.data(), hlen);
  MLABENCH_CHECK(f.good(), "{}: truncated .npy header", path);

  NpyArray a;
  // Value of `key` in the header dict, up to the next top-level comma (or the closing paren for the shape).
  auto field = [&](const std::string& key) {
    const size_t k = header.find("'" + key + "'");
    MLABENCH_CHECK(k != std::string::npos, "{}: no '{}' in the .npy header", path, key);
    const size_t colon = header.find(':', k);
    MLABENCH_CHECK(colon != std::string::npos, "{}: malformed .npy header", path);
    size_t b = header.find_first_not_of(' ', colon + 1);
    MLABENCH_CHECK(b != std::string::npos, "{}: malformed .npy header", path);
    const size_t e = header[b] == '(' ? header.find(')', b) + 1 : header.find(',', b);
    MLABENCH_CHECK(e != std::string::npos && e > b, "{}: malformed .npy header", path);
    return header.substr(b, e - b);
  };
  a.dtype = field("descr");
  MLABENCH_CHECK(a.dtype.size() > 2 && a.dtype.front() == '\'' && a.dtype.back() == '\'', "{}: bad descr {}", path,
                 a.dtype);
  a.dtype = a.dtype.substr(1, a.dtype.size() - 2);
  MLABENCH_CHECK(a.dtype == "<f4" || a.dtype == "<f8", "{}: dtype {} not supported (accepted: <f4, <f8)", path,
                 a.dtype);
  MLABENCH_CHECK(field("fortran_order") == "False", "{}: Fortran order not supported", path);
  const std::string dims = field("shape");
  int64_t n = 1;
  for (size_t i = 0; i < dims.size();) {
    if (!std::isdigit(static_cast<unsigned char>(dims[i]))) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < dims.size() && std::isdigit(static_cast<unsigned char>(dims[j]))) ++j;
    a.shape.push_back(std::stoll(dims.substr(i, j - i)));
    n *= a.shape.back();
    i = j;
  }
  a.data.resize(static_cast<size_t>(n));
  if (a.dtype == "<f8") {
    f.read(reinterpret_cast<char*>(a.data.data()), n * 8);
  } else {
    std::vector<float> tmp(static_cast<size_t>(n));
    f.read(reinterpret_cast<char*>(tmp.data()), n * 4);
    for (int64_t i = 0; i < n; ++i) a.data[i] = tmp[i];
  }
  MLABENCH_CHECK(f.good(), "{}: data shorter than shape {} says", path, shape_str(a.shape));
  return a;
}

}  // namespace mlabench
