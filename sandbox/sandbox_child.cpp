// The sandbox's init and the program's last steps before execve (sandbox_child.h). Everything here runs in a
// process cloned from a multi-threaded harness: plain system calls on prepared data only.
#include "sandbox/sandbox_child.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace mlabench::sandbox::detail {
namespace {

// mount_setattr (Linux 5.12) is called raw: glibc before 2.36 has no wrapper, and 2.36's <sys/mount.h>
// definitions clash with <linux/mount.h>.
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
struct KernelMountAttr {
  uint64_t attr_set, attr_clr, propagation, userns_fd;
};
constexpr uint64_t kMountAttrReadOnly = 0x1, kMountAttrNoSuid = 0x2;
constexpr unsigned kAtRecursive = 0x8000;

// The kernel's struct sigaction (rt_sigaction with an 8-byte mask): glibc's sigaction may be intercepted by
// sanitizers, which keep state the clone did not copy consistently.
struct KernelSigaction {
  void (*handler)(int);
  unsigned long flags;
  void (*restorer)();
  uint64_t mask;
};

void write_report(const ChildReport& r) {
  ssize_t n;
  do n = write(FD_STATUS, &r, sizeof r);
  while (n < 0 && errno == EINTR);
}

[[noreturn]] void fail(ChildStep step, int op, int err) {
  write_report(ChildReport{'E', step, op, err, 0});
  _exit(1);
}

// The harness's handlers would run harness code in the init, and a signal from inside the namespace reaches
// the init only if it has a handler: with every disposition at SIG_DFL the program cannot signal its init.
void reset_signals() {
  for (int sig = 1; sig < 65; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    KernelSigaction sa{};
    sa.handler = SIG_DFL;
    syscall(SYS_rt_sigaction, sig, &sa, nullptr, sizeof sa.mask);
  }
  const uint64_t none = 0;
  syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, nullptr, sizeof none);
}

// Moves the plan's descriptors to 0..6 (through numbers above 6, so no move overwrites a source) and closes
// every other one, including the pipes of sandboxes other threads were starting at the time of the clone.
bool place_fds(const ChildPlan& p) {
  int high[N_CHILD_FDS];
  for (int i = 0; i < N_CHILD_FDS; ++i) {
    high[i] = p.fds[i] < 0 ? -1 : fcntl(p.fds[i], F_DUPFD_CLOEXEC, N_CHILD_FDS);
    if (p.fds[i] >= 0 && high[i] < 0) return false;
  }
  for (int i = 0; i < N_CHILD_FDS; ++i) {
    if (high[i] < 0) {
      close(i);
    } else if (dup3(high[i], i, i >= FD_STATUS ? O_CLOEXEC : 0) < 0) {
      return false;
    }
  }
  if (syscall(SYS_close_range, N_CHILD_FDS, ~0U, 0) == 0) return true;
  if (errno != ENOSYS) return false;
  rlimit nofile{};
  if (getrlimit(RLIMIT_NOFILE, &nofile) != 0) return false;
  for (rlim_t fd = N_CHILD_FDS; fd < nofile.rlim_cur; ++fd) close(static_cast<int>(fd));
  return true;
}

// /proc/1/cmdline is readable by every process of the namespace and the init's copy of the stack still holds
// the harness's arguments and environment strings.
void erase_harness_strings(const ChildPlan& p) {
  if (p.arg_end > p.arg_start) memset(reinterpret_cast<void*>(p.arg_start), 0, p.arg_end - p.arg_start);
  if (p.env_end > p.env_start) memset(reinterpret_cast<void*>(p.env_start), 0, p.env_end - p.env_start);
}

bool make_read_only(const ChildPlan& p) {
  KernelMountAttr attr{kMountAttrReadOnly | kMountAttrNoSuid, 0, 0, 0};
  if (syscall(SYS_mount_setattr, AT_FDCWD, "/", kAtRecursive, &attr, sizeof attr) == 0) return true;
  if (errno != ENOSYS) return false;
  for (size_t i = 0; i < p.n_remounts; ++i) {
    const RemountEntry& e = p.remounts[i];
    if (mount(nullptr, e.path, nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | e.flags, nullptr) != 0)
      return false;
  }
  return true;
}

bool create_file(const SetupOp& op) {
  const int fd = open(op.path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, op.mode);
  if (fd < 0) return false;
  size_t done = 0;
  while (done < op.size) {
    const ssize_t n = write(fd, op.data + done, op.size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = n < 0 ? errno : ENOSPC;
      close(fd);
      errno = err;
      return false;
    }
    done += static_cast<size_t>(n);
  }
  return close(fd) == 0;
}

bool run_op(const SetupOp& op, const ChildPlan& p) {
  constexpr unsigned long kScratch = MS_NOSUID | MS_NODEV;
  switch (op.kind) {
    case SetupOp::PRIVATE_ROOT:
      return mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0;
    case SetupOp::READONLY_ROOT:
      return make_read_only(p);
    case SetupOp::MKDIR:
      return mkdir(op.path, op.mode) == 0 || errno == EEXIST;
    case SetupOp::RMDIR:
      return rmdir(op.path) == 0;
    case SetupOp::MOUNT_TMPFS:
      return mount("tmpfs", op.path, "tmpfs", kScratch, op.data) == 0;
    case SetupOp::MOUNT_BIND:
      return mount(op.source, op.path, nullptr, MS_BIND | MS_REC, nullptr) == 0;
    case SetupOp::MOUNT_MOVE:
      return mount(op.source, op.path, nullptr, MS_MOVE, nullptr) == 0;
    case SetupOp::MOUNT_PROC:
      // A user namespace may mount proc only where the existing one is fully visible (not so in containers
      // that mask /proc paths); then the program gets no /proc at all rather than the host's.
      if (mount("proc", op.path, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) == 0) return true;
      if (errno != EPERM && errno != EACCES) return false;
      return mount("tmpfs", op.path, "tmpfs", kScratch | MS_NOEXEC | MS_RDONLY, "size=4k,mode=0555") == 0;
    case SetupOp::CREATE_FILE:
      return create_file(op);
    case SetupOp::SYMLINK:
      return symlink(op.source, op.path) == 0;
    case SetupOp::CHDIR:
      return chdir(op.path) == 0;
    case SetupOp::SET_HOSTNAME:
      return sethostname(op.data, op.size) == 0;
  }
  errno = EINVAL;
  return false;
}

// An empty bounding set and no inheritable or ambient capabilities: execve then grants none, even to a uid
// that is root inside the namespace.
bool drop_capabilities() {
  for (int cap = 0; cap < 64; ++cap)
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) return false;
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) return false;
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3]{};
  return syscall(SYS_capset, &header, data) == 0;
}

// Ends the program's process after a failed step. Not [[noreturn]], like nothing on this path: a sanitizer
// instruments calls to those, and on this stack, under RLIMIT_AS, its runtime fails before the report is out.
int program_failed(ChildStep step, int op, int err) {
  write_report(ChildReport{'E', step, op, err, 0});
  syscall(SYS_exit_group, 1);
  return 1;
}

// Runs on its own stack in the init's memory (CLONE_VM | CLONE_VFORK), the init suspended until execve: no
// second copy of the harness's page tables.
int program_main(void* plan) {
  const ChildPlan& p = *static_cast<const ChildPlan*>(plan);
  for (size_t i = 0; i < p.n_limits; ++i)
    if (setrlimit(static_cast<__rlimit_resource_t>(p.limits[i].resource), &p.limits[i].value) != 0)
      return program_failed(STEP_RLIMITS, static_cast<int>(i), errno);
  if (!drop_capabilities()) return program_failed(STEP_CAPABILITIES, -1, errno);
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return program_failed(STEP_NO_NEW_PRIVS, -1, errno);
  if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, p.seccomp, 0, 0) != 0) return program_failed(STEP_SECCOMP, -1, errno);
  execve(p.path, p.argv, p.envp);
  return program_failed(STEP_EXECVE, -1, errno);
}

}  // namespace

void child_main(const ChildPlan& p) noexcept {
  reset_signals();
  if (!place_fds(p)) _exit(1);  // no status pipe in place to report on; the parent reports the bare exit
  // A session of its own: no controlling terminal to inject input into, and a process group the parent kills.
  if (setsid() < 0) fail(STEP_SESSION, -1, errno);
  prctl(PR_SET_NAME, "sandbox-init", 0, 0, 0);
  erase_harness_strings(p);

  char identity = 0;
  ssize_t n;
  do n = read(FD_GO, &identity, 1);
  while (n < 0 && errno == EINTR);
  if (n != 1) _exit(1);  // the parent died, or gave up, before writing the id maps
  for (size_t i = 0; i < p.n_pinned; ++i) {
    const int want = N_CHILD_FDS + static_cast<int>(i);
    const int fd = open(p.pinned[i], O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || (fd != want && (dup3(fd, want, O_CLOEXEC) != want || close(fd) != 0)))
      fail(STEP_PIN_PATHS, static_cast<int>(i), errno);
  }
  if (identity == IDENTITY_NOBODY && (syscall(SYS_setgroups, 0, nullptr) != 0 ||
                                      syscall(SYS_setresgid, p.nobody_gid, p.nobody_gid, p.nobody_gid) != 0 ||
                                      syscall(SYS_setresuid, p.nobody_uid, p.nobody_uid, p.nobody_uid) != 0))
    fail(STEP_IDENTITY, -1, errno);
  // After the identity change, which clears it. The parent keeps its end of FD_GO open for the whole run: a
  // hang-up now means it died before the death signal was armed.
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) fail(STEP_PARENT_DEATH_SIGNAL, -1, errno);
  pollfd go{FD_GO, POLLIN, 0};
  if (poll(&go, 1, 0) == 1 && (go.revents & (POLLHUP | POLLERR))) _exit(1);
  close(FD_GO);
  // The init's memory is a copy of the harness's: not readable through /proc/1/{mem,environ} or ptrace.
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  umask(022);

  for (size_t i = 0; i < p.n_ops; ++i)
    if (!run_op(p.ops[i], p)) fail(STEP_SETUP_OP, static_cast<int>(i), errno);
  for (size_t i = 0; i < p.n_pinned; ++i) close(N_CHILD_FDS + static_cast<int>(i));

  const int program =
      clone(program_main, p.program_stack_top, CLONE_VM | CLONE_VFORK | SIGCHLD, const_cast<ChildPlan*>(&p));
  if (program < 0) fail(STEP_FORK_PROGRAM, -1, errno);
  for (int fd = FD_STDIN; fd <= FD_REPORT; ++fd) close(fd);
  // PID 1 reaps every orphan; when the program itself ends, the init reports and exits, and the kernel kills
  // whatever is left in the namespace.
  for (;;) {
    int status = 0;
    const pid_t reaped = wait4(-1, &status, __WALL, nullptr);
    if (reaped == program) {
      write_report(ChildReport{'S', 0, -1, 0, status});
      _exit(0);
    }
    if (reaped < 0 && errno != EINTR) fail(STEP_REAP, -1, errno);
  }
}

}  // namespace mlabench::sandbox::detail
