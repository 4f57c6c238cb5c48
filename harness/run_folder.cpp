#include "harness/run_folder.h"

#include <fcntl.h>
#include <sys/file.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>

#include "core/check.h"
#include "core/json_limits.h"
#include "harness/gen_kwargs.h"
#include "harness/shards.h"

namespace mlabench::harness {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

RunFolderLock::RunFolderLock(const fs::path& dir) {
  const fs::path file = dir / ".lock";
  fd_ = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  MLABENCH_CHECK(fd_ >= 0, "cannot open {} ({}). HINT: the output folder must be writable", file.string(),
                 std::strerror(errno));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    char buf[32] = {};
    const ssize_t n = ::pread(fd_, buf, sizeof buf - 1, 0);
    const std::string holder = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "unknown";
    ::close(fd_);
    fd_ = -1;
    MLABENCH_FAIL("another mlabench run (PID {}) is writing to {}. HINT: wait for it to finish, or choose another "
                  "--output folder; two writers would grade documents twice and duplicate sample lines",
                  holder, dir.string());
  }
  const std::string pid = std::to_string(::getpid());
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size()))
    std::fprintf(stderr, "warning: could not record this run's PID in %s\n", file.c_str());
}

RunFolderLock::~RunFolderLock() {
  if (fd_ >= 0) ::close(fd_);  // closing the descriptor releases the lock (also when the process dies)
}

SamplesFile::SamplesFile(fs::path path, bool resume) : path_(std::move(path)) {
  if (resume && fs::exists(path_)) load();
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  MLABENCH_CHECK(fd_ >= 0, "cannot open {} for writing. HINT: check that the output folder is writable",
                 path_.string());
}

SamplesFile::~SamplesFile() {
  if (fd_ >= 0) ::close(fd_);
}

void SamplesFile::append(const std::vector<json>& lines) {
  std::string buf;
  for (const json& j : lines) {
    buf += j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    buf += '\n';
  }
  size_t done = 0;
  while (done < buf.size()) {
    const ssize_t n = ::write(fd_, buf.data() + done, buf.size() - done);
    MLABENCH_CHECK(n > 0, "writing {} failed. HINT: the disk may be full", path_.string());
    done += static_cast<size_t>(n);
  }
  MLABENCH_CHECK(::fsync(fd_) == 0, "fsync of {} failed. HINT: the disk may be full", path_.string());
}

void SamplesFile::load() {
  std::ifstream in(path_, std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t end = all.rfind('\n');
  const size_t keep = end == std::string::npos ? 0 : end + 1;
  if (keep < all.size()) fs::resize_file(path_, keep);  // the line a kill cut short
  size_t at = 0;
  int64_t line = 0;
  while (at < keep) {
    const size_t nl = all.find('\n', at);
    ++line;
    try {
      loaded_.push_back(parse_json_bounded(std::string_view(all).substr(at, nl - at), path_.string()));
    } catch (const nlohmann::json::exception& e) {
      MLABENCH_FAIL("{}:{}: not a samples line ({}). HINT: the file was edited or belongs to another tool; move "
                    "it away to recompute those documents",
                    path_.string(), line, e.what());
    }
    at = nl + 1;
  }
}

json run_identity(const EvalOptions& o, const std::vector<std::string>& names, const Backend& backend) {
  json overrides = json::object();
  for (const auto& [task, patch] : o.task_overrides) overrides[task] = patch;
  json id = {{"tasks", names},
             {"task_overrides", overrides},
             {"limit", o.limit ? json(*o.limit) : json(nullptr)},
             {"num_fewshot", o.num_fewshot ? json(*o.num_fewshot) : json(nullptr)},
             {"gen_kwargs", gen_overrides_json(o.gen)},
             {"backend", backend.describe()},
             {"config", o.config}};
  if (o.shard.count > 1) id["shard"] = shard_name(o.shard);  // an unsharded run's identity is unchanged
  return id;
}

void make_run_folder(const fs::path& dir) {
  MLABENCH_CHECK(!fs::exists(dir) || fs::is_directory(dir),
                 "--output {} exists and is not a folder. HINT: choose a folder path for the run", dir.string());
  std::error_code made;
  fs::create_directories(dir, made);
  MLABENCH_CHECK(!made, "cannot create the run folder {}: {}. HINT: check that its parent is writable",
                 dir.string(), made.message());
}

void check_or_write_run_json(const EvalOptions& o, const json& identity) {
  const fs::path run_json = o.output_dir / "run.json";
  if (fs::exists(run_json)) {
    MLABENCH_CHECK(o.resume, "{} already holds a run. HINT: pass --resume to continue it, or choose another "
                   "--output folder",
                   o.output_dir.string());
    std::ifstream in(run_json);
    json old;
    try {
      old = parse_json_bounded(std::string(std::istreambuf_iterator<char>(in), {}), run_json.string());
    } catch (const nlohmann::json::exception& e) {
      MLABENCH_FAIL("{} is not JSON ({}). HINT: remove the folder to start afresh", run_json.string(), e.what());
    }
    std::vector<std::string> differ;
    // Compared as unordered JSON: run.json is read back with its keys sorted, while the identity keeps the order
    // its writers chose.
    for (const auto& [k, v] : identity.items())
      if (!old.contains("identity") || !old["identity"].contains(k) ||
          nlohmann::json(old["identity"][k]) != nlohmann::json(v))
        differ.push_back(k);
    MLABENCH_CHECK(differ.empty(), "--resume: the run in {} was started with different {}. HINT: resume with the "
                   "same options, or choose another --output folder",
                   o.output_dir.string(), fmt::join(differ, ", "));
  } else {
    json run = {{"tool", "mlabench run"}, {"identity", identity}};
    if (!o.command_line.empty()) run["command_line"] = o.command_line;  // what mlabench merge runs again
    write_file_atomically(run_json, run.dump(2) + "\n");
  }
}

}  // namespace mlabench::harness
