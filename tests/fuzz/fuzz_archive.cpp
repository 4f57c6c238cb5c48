// Fuzzes dataset archive extraction (harness/data/archive.cpp, libarchive underneath with our refusals on top):
// the first byte picks the kind the manifest would name (zip, tar, tar.gz, gzip, or auto: sniffed from the bytes),
// the rest is the archive. Extraction goes into a fresh folder under small caps (so a bomb stops fast), and every
// refusal must be an mlabench::Error that leaves the folder empty.
#include <filesystem>
#include <string>

#include "harness/data/archive.h"
#include "mlabench/result.h"
#include "tests/fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace fz = mlabench::fuzz;
  namespace fs = std::filesystem;
  using mlabench::data::ArchiveKind;
  if (size < 1) return 0;
  static const ArchiveKind kKinds[] = {ArchiveKind::ZIP, ArchiveKind::TAR, ArchiveKind::TAR_GZ, ArchiveKind::GZIP,
                                       ArchiveKind::AUTO};
  ArchiveKind kind = kKinds[data[0] % 5];
  const fs::path file = fz::scratch_dir() / "fuzz.gz", dest = fz::scratch_dir() / "out";
  fz::write_file(file, fz::as_text(data + 1, size - 1));
  fs::remove_all(dest);
  fs::create_directories(dest);
  if (kind == ArchiveKind::AUTO) kind = mlabench::data::sniff_archive_kind(file);
  if (kind == ArchiveKind::NONE) return 0;
  const mlabench::data::ArchiveLimits caps{.max_total_bytes = 8 << 20, .max_member_bytes = 4 << 20, .max_members = 500};
  bool refused = false;
  try {
    (void)mlabench::data::extract_archive(file, kind, dest, caps);
  } catch (const mlabench::Error&) {
    refused = true;
  }
  // A refused archive leaves nothing behind (archive.h's promise).
  if (refused && !fs::is_empty(dest)) std::abort();
  return 0;
}
