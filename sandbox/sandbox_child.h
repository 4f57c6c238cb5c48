// The half of a sandbox run that executes after clone(): the sandbox's init (PID 1 of the new namespaces) and
// the program it starts. clone() is called from a multi-threaded process, so this code only makes system calls
// on data the parent prepared beforehand (ChildPlan): no allocation, no locks, no stdio, and raw syscalls where
// glibc would signal the parent's other threads (setresuid, setgroups). sandbox.cpp builds the plan.
#pragma once

#include <linux/filter.h>
#include <sys/resource.h>

#include <cstddef>
#include <cstdint>

namespace mlabench::sandbox::detail {

/// File descriptors as the program sees them; the two above 4 are closed at execve.
enum ChildFd : int {
  FD_STDIN = 0,
  FD_STDOUT = 1,
  FD_STDERR = 2,
  FD_CONTROL = 3,
  FD_REPORT = 4,
  FD_STATUS = 5,  ///< init and program -> parent: ChildReport records (CLOEXEC: the program never holds it)
  FD_GO = 6,      ///< parent -> init: one byte once the id maps are written (Identity); EOF: the parent died
  N_CHILD_FDS = 7,
};

/// The go byte: which identity the init takes before it builds the file system.
enum Identity : char {
  IDENTITY_AS_MAPPED = 'm',  ///< keep the uid/gid the parent mapped to itself
  IDENTITY_NOBODY = 'n',     ///< setgroups({}) + setresgid/setresuid to the mapped nobody (harness runs as root)
};

/// One step of the file-system setup, run in order by the init before the program starts.
struct SetupOp {
  enum Kind : uint8_t {
    PRIVATE_ROOT,   ///< no mount event propagates to or from the host
    READONLY_ROOT,  ///< every mount so far read-only and nosuid (mount_setattr, else RemountEntry list)
    MKDIR,          ///< path, mode
    RMDIR,          ///< path
    MOUNT_TMPFS,    ///< path, data = tmpfs options
    MOUNT_BIND,     ///< source onto path (recursive)
    MOUNT_MOVE,     ///< source onto path
    MOUNT_PROC,     ///< path: a proc for the new PID namespace, else an empty read-only tmpfs (docs/sandbox.md)
    CREATE_FILE,    ///< path holding data[0, size), mode
    SYMLINK,        ///< path -> source
    CHDIR,          ///< path
    SET_HOSTNAME,   ///< data
  };
  Kind kind;
  const char* path = nullptr;
  const char* source = nullptr;
  const char* data = nullptr;
  size_t size = 0;
  unsigned mode = 0;
};

/// Fallback of READONLY_ROOT for kernels without mount_setattr (< 5.12): one bind remount per mount point, with
/// the flags the mount already has (a user namespace may not clear them).
struct RemountEntry {
  const char* path;
  unsigned long flags;  ///< MS_NOSUID | MS_NODEV | MS_NOEXEC | atime flags of the mount
};

struct ChildLimit {
  int resource;
  rlimit value;
};

struct ChildPlan {
  int fds[N_CHILD_FDS];  ///< parent's descriptors to place at 0..6; fds[FD_REPORT] < 0: fd 4 closed
  uintptr_t arg_start, arg_end, env_start, env_end;  ///< the harness's argv and environ strings, zeroed in the init
  uint32_t nobody_uid, nobody_gid;                   ///< IDENTITY_NOBODY
  /// Opened (O_PATH) before the identity change, as fds 7, 8, ...: host paths only the harness's own uid may
  /// traverse to (an interpreter under /root), which MOUNT_BIND ops then name as /proc/self/fd/N.
  const char* const* pinned;
  size_t n_pinned;
  const SetupOp* ops;
  size_t n_ops;
  const RemountEntry* remounts;
  size_t n_remounts;
  const ChildLimit* limits;
  size_t n_limits;
  const sock_fprog* seccomp;
  char* program_stack_top;  ///< 16-byte aligned top of a stack for the program between its clone and execve
  const char* path;
  char* const* argv;
  char* const* envp;
};

/// What the parent reads on FD_STATUS: 'E' (setup failed at step/op with errno err) or 'S' (the program ended
/// with wait status `status`). Smaller than PIPE_BUF, so a record is never split.
struct ChildReport {
  char tag;
  int32_t step;
  int32_t op;
  int32_t err;
  int32_t status;
};

enum ChildStep : int32_t {
  STEP_DESCRIPTORS,
  STEP_SESSION,
  STEP_PIN_PATHS,
  STEP_IDENTITY,
  STEP_PARENT_DEATH_SIGNAL,
  STEP_SETUP_OP,
  STEP_FORK_PROGRAM,
  STEP_REAP,
  STEP_RLIMITS,
  STEP_CAPABILITIES,
  STEP_NO_NEW_PRIVS,
  STEP_SECCOMP,
  STEP_EXECVE,
};

/// Runs in the cloned child; never returns. Exits 0 after reporting the program's status, 1 after a setup failure.
[[noreturn]] void child_main(const ChildPlan& plan) noexcept;

}  // namespace mlabench::sandbox::detail
