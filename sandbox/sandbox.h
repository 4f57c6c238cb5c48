// The sandbox every piece of model-written code runs in (HumanEval, LiveCodeBench). One run = one fresh
// process tree, isolated by Linux namespaces (user, mount, PID, network, IPC, UTS), a seccomp filter and
// rlimits, with a private size-limited tmpfs as its only writable directory and a clean environment. The
// whole tree dies at the wall-clock limit. README "Sandbox" states what is guaranteed and what is not.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace mlabench::sandbox {

struct Limits {
  double wall_seconds = 10.0;                     ///< whole process tree killed (SIGKILL) after this
  double cpu_seconds = 10.0;                      ///< RLIMIT_CPU, rounded up to whole seconds
  int64_t address_space_bytes = 4LL << 30;        ///< RLIMIT_AS
  int64_t file_size_bytes = 64LL << 20;           ///< RLIMIT_FSIZE
  int64_t open_files = 256;                       ///< RLIMIT_NOFILE
  int64_t processes = 64;                         ///< RLIMIT_NPROC, counted inside the sandbox's user namespace
  int64_t tmpfs_bytes = 256LL << 20;              ///< size of the private writable work directory
  int64_t output_bytes = 16LL << 20;              ///< per stream (stdout, stderr, report); beyond it: OUTPUT_LIMIT
};

struct Request {
  std::vector<std::string> argv;  ///< argv[0]: an absolute path (e.g. find_python())
  /// Files written into the work directory (the process's cwd) before it starts: {relative name, contents}.
  std::vector<std::pair<std::string, std::string>> files;
  std::string stdin_data;           ///< fed on fd 0, then closed
  std::string control;              ///< readable on fd 3 (a pipe holding exactly this, then EOF); fd 3 always open
  bool capture_report = false;      ///< fd 4: a pipe whose bytes come back in Result::report (else fd 4 closed)
  std::vector<std::string> env;     ///< "KEY=VALUE" added to the clean environment (PATH, HOME=cwd, LANG=C.UTF-8)
  Limits limits;
};

enum class Status {
  EXITED,        ///< exited on its own: exit_code is valid
  SIGNALED,      ///< killed by a signal it caused (SIGSEGV, SIGXCPU for the CPU limit, ...): signal is valid
  TIMEOUT,       ///< still running at limits.wall_seconds: killed
  OUTPUT_LIMIT,  ///< wrote more than limits.output_bytes to one stream: killed
  SETUP_ERROR,   ///< the sandbox could not be built (error says why); the program never ran
};
const char* status_name(Status s);  ///< "exited", "signaled", "timeout", "output_limit", "setup_error"

struct Result {
  Status status = Status::SETUP_ERROR;
  int exit_code = -1;  ///< EXITED
  int signal = 0;      ///< SIGNALED
  std::string stdout_data, stderr_data, report;  ///< each at most limits.output_bytes
  double wall_seconds = 0.0;                     ///< from start to the death of the whole tree
  double cpu_seconds = 0.0;                      ///< user + system of the tree
  std::string error;                             ///< SETUP_ERROR: what failed and a HINT
  bool ok() const { return status == Status::EXITED && exit_code == 0; }
};

/// What this machine's kernel lets the sandbox use (probed once, cached).
struct Capabilities {
  bool user_namespaces = false;  ///< unprivileged (or root) user + mount + PID + net namespaces work
  bool seccomp = false;
  std::string detail;            ///< one line per missing feature with a HINT (e.g. sysctl kernel.unprivileged_userns_clone)
};
const Capabilities& probe();

/// \brief Runs one request to completion; thread-safe (many threads may run sandboxes at once). Never throws
/// for anything the program does; SETUP_ERROR when isolation cannot be established (a run is never
/// started with weaker isolation than documented).
Result run(const Request& request);

/// \brief Absolute path of the Python interpreter sandboxed programs run with: $MLABENCH_PYTHON, else python3 on
/// PATH. Throws mlabench::Error with a HINT (apt-get install python3) when there is none.
const std::string& find_python();

/// A fixed set of worker threads; each job typically calls run() (possibly several times in sequence, e.g. one
/// LiveCodeBench test after another).
class Pool {
 public:
  explicit Pool(int workers = 0);  ///< 0: std::thread::hardware_concurrency()
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;
  int workers() const { return static_cast<int>(threads_.size()); }
  /// \brief Calls job(i) for i in [0, n) on the workers and returns when all are done; the first exception a
  /// job throws is rethrown here (after the others finish).
  void parallel_for(size_t n, const std::function<void(size_t)>& job);

 private:
  struct State;
  std::unique_ptr<State> state_;
  std::vector<std::thread> threads_;
};

}  // namespace mlabench::sandbox
