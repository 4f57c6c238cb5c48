// Archive reading is libarchive's (Debian's libarchive-dev): zip through the central directory (the seekable
// reader, as unzip and Python read it; zip64 included), every tar dialect, gzip filters, CRC checks. What is ours
// sits on top: which entries may be written (file type from the entry, so a zip member with mode 0600 and no type
// bits, as Python's zipfile.writestr makes, is a regular file), where they may go, that no two members claim the
// same path, and how much may come out, counted from the bytes actually written (a header's size can lie).
// Everything lands in a fresh temporary folder inside the destination (same filesystem, so moving is a rename)
// and is moved into place only after the last member passed; any failure removes the temporary folder.
#include "harness/data/archive.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/check.h"
#include "core/input_file.h"

namespace mlabench::data {

namespace fs = std::filesystem;

namespace {

constexpr const char* kRefusedHint =
    "HINT: the archive is damaged or was not made for this dataset; fetch it again or fix the mirror's copy";
constexpr const char* kLimitHint =
    "HINT: an archive that expands this far is a decompression bomb or not this dataset's archive; if the dataset "
    "really is this large, raise FetchOptions::archive_limits (defaults in harness/data/archive.h)";

// "256 MiB" for whole MiB/GiB, else the byte count: limits read best in the unit they were set in.
std::string human_bytes(int64_t n) {
  if (n > 0 && n % (int64_t{1} << 30) == 0) return fmt::format("{} GiB", n >> 30);
  if (n > 0 && n % (int64_t{1} << 20) == 0) return fmt::format("{} MiB", n >> 20);
  return fmt::format("{} bytes", n);
}

struct ArchiveReadFree {
  void operator()(struct archive* a) const { archive_read_free(a); }
};
using ArchiveReader = std::unique_ptr<struct archive, ArchiveReadFree>;

std::string archive_error(struct archive* a) {
  const char* msg = archive_error_string(a);
  return msg ? msg : "no detail from libarchive";
}

// A reader that accepts exactly `kind`: a tar.gz named "zip" in the manifest must not extract as whatever it is.
// Not yet open: libarchive reads ahead when opening, so opening can already fail on a damaged file.
ArchiveReader new_reader(const fs::path& file, ArchiveKind kind) {
  ArchiveReader a(archive_read_new());
  MLABENCH_CHECK(a != nullptr, "cannot read {}: libarchive could not allocate a reader. HINT: free memory",
                 file.string());
  switch (kind) {
    case ArchiveKind::ZIP: archive_read_support_format_zip_seekable(a.get()); break;
    case ArchiveKind::TAR_GZ: archive_read_support_filter_gzip(a.get()); [[fallthrough]];
    case ArchiveKind::TAR: archive_read_support_format_tar(a.get()); break;
    case ArchiveKind::GZIP:
      archive_read_support_filter_gzip(a.get());
      archive_read_support_format_raw(a.get());
      break;
    case ArchiveKind::NONE:
    case ArchiveKind::AUTO: MLABENCH_ICHECK(false, "new_reader called with kind {}", archive_kind_name(kind));
  }
  return a;
}

ArchiveReader open_reader(const fs::path& file, ArchiveKind kind) {
  ArchiveReader a = new_reader(file, kind);
  MLABENCH_CHECK(archive_read_open_filename(a.get(), file.c_str(), 1 << 16) == ARCHIVE_OK,
                 "cannot open {} as {}: {}. {}", file.string(), archive_kind_name(kind), archive_error(a.get()),
                 kRefusedHint);
  return a;
}

std::string file_type_words(mode_t type) {
  switch (type) {
    case AE_IFLNK: return "a symbolic link";
    case AE_IFCHR: return "a character device";
    case AE_IFBLK: return "a block device";
    case AE_IFIFO: return "a FIFO (named pipe)";
    case AE_IFSOCK: return "a socket";
    case 0: return "of no file type";
  }
  return fmt::format("of file type {:o}", static_cast<unsigned>(type));
}

// The member's path relative to the destination, as '/'-joined segments without "." or empty ones ("" for the
// archive's root, e.g. "./"); an Error when the name could escape the destination.
std::string member_relative_path(const std::string& name, const fs::path& archive) {
  MLABENCH_CHECK(!name.empty(), "archive {}: a member has an empty name; refused. {}", archive.string(), kRefusedHint);
  const bool absolute = name[0] == '/' || name[0] == '\\' || (name.size() >= 2 && name[1] == ':');
  MLABENCH_CHECK(!absolute, "archive {}: member '{}' has an absolute path; refused (it would write outside the "
                 "destination). {}", archive.string(), name, kRefusedHint);
  std::string rel;
  size_t start = 0;
  while (start <= name.size()) {
    const size_t sep = name.find_first_of("/\\", start);
    const size_t end = sep == std::string::npos ? name.size() : sep;
    const std::string segment = name.substr(start, end - start);
    MLABENCH_CHECK(segment != "..", "archive {}: member '{}' has a '..' component; refused (it would write outside "
                   "the destination). {}", archive.string(), name, kRefusedHint);
    if (!segment.empty() && segment != ".") rel += (rel.empty() ? "" : "/") + segment;
    start = end + 1;
  }
  return rel;
}

// Which member claimed each path. Two members writing one path would make the result depend on their order,
// and a file where a later member needs a folder ("x" then "x/y") cannot be extracted at all.
class MemberPaths {
 public:
  explicit MemberPaths(const fs::path& archive) : archive_(archive.string()) {}

  void claim(const std::string& rel, bool is_dir, const std::string& member) {
    for (size_t sep = rel.find('/'); sep != std::string::npos; sep = rel.find('/', sep + 1)) {
      const std::string parent = rel.substr(0, sep);
      const auto [it, added] = paths_.try_emplace(parent, Claim{member, true});
      MLABENCH_CHECK(it->second.is_dir, "archive {}: member '{}' needs '{}' to be a folder, but member '{}' is a "
                     "file there; overlapping members refused. {}", archive_, member, parent, it->second.member,
                     kRefusedHint);
    }
    const auto [it, added] = paths_.try_emplace(rel, Claim{member, is_dir});
    if (added || (is_dir && it->second.is_dir)) return;  // a folder listed twice writes nothing twice
    MLABENCH_CHECK(!it->second.is_dir, "archive {}: member '{}' is a file at '{}', but member '{}' needs '{}' to be a "
                   "folder; overlapping members refused. {}", archive_, member, rel, it->second.member, rel,
                   kRefusedHint);
    MLABENCH_FAIL("archive {}: members '{}' and '{}' both write '{}'; duplicate members refused (which one wins "
                  "would depend on their order). {}", archive_, it->second.member, member, rel, kRefusedHint);
  }

 private:
  struct Claim {
    std::string member;  // the first member that made the path a file or a folder
    bool is_dir;
  };
  std::string archive_;
  std::unordered_map<std::string, Claim> paths_;
};

class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

// Reads every entry of an open reader into `root` (a fresh, empty folder), enforcing our rules and limits.
class Extractor {
 public:
  Extractor(const fs::path& archive, ArchiveKind kind, const fs::path& root, const ArchiveLimits& limits)
      : archive_(archive), kind_(kind), root_(root), limits_(limits), paths_(archive), buf_(1 << 16) {}

  int64_t run() {
    ArchiveReader a = open_reader(archive_, kind_);
    std::string previous = "(none yet)";
    for (;;) {
      struct archive_entry* entry = nullptr;
      const int r = archive_read_next_header(a.get(), &entry);
      if (r == ARCHIVE_EOF) break;
      MLABENCH_CHECK(r == ARCHIVE_OK || r == ARCHIVE_WARN, "archive {}: cannot read the entry after member '{}' "
                     "({} read): {}. {}", archive_.string(), previous, n_members_, archive_error(a.get()),
                     kRefusedHint);
      previous = member_name(entry);
      extract_entry(a.get(), entry, previous);
    }
    return n_files_;
  }

 private:
  // Zip names flagged UTF-8 convert to the C locale only when ASCII, so the UTF-8 form comes first; a name with
  // no UTF-8 form (non-UTF-8 bytes in a tar) is taken as its raw bytes.
  std::string member_name(struct archive_entry* entry) const {
    if (kind_ == ArchiveKind::GZIP) {  // libarchive's raw format names its only entry "data"
      const std::string file = archive_.filename().string();
      MLABENCH_CHECK(file.size() > 3 && file.ends_with(".gz"), "gzip file {} does not end in .gz, so the name to "
                     "extract it to is unknown. HINT: name it <file>.gz in the manifest", archive_.string());
      return file.substr(0, file.size() - 3);
    }
    const char* utf8 = archive_entry_pathname_utf8(entry);
    const char* raw = utf8 ? utf8 : archive_entry_pathname(entry);
    MLABENCH_CHECK(raw != nullptr, "archive {}: member {} has no readable name; refused. {}", archive_.string(),
                   n_members_ + 1, kRefusedHint);
    return raw;
  }

  void extract_entry(struct archive* a, struct archive_entry* entry, const std::string& name) {
    ++n_members_;
    MLABENCH_CHECK(n_members_ <= limits_.max_members, "archive {}: member '{}' is number {}, past the limit of {} "
                   "members; refused. {}", archive_.string(), name, n_members_, limits_.max_members, kLimitHint);
    const std::string rel = member_relative_path(name, archive_);
    // A hardlink's file type is unset (tar) or regular (pax): the link target is what marks it.
    const char* hardlink = archive_entry_hardlink(entry);
    MLABENCH_CHECK(hardlink == nullptr, "archive {}: member '{}' is a hard link to '{}'; links are refused (only "
                   "regular files and folders are extracted). {}", archive_.string(), name, hardlink, kRefusedHint);
    const mode_t type = archive_entry_filetype(entry);
    MLABENCH_CHECK(type == AE_IFREG || type == AE_IFDIR, "archive {}: member '{}' is {}{}; refused (only regular "
                   "files and folders are extracted: links, devices, FIFOs and sockets are not). {}",
                   archive_.string(), name, file_type_words(type),
                   archive_entry_symlink(entry) ? fmt::format(" to '{}'", archive_entry_symlink(entry)) : "",
                   kRefusedHint);
    MLABENCH_CHECK(!archive_entry_is_encrypted(entry), "archive {}: member '{}' is encrypted; refused. {}",
                   archive_.string(), name, kRefusedHint);
    if (rel.empty()) {  // "./": the destination itself
      MLABENCH_CHECK(type == AE_IFDIR, "archive {}: member '{}' is a file without a name; refused. {}",
                     archive_.string(), name, kRefusedHint);
      return;
    }
    paths_.claim(rel, type == AE_IFDIR, name);
    const fs::path target = root_ / rel;
    std::error_code ec;
    fs::create_directories(type == AE_IFDIR ? target : target.parent_path(), ec);
    MLABENCH_CHECK(!ec, "cannot create the folder for member '{}' of {} under {}: {}. HINT: check free space and "
                   "permissions", name, archive_.string(), root_.string(), ec.message());
    if (type == AE_IFREG) write_member(a, entry, name, target);
  }

  // Bytes are counted as they come out of the decompressor and checked before they are written, so a member
  // whose header claims 1 KB but inflates to gigabytes stops at the limit.
  void write_member(struct archive* a, struct archive_entry* entry, const std::string& name, const fs::path& target) {
    // O_EXCL | O_NOFOLLOW: the folder is fresh and holds no links, so an existing path here would be a bug.
    FileDescriptor fd(::open(target.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644));
    MLABENCH_CHECK(fd.get() >= 0, "cannot create {} for member '{}' of {}: {}. HINT: check free space and "
                   "permissions", target.string(), name, archive_.string(), std::strerror(errno));
    const std::string claimed = archive_entry_size_is_set(entry)
                                    ? fmt::format("its header says {} bytes", archive_entry_size(entry))
                                    : "its header gives no size";
    int64_t written = 0;
    for (;;) {
      const la_ssize_t n = archive_read_data(a, buf_.data(), buf_.size());
      if (n == 0) break;
      MLABENCH_CHECK(n > 0, "archive {}: member '{}' is corrupt after {} bytes: {}. {}", archive_.string(), name,
                     written, archive_error(a), kRefusedHint);
      MLABENCH_CHECK(written + n <= limits_.max_member_bytes, "archive {}: member '{}' expands past the per-member "
                     "limit of {} bytes ({}; {}); refused. {}", archive_.string(), name, limits_.max_member_bytes,
                     human_bytes(limits_.max_member_bytes), claimed, kLimitHint);
      MLABENCH_CHECK(total_bytes_ + n <= limits_.max_total_bytes, "archive {}: member '{}' takes the archive past "
                     "the limit of {} bytes ({}) for all members together; refused. {}", archive_.string(), name,
                     limits_.max_total_bytes, human_bytes(limits_.max_total_bytes), kLimitHint);
      write_all(fd.get(), n, target);
      written += n;
      total_bytes_ += n;
    }
    MLABENCH_CHECK(::close(fd.release()) == 0, "cannot write {}: {}. HINT: check free space", target.string(),
                   std::strerror(errno));
    ++n_files_;
  }

  void write_all(int fd, la_ssize_t n, const fs::path& target) {
    for (la_ssize_t done = 0; done < n;) {
      const ssize_t w = ::write(fd, buf_.data() + done, static_cast<size_t>(n - done));
      if (w < 0 && errno == EINTR) continue;
      MLABENCH_CHECK(w > 0, "cannot write {}: {}. HINT: check free space", target.string(), std::strerror(errno));
      done += w;
    }
  }

  const fs::path archive_;
  const ArchiveKind kind_;
  const fs::path root_;
  const ArchiveLimits limits_;
  MemberPaths paths_;
  std::vector<char> buf_;
  int64_t n_members_ = 0, n_files_ = 0, total_bytes_ = 0;
};

// Before anything moves: every extracted path must land on nothing, or be a folder landing on a folder (two
// archives of a dataset may share folders). A file there is another manifest file, another archive's member or
// the archive itself, and replacing it would lose it.
void check_no_clobber(const fs::path& from, const fs::path& to, const fs::path& rel, const fs::path& archive) {
  for (const fs::directory_entry& e : fs::directory_iterator(from)) {
    const fs::path target = to / e.path().filename();
    const fs::file_status there = fs::symlink_status(target);
    if (!fs::exists(there)) continue;
    const fs::path member = rel / e.path().filename();
    MLABENCH_CHECK(e.is_directory() && fs::is_directory(there), "archive {}: its path '{}' would replace {}, which is "
                   "already there (another file of the dataset, another archive's member, or the archive itself); "
                   "refused. {}", archive.string(), member.generic_string(), target.string(), kRefusedHint);
    check_no_clobber(e.path(), target, member, archive);
  }
}

void move_into(const fs::path& from, const fs::path& to) {
  for (const fs::directory_entry& e : fs::directory_iterator(from)) {
    const fs::path target = to / e.path().filename();
    if (fs::is_directory(fs::symlink_status(target)))
      move_into(e.path(), target);
    else
      fs::rename(e.path(), target);
  }
}

// A fresh folder next to where the members go, so moving them into place is a rename on one filesystem.
fs::path make_temp_folder(const fs::path& dest_dir, const fs::path& archive) {
  std::string templ = (dest_dir / ("." + archive.filename().string() + ".extracting-XXXXXX")).string();
  MLABENCH_CHECK(::mkdtemp(templ.data()) != nullptr, "cannot create a temporary folder in {} to extract {}: {}. "
                 "HINT: check free space and permissions", dest_dir.string(), archive.string(), std::strerror(errno));
  return templ;
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
    // Whether the gzip holds a tar: the first 512 decompressed bytes, read as one raw entry. A damaged gzip is
    // still a gzip here; extracting it says what is wrong.
    ArchiveReader a = new_reader(file, ArchiveKind::GZIP);
    struct archive_entry* entry = nullptr;
    std::array<char, 512> inner{};
    const bool tar = archive_read_open_filename(a.get(), file.c_str(), 1 << 16) == ARCHIVE_OK &&
                     archive_read_next_header(a.get(), &entry) == ARCHIVE_OK &&
                     archive_read_data(a.get(), inner.data(), inner.size()) == 512 &&
                     std::memcmp(inner.data() + 257, "ustar", 5) == 0;
    return tar ? ArchiveKind::TAR_GZ : ArchiveKind::GZIP;
  }
  if (n == 512 && std::memcmp(head.data() + 257, "ustar", 5) == 0) return ArchiveKind::TAR;
  return ArchiveKind::NONE;
}

int64_t extract_archive(const fs::path& archive, ArchiveKind kind, const fs::path& dest_dir,
                        const ArchiveLimits& limits) {
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
  std::error_code ec;
  fs::create_directories(dest_dir, ec);
  MLABENCH_CHECK(!ec, "cannot create {} to extract {} into: {}. HINT: check free space and permissions",
                 dest_dir.string(), archive.string(), ec.message());
  const fs::path temp = make_temp_folder(dest_dir, archive);
  try {
    const int64_t n_files = Extractor(archive, kind, temp, limits).run();
    check_no_clobber(temp, dest_dir, "", archive);
    move_into(temp, dest_dir);
    fs::remove_all(temp);
    return n_files;
  } catch (const Error&) {
    fs::remove_all(temp, ec);
    throw;
  } catch (const std::exception& e) {  // filesystem errors, memory: still an Error naming the archive
    fs::remove_all(temp, ec);
    MLABENCH_FAIL("extracting {} into {} failed: {}. HINT: check free space and permissions there", archive.string(),
                  dest_dir.string(), e.what());
  }
}

}  // namespace mlabench::data
