// require_regular_file / open_input_file (core/input_file.h).
#include "core/input_file.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "core/check.h"

namespace mlabench {

std::string describe_file_kind(const std::filesystem::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    return errno == ENOENT || errno == ENOTDIR ? "nothing (it does not exist)"
                                               : std::string("unreadable (") + std::strerror(errno) + ")";
  if (S_ISREG(st.st_mode)) return "a regular file";
  if (S_ISDIR(st.st_mode)) return "a directory";
  if (S_ISFIFO(st.st_mode)) return "a FIFO (named pipe)";
  if (S_ISSOCK(st.st_mode)) return "a socket";
  if (S_ISCHR(st.st_mode)) return "a character device";
  if (S_ISBLK(st.st_mode)) return "a block device";
  return "not a regular file";
}

void require_regular_file(const std::filesystem::path& path, std::string_view what) {
  const std::string kind = describe_file_kind(path);
  MLABENCH_CHECK(kind == "a regular file",
                 "{}: {} is {}, not a regular file. HINT: pass the path of a file (pipes and devices are not read, "
                 "so that nothing waits on a writer that never comes)",
                 what, path.string(), kind);
}

void refuse_non_regular_file(const std::filesystem::path& path, std::string_view what) {
  if (describe_file_kind(path) == "nothing (it does not exist)") return;
  require_regular_file(path, what);
}

std::ifstream open_input_file(const std::filesystem::path& path, std::string_view what) {
  require_regular_file(path, what);
  std::ifstream in(path, std::ios::binary);
  MLABENCH_CHECK(in.good(), "{}: cannot open {}: {}. HINT: check the file's permissions", what, path.string(),
                 std::strerror(errno));
  return in;
}

}  // namespace mlabench
