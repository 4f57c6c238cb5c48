// Sandbox runs (sandbox.h), the parent's half: everything the cloned child needs is prepared here (the
// child may not allocate, sandbox_child.h), then one clone() creates the namespaces and their init. The parent
// writes the child's id maps, feeds stdin and fd 3, collects stdout, stderr and fd 4 under the output cap, and
// at the wall-clock limit kills the init, which takes every process of the namespace with it.
// docs/sandbox.md states what is guaranteed.
#include "sandbox/sandbox.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <set>
#include <sstream>
#include <string_view>

#include "core/check.h"
#include "sandbox/sandbox_child.h"
#include "sandbox/seccomp_filter.h"

extern char** environ;

namespace mlabench::sandbox {
namespace {

namespace fs = std::filesystem;
using detail::ChildPlan;
using detail::ChildReport;
using detail::SetupOp;
using Clock = std::chrono::steady_clock;

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

constexpr const char* kWorkDir = "/tmp/work";
// /tmp, /var/tmp, /run, /dev/shm and $HOME get one each: writable, thrown away with the sandbox, and small.
constexpr const char* kScratchOptions = "size=8m,mode=1777";
// Identity of the program when the harness runs as root: the overflow ids (nobody/nogroup). Mapped to uid 0 it
// would read every root-only file and escape RLIMIT_NPROC, which the kernel does not apply to uid 0.
constexpr uint32_t kNobody = 65534;
constexpr int kNamespaces =
    CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP;
constexpr size_t kMaxPrefill = 1 << 20;           // pipe buffer grown to hold stdin or fd 3 up to this size
constexpr double kDrainSeconds = 2.0;             // after the init's death, for pipe copies other clones still hold
constexpr size_t kMaxStatusBytes = 4096;          // a handful of ChildReport records
constexpr size_t kProgramStackBytes = 256 << 10;  // the program's few calls before execve (sanitizers included)

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    reset(std::exchange(o.fd_, -1));
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

struct Pipe {
  Fd read, write;
};

bool make_pipe(Pipe& p) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return false;
  p.read.reset(fds[0]);
  p.write.reset(fds[1]);
  return true;
}

Result setup_error(std::string message) {
  Result r;
  r.status = Status::SETUP_ERROR;
  r.error = std::move(message);
  return r;
}

std::string read_small_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool is_within(const fs::path& p, const fs::path& dir) {
  return std::mismatch(dir.begin(), dir.end(), p.begin(), p.end()).first == dir.end();
}

// /proc/self/mountinfo escapes spaces, tabs, newlines and backslashes in paths as octal.
std::string unescape_mount_path(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      out.push_back(static_cast<char>(std::stoi(s.substr(i + 1, 3), nullptr, 8)));
      i += 3;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

// What the plan of every run reads from the host, gathered once.
struct HostFacts {
  uintptr_t arg_start = 0, arg_end = 0, env_start = 0, env_end = 0;
  std::deque<std::string> remount_paths;  // READONLY_ROOT without mount_setattr
  std::vector<detail::RemountEntry> remounts;
  std::vector<std::string> scratch_dirs;  // /var/tmp and /run where they exist (/tmp and /dev/shm always)
  std::vector<std::string> dev_nodes;     // character devices bound into the private /dev
  std::string home;                       // canonical $HOME to cover with a tmpfs; empty: none
};

HostFacts gather_host_facts() {
  HostFacts h;
  // Fields 48-51 of /proc/self/stat: where the kernel placed argv and environ (Linux 3.5).
  const std::string stat_line = read_small_file("/proc/self/stat");
  if (const size_t close = stat_line.rfind(')'); close != std::string::npos) {
    std::istringstream rest(stat_line.substr(close + 1));
    std::vector<std::string> f{std::istream_iterator<std::string>(rest), std::istream_iterator<std::string>()};
    if (f.size() >= 49) {
      h.arg_start = std::stoull(f[45]);
      h.arg_end = std::stoull(f[46]);
      h.env_start = std::stoull(f[47]);
      h.env_end = std::stoull(f[48]);
    }
  }
  std::istringstream mountinfo(read_small_file("/proc/self/mountinfo"));
  for (std::string line; std::getline(mountinfo, line);) {
    std::istringstream ls(line);
    std::string id, parent, dev, root, point, options;
    if (!(ls >> id >> parent >> dev >> root >> point >> options)) continue;
    unsigned long flags = 0;
    std::istringstream os(options);
    for (std::string o; std::getline(os, o, ',');) {
      if (o == "nosuid") flags |= MS_NOSUID;
      if (o == "nodev") flags |= MS_NODEV;
      if (o == "noexec") flags |= MS_NOEXEC;
      if (o == "noatime") flags |= MS_NOATIME;
      if (o == "nodiratime") flags |= MS_NODIRATIME;
      if (o == "relatime") flags |= MS_RELATIME;
    }
    h.remount_paths.push_back(unescape_mount_path(point));
    h.remounts.push_back({h.remount_paths.back().c_str(), flags});
  }
  std::error_code ec;
  for (const char* d : {"/var/tmp", "/run"}) {
    const fs::path c = fs::canonical(d, ec);
    if (!ec && fs::is_directory(c, ec) && !is_within(c, "/tmp") &&
        std::find(h.scratch_dirs.begin(), h.scratch_dirs.end(), c.string()) == h.scratch_dirs.end())
      h.scratch_dirs.push_back(c.string());
  }
  for (const char* node : {"null", "zero", "full", "random", "urandom"}) {
    struct stat st {};
    if (stat(fmt::format("/dev/{}", node).c_str(), &st) == 0 && S_ISCHR(st.st_mode)) h.dev_nodes.emplace_back(node);
  }
  if (const char* home = std::getenv("HOME"); home && home[0] == '/') {
    const fs::path c = fs::canonical(home, ec);
    bool covered = ec || !fs::is_directory(c, ec) || c == "/" || is_within("/tmp", c);
    for (const char* d : {"/tmp", "/dev", "/proc"}) covered = covered || is_within(c, d);
    for (const auto& d : h.scratch_dirs) covered = covered || is_within(c, d) || is_within(d, c);
    if (!covered) h.home = c.string();
  }
  return h;
}

const HostFacts& host_facts() {
  static const HostFacts facts = gather_host_facts();
  return facts;
}

// Everything the child reads, kept alive (and at fixed addresses) until the child has exec'd or died.
struct Plan {
  std::deque<std::string> strings;
  std::vector<SetupOp> ops;
  std::vector<const char*> pinned;
  std::vector<detail::ChildLimit> limits;
  std::vector<char*> argv, envp;
  std::unique_ptr<char[]> program_stack{new char[kProgramStackBytes]};

  const char* keep(std::string s) {
    strings.push_back(std::move(s));
    return strings.back().c_str();
  }
  // A host directory the init opens while it still has the harness's uid; returns how ops name it afterwards.
  std::string pin(std::string path) {
    pinned.push_back(keep(std::move(path)));
    return fmt::format("/proc/self/fd/{}", detail::N_CHILD_FDS + pinned.size() - 1);
  }
  void op(SetupOp::Kind kind, std::string path, std::string source = {}, std::string data = {}, unsigned mode = 0) {
    SetupOp o{kind};
    o.path = path.empty() ? nullptr : keep(std::move(path));
    o.source = source.empty() ? nullptr : keep(std::move(source));
    o.size = data.size();
    o.data = data.empty() ? nullptr : keep(std::move(data));
    o.mode = mode;
    ops.push_back(o);
  }
};

// The interpreter's installation when it lies under $HOME (pyenv, a virtualenv): bound back into the tmpfs that
// covers $HOME, read-only. Both the path as given (a virtualenv's bin/python) and its target count.
std::vector<fs::path> keep_under_home(const fs::path& home, const std::string& argv0, bool& cover_home) {
  std::vector<fs::path> keep;
  std::error_code ec;
  for (const fs::path& p : {fs::path(argv0), fs::canonical(argv0, ec)}) {
    if (p.empty()) continue;
    const fs::path prefix = p.parent_path().parent_path();
    if (!is_within(prefix, home)) continue;
    if (prefix == home) cover_home = false;
    if (std::none_of(keep.begin(), keep.end(), [&](const fs::path& k) { return is_within(prefix, k); })) {
      std::erase_if(keep, [&](const fs::path& k) { return is_within(k, prefix); });
      keep.push_back(prefix);
    }
  }
  return keep;
}

std::string check_request(const Request& rq) {
  const std::string hint = "HINT: fix the Request (sandbox/sandbox.h)";
  if (rq.argv.empty() || rq.argv[0].empty() || rq.argv[0][0] != '/')
    return fmt::format("sandbox: argv[0] must be an absolute path, got '{}'. {}", rq.argv.empty() ? "" : rq.argv[0],
                       hint);
  for (const auto& a : rq.argv)
    if (a.find('\0') != std::string::npos) return fmt::format("sandbox: an argument holds a NUL byte. {}", hint);
  for (const auto& e : rq.env)
    if (e.find('=') == std::string::npos || e.front() == '=' || e.find('\0') != std::string::npos)
      return fmt::format("sandbox: env entry '{}' is not KEY=VALUE. {}", e, hint);
  for (const auto& [name, contents] : rq.files) {
    const fs::path p(name);
    bool ok = !name.empty() && p.is_relative() && name.find('\0') == std::string::npos && name.back() != '/';
    for (const auto& part : p) ok = ok && part != ".." && part != "." && !part.empty();
    if (!ok) return fmt::format("sandbox: file name '{}' must be relative, without '.' or '..'. {}", name, hint);
  }
  const Limits& l = rq.limits;
  if (!(l.wall_seconds > 0) || !(l.cpu_seconds > 0) || l.address_space_bytes <= 0 || l.file_size_bytes <= 0 ||
      l.open_files < detail::N_CHILD_FDS || l.processes <= 0 || l.tmpfs_bytes <= 0 || l.output_bytes <= 0)
    return fmt::format("sandbox: every limit must be positive (open_files at least {}). {}", int{detail::N_CHILD_FDS},
                       hint);
  return {};
}

void build_plan(const Request& rq, const HostFacts& host, Plan& plan) {
  plan.op(SetupOp::PRIVATE_ROOT, {});
  plan.op(SetupOp::READONLY_ROOT, {});
  plan.op(SetupOp::MOUNT_TMPFS, "/tmp", {}, kScratchOptions);
  plan.op(SetupOp::MKDIR, kWorkDir, {}, {}, 0700);
  plan.op(SetupOp::MOUNT_TMPFS, kWorkDir, {}, fmt::format("size={},mode=0700", rq.limits.tmpfs_bytes));

  // A private /dev: the null, zero, full and random devices and nothing else (no GPU, no disks, no terminals).
  // Built aside under /tmp while the host's nodes are still reachable, then moved over /dev.
  const std::string dev = "/tmp/.dev";
  plan.op(SetupOp::MKDIR, dev, {}, {}, 0755);
  plan.op(SetupOp::MOUNT_TMPFS, dev, {}, "size=64k,mode=0755");
  for (const auto& node : host.dev_nodes) {
    plan.op(SetupOp::CREATE_FILE, dev + "/" + node, {}, {}, 0644);
    plan.op(SetupOp::MOUNT_BIND, dev + "/" + node, "/dev/" + node);
  }
  plan.op(SetupOp::SYMLINK, dev + "/fd", "/proc/self/fd");
  plan.op(SetupOp::SYMLINK, dev + "/stdin", "/proc/self/fd/0");
  plan.op(SetupOp::SYMLINK, dev + "/stdout", "/proc/self/fd/1");
  plan.op(SetupOp::SYMLINK, dev + "/stderr", "/proc/self/fd/2");
  plan.op(SetupOp::MKDIR, dev + "/shm", {}, {}, 0755);
  plan.op(SetupOp::MOUNT_TMPFS, dev + "/shm", {}, kScratchOptions);
  plan.op(SetupOp::MOUNT_MOVE, "/dev", dev);
  plan.op(SetupOp::RMDIR, dev);

  for (const auto& d : host.scratch_dirs) plan.op(SetupOp::MOUNT_TMPFS, d, {}, kScratchOptions);

  bool cover_home = !host.home.empty();
  const std::vector<fs::path> keep =
      cover_home ? keep_under_home(host.home, rq.argv[0], cover_home) : std::vector<fs::path>{};
  if (cover_home) {
    const fs::path staging = "/tmp/.home";
    plan.op(SetupOp::MKDIR, staging, {}, {}, 0755);
    plan.op(SetupOp::MOUNT_TMPFS, staging, {}, "size=8m,mode=0755");
    for (const fs::path& k : keep) {
      fs::path target = staging;
      for (const auto& part : fs::relative(k, host.home)) {
        target /= part;
        plan.op(SetupOp::MKDIR, target, {}, {}, 0755);
      }
      plan.op(SetupOp::MOUNT_BIND, target, plan.pin(k.string()));
    }
    // Through a descriptor as well: $HOME's parents may be closed to the sandbox's user (/root/sub).
    plan.op(SetupOp::MOUNT_MOVE, plan.pin(host.home), staging);
    plan.op(SetupOp::RMDIR, staging);
  }
  plan.op(SetupOp::MOUNT_PROC, "/proc");
  plan.op(SetupOp::SET_HOSTNAME, {}, {}, "sandbox");

  std::set<fs::path> dirs;
  for (const auto& [name, contents] : rq.files) {
    fs::path dir = kWorkDir;
    const fs::path rel = fs::path(name).parent_path();
    for (const auto& part : rel) {
      dir /= part;
      if (dirs.insert(dir).second) plan.op(SetupOp::MKDIR, dir, {}, {}, 0755);
    }
    SetupOp o{SetupOp::CREATE_FILE};
    o.path = plan.keep((fs::path(kWorkDir) / name).string());
    o.data = contents.data();  // the request outlives the run: no copy of possibly large contents
    o.size = contents.size();
    o.mode = 0644;
    plan.ops.push_back(o);
  }
  plan.op(SetupOp::CHDIR, kWorkDir);

  const Limits& l = rq.limits;
  const auto lim = [](int64_t soft, int64_t hard) {
    return rlimit{static_cast<rlim_t>(soft), static_cast<rlim_t>(hard)};
  };
  const auto cpu = static_cast<int64_t>(std::ceil(l.cpu_seconds));
  // SIGXCPU at the soft limit; SIGKILL a second later for a program that ignores it.
  plan.limits = {{RLIMIT_CORE, lim(0, 0)},
                 {RLIMIT_CPU, lim(cpu, cpu + 1)},
                 {RLIMIT_AS, lim(l.address_space_bytes, l.address_space_bytes)},
                 {RLIMIT_FSIZE, lim(l.file_size_bytes, l.file_size_bytes)},
                 {RLIMIT_NOFILE, lim(l.open_files, l.open_files)},
                 {RLIMIT_NPROC, lim(l.processes, l.processes)}};

  for (const auto& a : rq.argv) plan.argv.push_back(const_cast<char*>(a.c_str()));
  plan.argv.push_back(nullptr);
  std::vector<std::string> env = {
      "PATH=/usr/local/bin:/usr/bin:/bin", fmt::format("HOME={}", kWorkDir), "LANG=C.UTF-8",
      fmt::format("TMPDIR={}", kWorkDir),  "PYTHONDONTWRITEBYTECODE=1",      "OMP_NUM_THREADS=1"};
  for (const auto& e : rq.env) {
    const std::string key = e.substr(0, e.find('=') + 1);
    std::erase_if(env, [&](const std::string& x) { return x.starts_with(key); });
    env.push_back(e);
  }
  for (auto& e : env) plan.envp.push_back(const_cast<char*>(plan.keep(std::move(e))));
  plan.envp.push_back(nullptr);
}

std::string describe_op(const SetupOp& o) {
  const auto s = [](const char* p) { return p ? p : ""; };
  switch (o.kind) {
    case SetupOp::PRIVATE_ROOT:
      return "make the mount tree private";
    case SetupOp::READONLY_ROOT:
      return "remount the root read-only";
    case SetupOp::MKDIR:
      return fmt::format("create directory {}", s(o.path));
    case SetupOp::RMDIR:
      return fmt::format("remove directory {}", s(o.path));
    case SetupOp::MOUNT_TMPFS:
      return fmt::format("mount a tmpfs ({}) on {}", s(o.data), s(o.path));
    case SetupOp::MOUNT_BIND:
      return fmt::format("bind {} on {}", s(o.source), s(o.path));
    case SetupOp::MOUNT_MOVE:
      return fmt::format("move the mount {} to {}", s(o.source), s(o.path));
    case SetupOp::MOUNT_PROC:
      return fmt::format("mount a new proc on {}", s(o.path));
    case SetupOp::CREATE_FILE:
      return fmt::format("write {} ({} bytes)", s(o.path), o.size);
    case SetupOp::SYMLINK:
      return fmt::format("create symlink {}", s(o.path));
    case SetupOp::CHDIR:
      return fmt::format("enter {}", s(o.path));
    case SetupOp::SET_HOSTNAME:
      return "set the host name";
  }
  return "set up";
}

std::string describe_failure(const ChildReport& r, const Plan& plan, const Request& rq) {
  const std::string err = fmt::format("{} (errno {})", std::strerror(r.err), r.err);
  std::string what, hint = "HINT: see docs/sandbox.md (\"Requirements\")";
  switch (r.step) {
    case detail::STEP_SESSION:
      what = "start a new session";
      break;
    case detail::STEP_PIN_PATHS:
      what = fmt::format("open {}", r.op >= 0 && static_cast<size_t>(r.op) < plan.pinned.size()
                                        ? plan.pinned[static_cast<size_t>(r.op)]
                                        : "a kept path");
      break;
    case detail::STEP_IDENTITY:
      what = "switch to uid/gid 65534 (nobody) inside the user namespace";
      break;
    case detail::STEP_PARENT_DEATH_SIGNAL:
      what = "arm the parent-death signal";
      break;
    case detail::STEP_SETUP_OP:
      what = r.op >= 0 && static_cast<size_t>(r.op) < plan.ops.size() ? describe_op(plan.ops[static_cast<size_t>(r.op)])
                                                                      : "build the file system";
      if (r.err == EPERM || r.err == EACCES)
        hint =
            "HINT: mounts inside a user namespace are refused here (a container's seccomp or AppArmor profile, "
            "or SELinux); run the harness on the host or in a container started with "
            "--security-opt seccomp=unconfined --security-opt apparmor=unconfined";
      if (r.err == ENOSPC) hint = "HINT: the request's files do not fit in limits.tmpfs_bytes";
      break;
    case detail::STEP_FORK_PROGRAM:
      what = "fork the program";
      break;
    case detail::STEP_REAP:
      what = "wait for the program";
      break;
    case detail::STEP_RLIMITS:
      what = "set the resource limits";
      break;
    case detail::STEP_CAPABILITIES:
      what = "drop capabilities";
      break;
    case detail::STEP_NO_NEW_PRIVS:
      what = "set no_new_privs";
      break;
    case detail::STEP_SECCOMP:
      what = "install the seccomp filter";
      hint = "HINT: the kernel needs CONFIG_SECCOMP_FILTER";
      break;
    case detail::STEP_EXECVE:
      what = fmt::format("execute {}", rq.argv[0]);
      hint = r.err == EACCES || r.err == ENOENT
                 ? "HINT: argv[0] must exist and be executable by the sandbox's user (nobody, when the harness "
                   "runs as root) outside the hidden directories (/tmp, /run, $HOME apart from the "
                   "interpreter's prefix); install python3 system-wide or set MLABENCH_PYTHON"
                 : "HINT: argv[0] must be an executable for this machine";
      break;
    default:
      what = "set up";
      break;
  }
  return fmt::format("sandbox: could not {}: {}. {}", what, err, hint);
}

std::string clone_failure(int err) {
  std::string hint;
  if (err == EPERM || err == EACCES)
    hint =
        "HINT: user namespaces are disabled or blocked: sysctl -w kernel.unprivileged_userns_clone=1 (Debian), "
        "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0 (Ubuntu >= 23.10); in Docker or Podman start "
        "the container with --security-opt seccomp=unconfined --security-opt apparmor=unconfined (or "
        "--privileged)";
  else if (err == ENOSPC || err == EUSERS)
    hint =
        "HINT: a namespace limit is reached: raise user.max_user_namespaces, user.max_net_namespaces and the "
        "other user.max_*_namespaces sysctls";
  else if (err == EINVAL)
    hint =
        "HINT: the kernel lacks a namespace type or pidfds (Linux >= 5.3 with CONFIG_USER_NS, CONFIG_PID_NS, "
        "CONFIG_NET_NS, CONFIG_CGROUPS)";
  else
    hint = "HINT: the machine is out of processes or memory; lower the number of sandbox workers";
  return fmt::format(
      "sandbox: clone() into new user, mount, PID, network, IPC, UTS and cgroup namespaces failed: "
      "{} (errno {}). {}",
      std::strerror(err), err, hint);
}

int write_proc_file(pid_t pid, const char* name, const std::string& text) {
  const Fd fd(::open(fmt::format("/proc/{}/{}", pid, name).c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return errno;
  if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) return errno;
  return 0;
}

// Maps one uid and one gid into the child's user namespace (the child waits for its go byte meanwhile). Root
// maps nobody; anyone else maps itself, which needs no privilege once setgroups is denied.
std::optional<detail::Identity> write_id_maps(pid_t pid, std::string& error) {
  const uid_t uid = geteuid();
  const gid_t gid = getegid();
  if (uid == 0) {
    const std::string map = fmt::format("{} {} 1\n", kNobody, kNobody);
    if (write_proc_file(pid, "uid_map", map) == 0 && write_proc_file(pid, "gid_map", map) == 0)
      return detail::IDENTITY_NOBODY;
  }
  int err = write_proc_file(pid, "setgroups", "deny");
  if (err == 0) err = write_proc_file(pid, "uid_map", fmt::format("{} {} 1\n", uid, uid));
  if (err == 0) err = write_proc_file(pid, "gid_map", fmt::format("{} {} 1\n", gid, gid));
  if (err == 0) return detail::IDENTITY_AS_MAPPED;
  error = fmt::format(
      "sandbox: writing the id maps of the sandbox's user namespace failed: {} (errno {}). HINT: "
      "the harness needs a uid and gid that the kernel can map (a user in /etc/passwd; in a "
      "rootless container, uid 65534 mapped)",
      std::strerror(err), err);
  return std::nullopt;
}

// Writes as much of `left` as the pipe takes now, without blocking; drops what was written from `left`.
// Returns false when the reader is gone.
bool feed(int fd, std::string_view& left) {
  while (!left.empty()) {
    const ssize_t n = ::write(fd, left.data(), left.size());
    if (n > 0) {
      left.remove_prefix(static_cast<size_t>(n));
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      return n < 0 && errno == EAGAIN;
    }
  }
  return true;
}

// Fills a fresh pipe before the child exists (no SIGPIPE possible yet), growing its buffer for larger inputs;
// closes the write end when everything fits, so the child sees the data and then EOF.
void prefill(Pipe& p, std::string_view& left) {
  if (left.size() > 65536) fcntl(p.write.get(), F_SETPIPE_SZ, static_cast<int>(std::min(left.size(), kMaxPrefill)));
  fcntl(p.write.get(), F_SETFL, O_NONBLOCK);
  feed(p.write.get(), left);
  if (left.empty()) p.write.reset();
}

// Writes into a pipe whose reader may have gone raise SIGPIPE in this thread: blocked while the run feeds
// stdin or fd 3 from its loop, and a SIGPIPE it raised is consumed before the mask is restored.
class SigpipeGuard {
 public:
  SigpipeGuard() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set_, &old_);
    sigset_t pending;
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
  }
  ~SigpipeGuard() {
    if (!was_pending_) {
      const timespec zero{0, 0};
      while (sigtimedwait(&set_, nullptr, &zero) == SIGPIPE) {
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  SigpipeGuard(const SigpipeGuard&) = delete;
  SigpipeGuard& operator=(const SigpipeGuard&) = delete;

 private:
  sigset_t set_{}, old_{};
  bool was_pending_ = false;
};

// The cloned init: killed and reaped on every path out of run().
class Init {
 public:
  Init(pid_t pid, int pidfd) : pid_(pid), pidfd_(pidfd) {}
  Init(const Init&) = delete;
  Init& operator=(const Init&) = delete;
  ~Init() {
    if (!reaped_) {
      kill_tree();
      waitpid(pid_, nullptr, __WALL);
    }
  }
  pid_t pid() const { return pid_; }
  int pidfd() const { return pidfd_.get(); }
  // The init's death kills every process of its PID namespace; the process group is the init's session as a
  // second net for the moment before the namespace exists.
  void kill_tree() const {
    ::kill(-pid_, SIGKILL);
    syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGKILL, nullptr, 0);
  }
  int reap(rusage& ru) {
    int status = 0;
    while (wait4(pid_, &status, __WALL, &ru) < 0 && errno == EINTR) {
    }
    reaped_ = true;
    return status;
  }

 private:
  pid_t pid_;
  Fd pidfd_;
  bool reaped_ = false;
};

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

const char* status_name(Status s) {
  switch (s) {
    case Status::EXITED:
      return "exited";
    case Status::SIGNALED:
      return "signaled";
    case Status::TIMEOUT:
      return "timeout";
    case Status::OUTPUT_LIMIT:
      return "output_limit";
    case Status::SETUP_ERROR:
      return "setup_error";
  }
  return "unknown";
}

Result run(const Request& rq) {
  const auto t0 = Clock::now();
  if (std::string problem = check_request(rq); !problem.empty()) return setup_error(std::move(problem));
  const detail::SeccompProgram& seccomp = detail::seccomp_program();
  if (!seccomp.error.empty()) return setup_error(seccomp.error);
  const HostFacts& host = host_facts();
  Plan plan;
  build_plan(rq, host, plan);

  Pipe in, out, err, control, report, status, go;
  if (!make_pipe(in) || !make_pipe(out) || !make_pipe(err) || !make_pipe(control) || !make_pipe(status) ||
      !make_pipe(go) || (rq.capture_report && !make_pipe(report)))
    return setup_error(
        fmt::format("sandbox: pipe2 failed: {}. HINT: raise the open-files limit (ulimit -n) or "
                    "run fewer sandboxes at once",
                    std::strerror(errno)));
  std::string_view in_left = rq.stdin_data, control_left = rq.control;
  prefill(in, in_left);
  prefill(control, control_left);

  ChildPlan cp{};
  const int child_fds[detail::N_CHILD_FDS] = {in.read.get(),      out.write.get(),    err.write.get(),
                                              control.read.get(), report.write.get(), status.write.get(),
                                              go.read.get()};
  std::copy(std::begin(child_fds), std::end(child_fds), cp.fds);
  cp.arg_start = host.arg_start;
  cp.arg_end = host.arg_end;
  cp.env_start = host.env_start;
  cp.env_end = host.env_end;
  cp.nobody_uid = kNobody;
  cp.nobody_gid = kNobody;
  cp.pinned = plan.pinned.data();
  cp.n_pinned = plan.pinned.size();
  cp.ops = plan.ops.data();
  cp.n_ops = plan.ops.size();
  cp.remounts = host.remounts.data();
  cp.n_remounts = host.remounts.size();
  cp.limits = plan.limits.data();
  cp.n_limits = plan.limits.size();
  cp.seccomp = &seccomp.program;
  cp.program_stack_top = reinterpret_cast<char*>(
      (reinterpret_cast<uintptr_t>(plan.program_stack.get()) + kProgramStackBytes) & ~uintptr_t{15});
  cp.path = rq.argv[0].c_str();
  cp.argv = plan.argv.data();
  cp.envp = plan.envp.data();

  // Exit signal 0: no SIGCHLD to whatever handler the harness has, and no wait(-1) elsewhere reaps this child.
  int pidfd = -1;
  const long pid = syscall(SYS_clone, kNamespaces | CLONE_PIDFD, nullptr, &pidfd, nullptr, nullptr);
  if (pid == 0) detail::child_main(cp);
  if (pid < 0) return setup_error(clone_failure(errno));
  Init init(static_cast<pid_t>(pid), pidfd);
  for (Fd* child_end : {&in.read, &out.write, &err.write, &control.read, &report.write, &status.write, &go.read})
    child_end->reset();

  std::string map_error;
  const auto identity = write_id_maps(init.pid(), map_error);
  if (!identity) return setup_error(map_error);
  const char go_byte = *identity;
  if (::write(go.write.get(), &go_byte, 1) != 1)
    return setup_error(fmt::format("sandbox: could not start the sandbox's init: {}. HINT: see docs/sandbox.md",
                                   std::strerror(errno)));

  Result result;
  std::optional<SigpipeGuard> sigpipe;
  if (in.write || control.write) sigpipe.emplace();
  std::string status_bytes;
  struct Source {
    Fd* fd;
    std::string* data;
    size_t cap;
    bool is_output;
  };
  const auto cap = static_cast<size_t>(rq.limits.output_bytes);
  Source sources[] = {{&out.read, &result.stdout_data, cap, true},
                      {&err.read, &result.stderr_data, cap, true},
                      {&report.read, &result.report, cap, true},
                      {&status.read, &status_bytes, kMaxStatusBytes, false}};
  const auto deadline =
      t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(rq.limits.wall_seconds));
  std::optional<Status> killed_for;
  std::optional<Clock::time_point> drain_until;
  const auto kill_for = [&](Status why) {
    if (!killed_for) {
      killed_for = why;
      init.kill_tree();
    }
  };
  // On the stack: every page the parent first writes while the init (a copy of this process) lives costs a
  // copy-on-write fault, so no fresh 64 KiB buffer per run.
  char buf[16384];
  for (;;) {
    const auto now = Clock::now();
    if (!drain_until && now >= deadline) kill_for(Status::TIMEOUT);
    if (drain_until && now >= *drain_until) break;
    pollfd fds[std::size(sources) + 3];
    Source* polled[std::size(sources)];
    size_t n_fds = 0;
    for (auto& s : sources)
      if (*s.fd) {
        polled[n_fds] = &s;
        fds[n_fds++] = {s.fd->get(), POLLIN, 0};
      }
    const size_t n_sources = n_fds;
    if (drain_until && n_sources == 0) break;
    if (!drain_until) {
      if (in.write) fds[n_fds++] = {in.write.get(), POLLOUT, 0};
      if (control.write) fds[n_fds++] = {control.write.get(), POLLOUT, 0};
      fds[n_fds++] = {init.pidfd(), POLLIN, 0};
    }
    const auto until = drain_until ? *drain_until : killed_for ? now + std::chrono::seconds(1) : deadline;
    const int timeout_ms = static_cast<int>(
        std::clamp<int64_t>(std::chrono::ceil<std::chrono::milliseconds>(until - now).count(), 0, 60000));
    if (poll(fds, n_fds, timeout_ms) < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      const int err = errno;
      init.kill_tree();
      return setup_error(
          fmt::format("sandbox: poll failed: {}. HINT: the harness is out of memory; the run was "
                      "killed",
                      std::strerror(err)));
    }
    for (size_t i = 0; i < n_sources; ++i) {
      if (!fds[i].revents) continue;
      Source& s = *polled[i];
      const ssize_t n = ::read(s.fd->get(), buf, sizeof buf);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n <= 0) {
        s.fd->reset();
        continue;
      }
      const size_t room = s.cap - std::min(s.cap, s.data->size());
      s.data->append(buf, std::min(room, static_cast<size_t>(n)));
      if (static_cast<size_t>(n) > room) {
        s.fd->reset();
        if (s.is_output) kill_for(Status::OUTPUT_LIMIT);
      }
    }
    if (drain_until) continue;
    for (size_t i = n_sources; i < n_fds; ++i) {
      if (!fds[i].revents) continue;
      if (fds[i].fd == init.pidfd()) {
        drain_until =
            Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(kDrainSeconds));
      } else if (fds[i].fd == in.write.get()) {
        if (!feed(in.write.get(), in_left) || in_left.empty()) in.write.reset();
      } else if (fds[i].fd == control.write.get()) {
        if (!feed(control.write.get(), control_left) || control_left.empty()) control.write.reset();
      }
    }
    if (drain_until) {
      in.write.reset();
      control.write.reset();
    }
  }

  rusage ru{};
  const int init_status = init.reap(ru);
  result.wall_seconds = seconds(Clock::now() - t0);
  result.cpu_seconds = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                       static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;

  std::optional<ChildReport> failure, ended;
  for (size_t off = 0; off + sizeof(ChildReport) <= status_bytes.size(); off += sizeof(ChildReport)) {
    ChildReport r;
    std::memcpy(&r, status_bytes.data() + off, sizeof r);
    if (r.tag == 'E' && !failure) failure = r;
    if (r.tag == 'S') ended = r;
  }
  if (failure) {
    result.status = Status::SETUP_ERROR;
    result.error = describe_failure(*failure, plan, rq);
  } else if (killed_for) {
    result.status = *killed_for;
  } else if (ended && WIFEXITED(ended->status)) {
    result.status = Status::EXITED;
    result.exit_code = WEXITSTATUS(ended->status);
  } else if (ended && WIFSIGNALED(ended->status)) {
    result.status = Status::SIGNALED;
    result.signal = WTERMSIG(ended->status);
  } else if (WIFSIGNALED(init_status)) {
    // Killed from outside the sandbox (the OOM killer, an administrator): the whole tree went with it.
    result.status = Status::SIGNALED;
    result.signal = WTERMSIG(init_status);
  } else {
    result.status = Status::SETUP_ERROR;
    result.error = fmt::format(
        "sandbox: the sandbox's init exited with status {} before the program started. "
        "HINT: the process ran out of descriptors or its parent vanished; see "
        "docs/sandbox.md",
        WIFEXITED(init_status) ? WEXITSTATUS(init_status) : -1);
  }
  return result;
}

const Capabilities& probe() {
  static const Capabilities caps = [] {
    Capabilities c;
    const detail::SeccompProgram& seccomp = detail::seccomp_program();
    c.seccomp = seccomp.error.empty() && prctl(PR_GET_SECCOMP, 0, 0, 0, 0) >= 0;
    if (!seccomp.error.empty())
      c.detail += seccomp.error + "\n";
    else if (!c.seccomp)
      c.detail += "sandbox: the kernel has no seccomp. HINT: a kernel with CONFIG_SECCOMP_FILTER\n";
    Request rq;
    rq.argv = {fs::exists("/bin/true") ? "/bin/true" : "/usr/bin/true"};
    rq.limits.wall_seconds = 10;
    const Result r = run(rq);
    c.user_namespaces = r.status != Status::SETUP_ERROR;
    if (!r.ok())
      c.detail +=
          (r.error.empty() ? fmt::format("sandbox: /bin/true ended as {}", status_name(r.status)) : r.error) + "\n";
    return c;
  }();
  return caps;
}

namespace {

std::string search_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path ? path : "/usr/local/bin:/usr/bin:/bin");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    if (dir.empty()) continue;
    const fs::path p = fs::path(dir) / name;
    if (::access(p.c_str(), X_OK) == 0 && fs::is_regular_file(p)) return fs::absolute(p).string();
  }
  return {};
}

// The interpreter's own sys.executable: resolves launchers such as pyenv shims (shell scripts that need the
// harness's environment) to the binary, and keeps a virtualenv's bin/python as it is.
std::string ask_executable(const std::string& python) {
  Pipe p;
  MLABENCH_CHECK(make_pipe(p), "find_python: pipe2 failed: {}. HINT: raise ulimit -n", std::strerror(errno));
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, p.write.get(), 1);
  std::vector<std::string> args = {python, "-c", "import sys; print(sys.executable)"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, python.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  p.write.reset();
  std::string out;
  if (rc == 0) {
    char buf[4096];
    ssize_t n;
    while ((n = ::read(p.read.get(), buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))
      if (n > 0) out.append(buf, static_cast<size_t>(n));
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) out.clear();
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  MLABENCH_CHECK(!out.empty() && out[0] == '/' && ::access(out.c_str(), X_OK) == 0,
                 "find_python: {} -c 'import sys; print(sys.executable)' did not name an executable (spawn: {}, "
                 "output '{}'). HINT: set MLABENCH_PYTHON to a working python3, or apt-get install python3",
                 python, rc == 0 ? "ok" : std::strerror(rc), out);
  return out;
}

}  // namespace

const std::string& find_python() {
  static const std::string python = [] {
    std::string candidate;
    const char* env = std::getenv("MLABENCH_PYTHON");
    if (env && *env) {
      candidate = std::string(env).find('/') == std::string::npos ? search_path(env) : fs::absolute(env).string();
      MLABENCH_CHECK(!candidate.empty() && ::access(candidate.c_str(), X_OK) == 0,
                     "find_python: MLABENCH_PYTHON={} is not an executable. HINT: point MLABENCH_PYTHON at a "
                     "python3 binary, or unset it to use python3 from PATH",
                     env);
    } else {
      candidate = search_path("python3");
      MLABENCH_CHECK(!candidate.empty(),
                     "find_python: no python3 on PATH and MLABENCH_PYTHON is not set. HINT: apt-get install "
                     "python3, or set MLABENCH_PYTHON=/path/to/python3");
    }
    return ask_executable(candidate);
  }();
  return python;
}

}  // namespace mlabench::sandbox
