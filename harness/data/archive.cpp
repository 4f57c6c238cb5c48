// Zip: read from the central directory (the local headers may carry zero sizes when a data descriptor
// follows), each member inflated raw with zlib and checked against its CRC-32. Tar and tar.gz: one streaming
// reader through zlib's gzread, which passes plain files through unchanged; pax `path` records and GNU long
// names override the 100-byte name field. Gzip: gzread, so concatenated members come out as one file. Every
// member name is checked before anything is written (absolute paths, `..`, drive letters, links and devices
// are refused), so a hostile archive cannot write outside the destination.
#include "harness/data/archive.h"

#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <fstream>
#include <memory>
#include <utility>
#include <vector>

#include "engine/core/check.h"
#include "engine/core/input_file.h"

namespace mlabench::data {

namespace fs = std::filesystem;

namespace {

constexpr const char* kRefusedHint =
    "HINT: the archive is damaged or was not made for this dataset; fetch it again or fix the mirror's copy";

std::string read_whole_file(const fs::path& file) {
  refuse_non_regular_file(file, "archive");
  std::ifstream in(file, std::ios::binary);
  MLABENCH_CHECK(in.good(), "cannot open archive {}. HINT: check that it exists and is readable", file.string());
  std::error_code ec;
  std::string bytes(fs::file_size(file, ec), '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  MLABENCH_CHECK(!ec && in.gcount() == static_cast<std::streamsize>(bytes.size()),
                 "read error in archive {} ({} of {} bytes). HINT: check the disk", file.string(), in.gcount(),
                 bytes.size());
  return bytes;
}

void write_whole_file(const fs::path& file, const char* data, size_t size) {
  fs::create_directories(file.parent_path());
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out.write(data, static_cast<std::streamsize>(size));
  MLABENCH_CHECK(out.good(), "cannot write {}. HINT: check free space and permissions", file.string());
}

// Where member `name` goes under `dest_dir`, or an Error when the name could escape it.
fs::path member_target(const fs::path& dest_dir, const std::string& name, const fs::path& archive) {
  MLABENCH_CHECK(!name.empty(), "archive {} has a member with an empty name. {}", archive.string(), kRefusedHint);
  const bool absolute = name[0] == '/' || name[0] == '\\' || (name.size() >= 2 && name[1] == ':');
  MLABENCH_CHECK(!absolute, "archive {}: member '{}' has an absolute path; refused (it would write outside {}). {}",
                 archive.string(), name, dest_dir.string(), kRefusedHint);
  fs::path rel;
  size_t start = 0;
  while (start <= name.size()) {
    const size_t sep = name.find_first_of("/\\", start);
    const size_t end = sep == std::string::npos ? name.size() : sep;
    const std::string segment = name.substr(start, end - start);
    MLABENCH_CHECK(segment != "..", "archive {}: member '{}' has a '..' component; refused (it would write outside {}). {}",
                   archive.string(), name, dest_dir.string(), kRefusedHint);
    if (!segment.empty() && segment != ".") rel /= segment;
    start = end + 1;
  }
  return rel.empty() ? dest_dir : dest_dir / rel;
}

uint32_t le16(const std::string& b, size_t at) {
  return static_cast<uint32_t>(static_cast<unsigned char>(b[at])) |
         static_cast<uint32_t>(static_cast<unsigned char>(b[at + 1])) << 8;
}
uint32_t le32(const std::string& b, size_t at) { return le16(b, at) | le16(b, at + 2) << 16; }

int64_t extract_zip(const fs::path& archive, const fs::path& dest_dir) {
  const std::string z = read_whole_file(archive);
  const std::string where = archive.string();
  MLABENCH_CHECK(z.size() >= 22, "zip {} is {} bytes, too short for an end-of-central-directory record. {}", where,
                 z.size(), kRefusedHint);
  // The end record sits in the last 22 + 65535 (longest comment) bytes.
  size_t eocd = std::string::npos;
  const size_t lowest = z.size() > 22 + 65535 ? z.size() - 22 - 65535 : 0;
  for (size_t pos = z.size() - 22 + 1; pos-- > lowest;)
    if (le32(z, pos) == 0x06054b50) {
      eocd = pos;
      break;
    }
  MLABENCH_CHECK(eocd != std::string::npos, "zip {} has no end-of-central-directory record. {}", where, kRefusedHint);
  const uint32_t n_entries = le16(z, eocd + 10), cd_size = le32(z, eocd + 12), cd_offset = le32(z, eocd + 16);
  MLABENCH_CHECK(n_entries != 0xFFFF && cd_offset != 0xFFFFFFFFu,
                 "zip {} is a ZIP64 archive, which is not supported. HINT: repackage it as tar.gz or a plain zip",
                 where);
  MLABENCH_CHECK(static_cast<uint64_t>(cd_offset) + cd_size <= eocd,
                 "zip {}: central directory (offset {}, {} bytes) runs past its end record at {}. {}", where,
                 cd_offset, cd_size, eocd, kRefusedHint);
  int64_t n_files = 0;
  size_t p = cd_offset;
  std::vector<char> out;
  for (uint32_t i = 0; i < n_entries; ++i) {
    MLABENCH_CHECK(p + 46 <= eocd && le32(z, p) == 0x02014b50,
                   "zip {}: central directory entry {} of {} is malformed at offset {}. {}", where, i, n_entries, p,
                   kRefusedHint);
    const uint32_t made_by = le16(z, p + 4), flags = le16(z, p + 8), method = le16(z, p + 10);
    const uint32_t crc = le32(z, p + 16), csize = le32(z, p + 20), usize = le32(z, p + 24);
    const uint32_t name_len = le16(z, p + 28), extra_len = le16(z, p + 30), comment_len = le16(z, p + 32);
    const uint32_t external_attr = le32(z, p + 38), local_offset = le32(z, p + 42);
    MLABENCH_CHECK(p + 46 + name_len <= eocd, "zip {}: entry {} name runs past the central directory. {}", where, i,
                   kRefusedHint);
    const std::string name = z.substr(p + 46, name_len);
    p += 46 + name_len + extra_len + comment_len;

    const fs::path target = member_target(dest_dir, name, archive);
    MLABENCH_CHECK((flags & 1) == 0, "zip {}: member '{}' is encrypted. {}", where, name, kRefusedHint);
    const uint32_t unix_mode = (made_by >> 8) == 3 ? external_attr >> 16 : 0;  // host 3 = Unix
    MLABENCH_CHECK(unix_mode == 0 || S_ISREG(unix_mode) || S_ISDIR(unix_mode),
                   "zip {}: member '{}' is not a regular file or folder (mode {:o}); links are refused. {}", where,
                   name, unix_mode, kRefusedHint);
    if (name.back() == '/' || name.back() == '\\') {
      fs::create_directories(target);
      continue;
    }
    MLABENCH_CHECK(static_cast<uint64_t>(local_offset) + 30 <= z.size() && le32(z, local_offset) == 0x04034b50,
                   "zip {}: member '{}' has no local header at offset {}. {}", where, name, local_offset,
                   kRefusedHint);
    const size_t data_at = local_offset + 30 + le16(z, local_offset + 26) + le16(z, local_offset + 28);
    MLABENCH_CHECK(data_at + csize <= z.size(), "zip {}: member '{}' ({} compressed bytes) runs past the end. {}",
                   where, name, csize, kRefusedHint);
    out.assign(usize, 0);
    if (method == 0) {
      MLABENCH_CHECK(csize == usize, "zip {}: stored member '{}' has {} bytes but says {}. {}", where, name, csize,
                     usize, kRefusedHint);
      std::memcpy(out.data(), z.data() + data_at, usize);
    } else if (method == 8) {
      z_stream s{};
      MLABENCH_ICHECK(inflateInit2(&s, -MAX_WBITS) == Z_OK, "zlib inflateInit2 failed");
      s.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(z.data() + data_at));
      s.avail_in = csize;
      s.next_out = reinterpret_cast<Bytef*>(out.data());
      s.avail_out = usize;
      const int rc = inflate(&s, Z_FINISH);
      const uLong produced = s.total_out;
      inflateEnd(&s);
      MLABENCH_CHECK(rc == Z_STREAM_END && produced == usize,
                     "zip {}: member '{}' does not inflate to its {} bytes (zlib status {}, {} bytes). {}", where,
                     name, usize, rc, produced, kRefusedHint);
    } else {
      MLABENCH_FAIL("zip {}: member '{}' uses compression method {}; only stored (0) and deflate (8) are supported. "
                    "HINT: repackage the archive with plain deflate",
                    where, name, method);
    }
    const uLong actual_crc = crc32(0L, reinterpret_cast<const Bytef*>(out.data()), usize);
    MLABENCH_CHECK(actual_crc == crc, "zip {}: member '{}' has CRC-32 {:08x}, its header says {:08x}. {}", where, name,
                   actual_crc, crc, kRefusedHint);
    write_whole_file(target, out.data(), out.size());
    ++n_files;
  }
  return n_files;
}

struct GzFileClose {
  void operator()(gzFile_s* g) const { gzclose(g); }
};
using GzFile = std::unique_ptr<gzFile_s, GzFileClose>;

GzFile open_gz(const fs::path& file) {
  GzFile g(gzopen(file.c_str(), "rb"));
  MLABENCH_CHECK(g != nullptr, "cannot open {}. HINT: check that it exists and is readable", file.string());
  gzbuffer(g.get(), 1 << 16);
  return g;
}

// Reads exactly n bytes; false at a clean end of input before the first byte.
bool gz_read_exact(gzFile_s* g, char* buf, size_t n, const fs::path& file) {
  size_t got = 0;
  while (got < n) {
    const int r = gzread(g, buf + got, static_cast<unsigned>(n - got));
    if (r <= 0) {
      int err = Z_OK;
      const char* msg = gzerror(g, &err);
      MLABENCH_CHECK(r == 0 && (err == Z_OK || err == Z_STREAM_END), "{}: decompression failed: {}. {}", file.string(),
                     msg, kRefusedHint);
      MLABENCH_CHECK(got == 0, "{}: ends in the middle of a block ({} of {} bytes). {}", file.string(), got, n,
                     kRefusedHint);
      return false;
    }
    got += static_cast<size_t>(r);
  }
  return true;
}

uint64_t tar_number(const char* field, size_t len, const fs::path& archive) {
  // GNU base-256 for sizes of 8 GiB and more: high bit set, big-endian binary.
  if (static_cast<unsigned char>(field[0]) & 0x80) {
    uint64_t v = static_cast<unsigned char>(field[0]) & 0x7f;
    for (size_t i = 1; i < len; ++i) v = v << 8 | static_cast<unsigned char>(field[i]);
    return v;
  }
  uint64_t v = 0;
  size_t i = 0;
  while (i < len && (field[i] == ' ' || field[i] == '\0')) ++i;
  for (; i < len && field[i] >= '0' && field[i] <= '7'; ++i) v = v * 8 + static_cast<uint64_t>(field[i] - '0');
  for (; i < len; ++i)
    MLABENCH_CHECK(field[i] == ' ' || field[i] == '\0', "tar {}: header number field '{}' is not octal. {}",
                   archive.string(), std::string(field, len), kRefusedHint);
  return v;
}

std::string tar_string(const char* field, size_t len) { return std::string(field, strnlen(field, len)); }

std::string gz_read_payload(gzFile_s* g, uint64_t size, const fs::path& archive) {
  MLABENCH_CHECK(size < (1u << 24), "tar {}: extended header of {} bytes is implausibly large. {}", archive.string(),
                 size, kRefusedHint);
  std::string data((size + 511) / 512 * 512, '\0');
  MLABENCH_CHECK(gz_read_exact(g, data.data(), data.size(), archive), "tar {}: ends inside an extended header. {}",
                 archive.string(), kRefusedHint);
  data.resize(size);
  return data;
}

// The `path` record of a pax extended header ("<len> <key>=<value>\n" records, len counting the whole record),
// or "" when it has none.
std::string pax_path(const std::string& records, const fs::path& archive) {
  size_t p = 0;
  std::string path;
  while (p < records.size()) {
    const size_t space = records.find(' ', p);
    uint64_t len = 0;
    bool digits = space != std::string::npos && space > p;
    for (size_t i = p; digits && i < space; ++i) {
      digits = records[i] >= '0' && records[i] <= '9';
      len = len * 10 + static_cast<uint64_t>(records[i] - '0');
    }
    MLABENCH_CHECK(digits && len > space - p + 1 && p + len <= records.size() && records[p + len - 1] == '\n',
                   "tar {}: malformed pax record at byte {} of an extended header. {}", archive.string(), p,
                   kRefusedHint);
    const std::string record = records.substr(space + 1, p + len - 1 - (space + 1));
    if (record.rfind("path=", 0) == 0) path = record.substr(5);
    p += len;
  }
  return path;
}

int64_t extract_tar(const fs::path& archive, const fs::path& dest_dir) {
  GzFile g = open_gz(archive);
  std::array<char, 512> h{};
  std::string long_name;
  int64_t n_files = 0;
  std::vector<char> buf(1 << 16);
  while (gz_read_exact(g.get(), h.data(), h.size(), archive)) {
    if (std::all_of(h.begin(), h.end(), [](char c) { return c == 0; })) break;  // end-of-archive blocks
    uint64_t sum = 0;
    for (size_t i = 0; i < h.size(); ++i) sum += i >= 148 && i < 156 ? ' ' : static_cast<unsigned char>(h[i]);
    const uint64_t stored_sum = tar_number(h.data() + 148, 8, archive);
    MLABENCH_CHECK(sum == stored_sum, "tar {}: header checksum {} does not match the stored {} (member '{}'). {}",
                   archive.string(), sum, stored_sum, tar_string(h.data(), 100), kRefusedHint);
    std::string name = tar_string(h.data(), 100);
    if (std::memcmp(h.data() + 257, "ustar", 5) == 0) {
      const std::string prefix = tar_string(h.data() + 345, 155);
      if (!prefix.empty()) name = prefix + "/" + name;
    }
    const uint64_t size = tar_number(h.data() + 124, 12, archive);
    const char type = h[156];
    if (type == 'L' || type == 'x') {  // the next header's name, as GNU long name or pax record
      const std::string payload = gz_read_payload(g.get(), size, archive);
      long_name = type == 'L' ? tar_string(payload.data(), payload.size()) : pax_path(payload, archive);
      continue;
    }
    if (type == 'g') {  // pax global header: nothing in it changes where files go
      gz_read_payload(g.get(), size, archive);
      continue;
    }
    if (!long_name.empty()) name = std::exchange(long_name, std::string());
    const fs::path target = member_target(dest_dir, name, archive);
    if (type == '5') {
      fs::create_directories(target);
      continue;
    }
    MLABENCH_CHECK(type == '0' || type == '\0' || type == '7',
                   "tar {}: member '{}' has type '{}'; only regular files and folders are extracted (links and "
                   "devices are refused). {}",
                   archive.string(), name, type, kRefusedHint);
    fs::create_directories(target.parent_path());
    std::ofstream out(target, std::ios::binary | std::ios::trunc);
    MLABENCH_CHECK(out.good(), "cannot create {}. HINT: check free space and permissions", target.string());
    uint64_t left = (size + 511) / 512 * 512, to_write = size;
    while (left > 0) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(left, buf.size()));
      MLABENCH_CHECK(gz_read_exact(g.get(), buf.data(), n, archive), "tar {}: ends inside member '{}'. {}",
                     archive.string(), name, kRefusedHint);
      const size_t w = static_cast<size_t>(std::min<uint64_t>(to_write, n));
      out.write(buf.data(), static_cast<std::streamsize>(w));
      left -= n;
      to_write -= w;
    }
    MLABENCH_CHECK(out.good(), "cannot write {}. HINT: check free space and permissions", target.string());
    ++n_files;
  }
  return n_files;
}

int64_t gunzip_file(const fs::path& archive, const fs::path& dest_dir) {
  const std::string name = archive.filename().string();
  MLABENCH_CHECK(name.size() > 3 && name.ends_with(".gz"),
                 "gzip file {} does not end in .gz, so the name to extract it to is unknown. HINT: name it "
                 "<file>.gz in the manifest",
                 archive.string());
  const fs::path target = dest_dir / name.substr(0, name.size() - 3);
  GzFile g = open_gz(archive);
  std::ofstream out(target, std::ios::binary | std::ios::trunc);
  MLABENCH_CHECK(out.good(), "cannot create {}. HINT: check free space and permissions", target.string());
  std::vector<char> buf(1 << 20);
  for (;;) {
    const int r = gzread(g.get(), buf.data(), static_cast<unsigned>(buf.size()));
    int err = Z_OK;
    const char* msg = gzerror(g.get(), &err);
    MLABENCH_CHECK(r >= 0 && (err == Z_OK || err == Z_STREAM_END), "gzip {}: decompression failed: {}. {}",
                   archive.string(), msg, kRefusedHint);
    if (r == 0) break;
    out.write(buf.data(), r);
  }
  MLABENCH_CHECK(out.good(), "cannot write {}. HINT: check free space and permissions", target.string());
  return 1;
}

}  // namespace

const char* archive_kind_name(ArchiveKind kind) {
  switch (kind) {
    case ArchiveKind::NONE: return "none";
    case ArchiveKind::ZIP: return "zip";
    case ArchiveKind::TAR: return "tar";
    case ArchiveKind::TAR_GZ: return "tar.gz";
    case ArchiveKind::GZIP: return "gzip";
    case ArchiveKind::AUTO: return "auto";
  }
  return "?";
}

ArchiveKind parse_archive_kind(const std::string& value, const std::string& where) {
  for (ArchiveKind k : {ArchiveKind::NONE, ArchiveKind::ZIP, ArchiveKind::TAR, ArchiveKind::TAR_GZ, ArchiveKind::GZIP,
                        ArchiveKind::AUTO})
    if (value == archive_kind_name(k)) return k;
  MLABENCH_FAIL("{}: extract is \"{}\"; accepted: none, zip, tar, tar.gz, gzip, auto. HINT: fix the manifest", where,
                value);
}

ArchiveKind sniff_archive_kind(const fs::path& file) {
  refuse_non_regular_file(file, "archive");
  std::ifstream in(file, std::ios::binary);
  MLABENCH_CHECK(in.good(), "cannot open {}. HINT: check that it exists and is readable", file.string());
  std::array<char, 512> head{};
  in.read(head.data(), head.size());
  const auto n = static_cast<size_t>(in.gcount());
  if (n >= 4 && std::memcmp(head.data(), "PK\x03\x04", 4) == 0) return ArchiveKind::ZIP;
  if (n >= 2 && static_cast<unsigned char>(head[0]) == 0x1f && static_cast<unsigned char>(head[1]) == 0x8b) {
    GzFile g = open_gz(file);
    std::array<char, 512> inner{};
    const int r = gzread(g.get(), inner.data(), static_cast<unsigned>(inner.size()));
    return r == 512 && std::memcmp(inner.data() + 257, "ustar", 5) == 0 ? ArchiveKind::TAR_GZ : ArchiveKind::GZIP;
  }
  if (n == 512 && std::memcmp(head.data() + 257, "ustar", 5) == 0) return ArchiveKind::TAR;
  return ArchiveKind::NONE;
}

int64_t extract_archive(const fs::path& archive, ArchiveKind kind, const fs::path& dest_dir) {
  const ArchiveKind sniffed = sniff_archive_kind(archive);
  const bool gz_magic = sniffed == ArchiveKind::GZIP || sniffed == ArchiveKind::TAR_GZ;
  const bool consistent = kind == ArchiveKind::ZIP      ? sniffed == ArchiveKind::ZIP
                          : kind == ArchiveKind::GZIP   ? gz_magic
                          : kind == ArchiveKind::TAR_GZ ? gz_magic
                          : kind == ArchiveKind::TAR    ? !gz_magic && sniffed != ArchiveKind::ZIP
                                                        : false;
  MLABENCH_CHECK(consistent, "{} is to be extracted as {}, but its first bytes say {}. {}", archive.string(),
                 archive_kind_name(kind), sniffed == ArchiveKind::NONE ? "no known archive" : archive_kind_name(sniffed),
                 kRefusedHint);
  fs::create_directories(dest_dir);
  switch (kind) {
    case ArchiveKind::ZIP: return extract_zip(archive, dest_dir);
    case ArchiveKind::TAR:
    case ArchiveKind::TAR_GZ: return extract_tar(archive, dest_dir);
    case ArchiveKind::GZIP: return gunzip_file(archive, dest_dir);
    case ArchiveKind::NONE:
    case ArchiveKind::AUTO: break;
  }
  MLABENCH_ICHECK(false, "extract_archive called with kind {}", archive_kind_name(kind));
  return 0;
}

}  // namespace mlabench::data
