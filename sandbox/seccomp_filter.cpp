// A deny list on top of the other layers: the namespaces and the dropped capabilities already make most of
// these calls fail; the filter keeps the kernel code behind them out of reach and shuts what namespaces leave
// open (sockets to host paths through connect(), io_uring, terminal injection).
#include "sandbox/seccomp_filter.h"

#include <fmt/format.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

namespace mlabench::sandbox::detail {
namespace {

// Denied with EPERM. Names a kernel does not know on this architecture are skipped.
constexpr const char* kDenied[] = {
    // other processes' memory
    "ptrace", "process_vm_readv", "process_vm_writev",
    // the file system layout: mounts, new roots, new namespaces
    "mount", "umount2", "mount_setattr", "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick",
    "pivot_root", "chroot", "unshare", "setns",
    // AF_UNIX sockets are allowed (socketpair, multiprocessing); connecting one to a socket file of the host
    // (a Docker or D-Bus socket on the read-only root) is not
    "connect",
    // kernel interfaces a test program has no use for, each a known attack surface
    "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter",
    "io_uring_register", "open_by_handle_at", "kexec_load", "kexec_file_load", "init_module", "finit_module",
    "delete_module", "reboot", "swapon", "swapoff", "acct", "quotactl", "syslog", "vhangup", "iopl", "ioperm"};

constexpr int kNamespaceFlags[] = {CLONE_NEWNS,  CLONE_NEWUTS, CLONE_NEWIPC,   CLONE_NEWUSER,
                                   CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWCGROUP};

std::string rule_error(const char* what, int rc) {
  return fmt::format(
      "sandbox: libseccomp could not add the rule for {}: {}. HINT: libseccomp >= 2.5 is needed "
      "(apt-get install libseccomp-dev) and a kernel with CONFIG_SECCOMP_FILTER",
      what, std::strerror(-rc));
}

SeccompProgram build() {
  SeccompProgram out;
  std::unique_ptr<void, void (*)(scmp_filter_ctx)> ctx(seccomp_init(SCMP_ACT_ALLOW), seccomp_release);
  if (!ctx) {
    out.error = "sandbox: seccomp_init failed. HINT: libseccomp >= 2.5 is needed (apt-get install libseccomp-dev)";
    return out;
  }
  // A program that switches to another syscall ABI (int 0x80 on x86_64) would skip every rule below.
  int rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
  if (rc != 0) {
    out.error = rule_error("foreign architectures", rc);
    return out;
  }
  for (const char* name : kDenied) {
    const int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR) continue;
    if ((rc = seccomp_rule_add(ctx.get(), SCMP_ACT_ERRNO(EPERM), nr, 0)) != 0) {
      out.error = rule_error(name, rc);
      return out;
    }
  }
  // socket(): only AF_UNIX; the new network namespace has no interface, this also keeps netlink away.
  if ((rc = seccomp_rule_add(ctx.get(), SCMP_ACT_ERRNO(EPERM), SCMP_SYS(socket), 1,
                             SCMP_A0(SCMP_CMP_NE, static_cast<scmp_datum_t>(AF_UNIX)))) != 0) {
    out.error = rule_error("socket", rc);
    return out;
  }
  for (const int flag : kNamespaceFlags) {
    const auto f = static_cast<scmp_datum_t>(flag);
    if ((rc = seccomp_rule_add(ctx.get(), SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                               SCMP_A0(SCMP_CMP_MASKED_EQ, f, f))) != 0) {
      out.error = rule_error("clone", rc);
      return out;
    }
  }
  // clone3 passes its flags in memory, out of a filter's sight: ENOSYS makes glibc fall back to clone.
  if ((rc = seccomp_rule_add(ctx.get(), SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0)) != 0) {
    out.error = rule_error("clone3", rc);
    return out;
  }
  for (const unsigned long request : {static_cast<unsigned long>(TIOCSTI), static_cast<unsigned long>(TIOCLINUX)}) {
    if ((rc = seccomp_rule_add(ctx.get(), SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ioctl), 1,
                               SCMP_A1(SCMP_CMP_MASKED_EQ, 0xFFFFFFFFu, request))) != 0) {
      out.error = rule_error("ioctl", rc);
      return out;
    }
  }

  const int fd = memfd_create("mlabench-seccomp", MFD_CLOEXEC);
  if (fd < 0) {
    out.error = fmt::format("sandbox: memfd_create failed: {}. HINT: Linux >= 3.17 is needed", std::strerror(errno));
    return out;
  }
  std::string bytes;
  if ((rc = seccomp_export_bpf(ctx.get(), fd)) == 0 && lseek(fd, 0, SEEK_SET) == 0) {
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) bytes.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  if (rc != 0 || bytes.empty() || bytes.size() % sizeof(sock_filter) != 0) {
    out.error = rule_error("the exported program", rc != 0 ? rc : -EIO);
    return out;
  }
  out.code.resize(bytes.size() / sizeof(sock_filter));
  std::memcpy(out.code.data(), bytes.data(), bytes.size());
  out.program.len = static_cast<unsigned short>(out.code.size());
  out.program.filter = out.code.data();
  return out;
}

}  // namespace

const SeccompProgram& seccomp_program() {
  static const SeccompProgram program = build();
  return program;
}

}  // namespace mlabench::sandbox::detail
