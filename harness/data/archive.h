// Extraction of the archives datasets ship as: zip (zip64 too), tar (every dialect libarchive reads: ustar,
// pax, GNU, v7), tar.gz, and single gzip files, read through libarchive. On top of it, our refusals: only regular
// files and folders are written (the entry's file type decides, never its permission bits), only inside the
// destination (absolute names and `..` refused), no member may overlap another (same path twice, or a file where
// another member needs a folder), and the expansion is capped (bytes per member, bytes in all, member count),
// counted as bytes are written. Members land in a temporary folder first and move into the destination only
// when the whole archive passed, so a refused archive leaves nothing behind.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

namespace mlabench::data {

enum class ArchiveKind { NONE, ZIP, TAR, TAR_GZ, GZIP, AUTO };

/// \brief Caps on what one archive may expand to. The defaults are over 100x the largest real dataset archive
/// (mmlu.zip: 177 members, 7.2 MB in all, 1.9 MB in its largest member), so an honest dataset many times larger
/// than today's still fits, while a decompression bomb stops long before it fills a disk.
struct ArchiveLimits {
  int64_t max_total_bytes = int64_t{1} << 30;    ///< bytes written for all members together (1 GiB)
  int64_t max_member_bytes = int64_t{256} << 20; ///< bytes written for one member (256 MiB)
  int64_t max_members = 20000;                   ///< entries read (files and folders)
};

/// \brief The manifest spelling of `kind`: "none", "zip", "tar", "tar.gz", "gzip", "auto".
const char* archive_kind_name(ArchiveKind kind);

/// \brief Parses a manifest `extract` value; throws Error naming `where` and the accepted values.
ArchiveKind parse_archive_kind(const std::string& value, const std::string& where);

/// \brief What the first bytes of `file` say it is: ZIP, TAR_GZ (gzip whose content has the ustar magic), GZIP,
/// TAR, or NONE.
ArchiveKind sniff_archive_kind(const std::filesystem::path& file);

/// \brief Extracts `archive` of kind `kind` (not AUTO or NONE) into `dest_dir`: members of zip and tar files at
/// their relative paths; a gzip file as its name without ".gz". Returns the number of files written. Throws
/// Error naming the archive, the member and the rule or limit on a refused member, a corrupt member (CRC
/// mismatch, truncation), a cap reached, or a path already present in `dest_dir`; then nothing of the archive is
/// left in `dest_dir`.
int64_t extract_archive(const std::filesystem::path& archive, ArchiveKind kind, const std::filesystem::path& dest_dir,
                        const ArchiveLimits& limits = {});

}  // namespace mlabench::data
