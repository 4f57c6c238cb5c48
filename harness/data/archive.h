// Extraction of the archives datasets ship as: zip (stored and deflated members), tar (ustar, with pax and GNU
// long names), tar.gz, and single gzip files. Only regular files and folders are written, and only inside the
// destination folder: absolute member names, `..` components, links and devices are refused.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

namespace mlabench::data {

enum class ArchiveKind { NONE, ZIP, TAR, TAR_GZ, GZIP, AUTO };

/// \brief The manifest spelling of `kind`: "none", "zip", "tar", "tar.gz", "gzip", "auto".
const char* archive_kind_name(ArchiveKind kind);

/// \brief Parses a manifest `extract` value; throws Error naming `where` and the accepted values.
ArchiveKind parse_archive_kind(const std::string& value, const std::string& where);

/// \brief What the first bytes of `file` say it is: ZIP, TAR_GZ (gzip whose content has the ustar magic), GZIP,
/// TAR, or NONE.
ArchiveKind sniff_archive_kind(const std::filesystem::path& file);

/// \brief Extracts `archive` of kind `kind` (not AUTO or NONE) into `dest_dir`: members of zip and tar files at
/// their relative paths; a gzip file as its name without ".gz". Returns the number of files written. Throws
/// Error naming the archive and member on a refused name, a corrupt member or a CRC mismatch.
int64_t extract_archive(const std::filesystem::path& archive, ArchiveKind kind,
                        const std::filesystem::path& dest_dir);

}  // namespace mlabench::data
