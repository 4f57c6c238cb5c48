// Writers of tiny zip, tar and gzip archives in memory, so download tests can build datasets in every format
// the fetch code extracts, and hostile ones it must refuse, without committed binary fixtures.
#pragma once

#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace mlabench::test {

struct ArchiveMember {
  std::string name{};   ///< a name ending in '/' is a folder
  std::string data{};
  bool deflate = true;  ///< zip only: deflated (method 8) or stored (method 0)
  char tar_type = '0';  ///< tar only: '0' file, '5' folder, '2' symlink, ...
  /// zip only: the Unix mode in the central directory's external attributes (type and permission bits); 0 means
  /// 0100644 for files and 040755 for folders. Python's zipfile.writestr writes 0600 with no type bits.
  uint32_t zip_mode = 0;
  /// zip only: the uncompressed size the headers claim, when >= 0 (a lie, to test that sizes are counted).
  int64_t zip_claimed_size = -1;
  std::string tar_link{};  ///< tar only: the link target of a '1' (hard) or '2' (symbolic) link
};

inline std::string zlib_deflate(const std::string& in, int window_bits) {
  z_stream s{};
  if (deflateInit2(&s, 9, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    throw std::runtime_error("deflateInit2 failed");
  std::string out(deflateBound(&s, in.size()) + 32, '\0');
  s.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  s.avail_in = static_cast<uInt>(in.size());
  s.next_out = reinterpret_cast<Bytef*>(out.data());
  s.avail_out = static_cast<uInt>(out.size());
  if (deflate(&s, Z_FINISH) != Z_STREAM_END) throw std::runtime_error("deflate failed");
  out.resize(s.total_out);
  deflateEnd(&s);
  return out;
}

/// \brief A gzip file (RFC 1952) holding `data`.
inline std::string gzip_bytes(const std::string& data) { return zlib_deflate(data, 15 + 16); }

inline void put_le(std::string& out, uint32_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out += static_cast<char>((v >> (8 * i)) & 0xff);
}

/// \brief A zip file with `members`, made on "Unix" (regular files 0644, folders 0755).
inline std::string make_zip(const std::vector<ArchiveMember>& members) {
  std::string out, central;
  for (const ArchiveMember& m : members) {
    const bool folder = !m.name.empty() && m.name.back() == '/';
    const bool deflated = m.deflate && !folder;
    const std::string payload = deflated ? zlib_deflate(m.data, -15) : m.data;
    const uint32_t crc = static_cast<uint32_t>(crc32(0L, reinterpret_cast<const Bytef*>(m.data.data()),
                                                     static_cast<uInt>(m.data.size())));
    const auto offset = static_cast<uint32_t>(out.size());
    const auto usize = static_cast<uint32_t>(m.zip_claimed_size >= 0 ? m.zip_claimed_size : m.data.size());
    const uint32_t mode = m.zip_mode != 0 ? m.zip_mode : folder ? 040755u : 0100644u;
    put_le(out, 0x04034b50, 4);
    put_le(out, 20, 2);
    put_le(out, 0, 2);
    put_le(out, deflated ? 8 : 0, 2);
    put_le(out, 0, 2);
    put_le(out, 0x21, 2);  // 1980-01-01
    put_le(out, crc, 4);
    put_le(out, static_cast<uint32_t>(payload.size()), 4);
    put_le(out, usize, 4);
    put_le(out, static_cast<uint32_t>(m.name.size()), 2);
    put_le(out, 0, 2);
    out += m.name + payload;
    put_le(central, 0x02014b50, 4);
    put_le(central, 3 << 8 | 20, 2);
    put_le(central, 20, 2);
    put_le(central, 0, 2);
    put_le(central, deflated ? 8 : 0, 2);
    put_le(central, 0, 2);
    put_le(central, 0x21, 2);
    put_le(central, crc, 4);
    put_le(central, static_cast<uint32_t>(payload.size()), 4);
    put_le(central, usize, 4);
    put_le(central, static_cast<uint32_t>(m.name.size()), 2);
    put_le(central, 0, 2);
    put_le(central, 0, 2);
    put_le(central, 0, 2);
    put_le(central, 0, 2);
    put_le(central, mode << 16, 4);
    put_le(central, offset, 4);
    central += m.name;
  }
  const auto central_offset = static_cast<uint32_t>(out.size());
  out += central;
  put_le(out, 0x06054b50, 4);
  put_le(out, 0, 2);
  put_le(out, 0, 2);
  put_le(out, static_cast<uint32_t>(members.size()), 2);
  put_le(out, static_cast<uint32_t>(members.size()), 2);
  put_le(out, static_cast<uint32_t>(central.size()), 4);
  put_le(out, central_offset, 4);
  put_le(out, 0, 2);
  return out;
}

/// \brief A ustar archive with `members` (names up to 100 bytes), ended by two zero blocks.
inline std::string make_tar(const std::vector<ArchiveMember>& members) {
  std::string out;
  for (const ArchiveMember& m : members) {
    char h[512] = {};
    std::memcpy(h, m.name.data(), std::min<size_t>(m.name.size(), 100));
    std::snprintf(h + 100, 8, "%07o", m.tar_type == '5' ? 0755 : 0644);
    std::snprintf(h + 108, 8, "%07o", 0);
    std::snprintf(h + 116, 8, "%07o", 0);
    std::snprintf(h + 124, 12, "%011o", static_cast<unsigned>(m.data.size()));
    std::snprintf(h + 136, 12, "%011o", 0);
    std::memset(h + 148, ' ', 8);
    h[156] = m.tar_type;
    std::memcpy(h + 157, m.tar_link.data(), std::min<size_t>(m.tar_link.size(), 100));
    std::memcpy(h + 257, "ustar", 6);
    std::memcpy(h + 263, "00", 2);
    unsigned sum = 0;
    for (unsigned char c : h) sum += c;
    std::snprintf(h + 148, 8, "%06o", sum);
    out.append(h, 512);
    out += m.data;
    out.append((512 - m.data.size() % 512) % 512, '\0');
  }
  out.append(1024, '\0');
  return out;
}

}  // namespace mlabench::test
