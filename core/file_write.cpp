#include "core/file_write.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

#include "core/check.h"

namespace mlabench {

namespace fs = std::filesystem;

void write_file_atomically(const fs::path& path, const std::string& text) {
  // Temp, fsync, rename, fsync the folder: a kill or a full disk leaves the old file or the new one, never a cut one.
  const fs::path tmp = path.string() + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  MLABENCH_CHECK(fd >= 0, "cannot create {} ({}). HINT: check that the output folder exists and is writable",
                 tmp.string(), std::strerror(errno));
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  bool ok = done == text.size();
  int write_errno = errno;
  if (ok && ::fsync(fd) != 0) {
    ok = false;
    write_errno = errno;
  }
  ::close(fd);
  if (!ok) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    MLABENCH_FAIL("writing {} failed after {} of {} bytes ({}); {} is as it was. HINT: free disk space, then run "
                  "again (with --resume for a run folder)",
                  tmp.string(), done, text.size(), std::strerror(write_errno), path.string());
  }
  fs::rename(tmp, path);
  const fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
  if (const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
    ::fsync(dfd);  // the rename itself made durable; a folder that cannot be opened only loses that
    ::close(dfd);
  }
}

}  // namespace mlabench
