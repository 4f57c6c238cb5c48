// The sandbox against hostile programs: each ends as a Result the caller can classify, the host is untouched
// and the test process goes on. Plus the plumbing: stdin, files, fd 3, fd 4, exit codes, signals, limits, pool.
#include <arpa/inet.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "sandbox/sandbox.h"

namespace mlabench::sandbox {
namespace {

namespace fs = std::filesystem;

// A string no other process on the machine has in its command line.
std::string unique_marker(const std::string& what) {
  return fmt::format("mlabench-sandbox-test-{}-{}-{}", what, getpid(),
                     std::chrono::steady_clock::now().time_since_epoch().count());
}

Request python(const std::string& code, std::vector<std::string> args = {}) {
  Request rq;
  rq.argv = {find_python(), "-I", "-c", code};
  rq.argv.insert(rq.argv.end(), args.begin(), args.end());
  rq.limits.wall_seconds = 10;
  return rq;
}

// Processes whose command line holds `marker`, anywhere on the machine.
int count_processes_with(const std::string& marker) {
  int n = 0;
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(e.path() / "cmdline", std::ios::binary);
    const std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (cmdline.find(marker) != std::string::npos) ++n;
  }
  return n;
}

std::string describe(const Result& r) {
  return fmt::format("status {} exit {} signal {} wall {:.2f}s\nstdout: {}\nstderr: {}\nerror: {}",
                     status_name(r.status), r.exit_code, r.signal, r.wall_seconds, r.stdout_data.substr(0, 2000),
                     r.stderr_data.substr(0, 2000), r.error);
}

class Sandbox : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!probe().user_namespaces) GTEST_SKIP() << "the sandbox cannot run on this machine:\n" << probe().detail;
  }
};

TEST_F(Sandbox, ExitCodeAndOutputStreams) {
  const Result r = run(python("import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"));
  ASSERT_EQ(r.status, Status::EXITED) << describe(r);
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.stdout_data, "out\n");
  EXPECT_EQ(r.stderr_data, "err\n");
  EXPECT_FALSE(r.ok());
  EXPECT_GT(r.cpu_seconds, 0.0);
}

TEST_F(Sandbox, StdinRoundTripLargerThanAPipe) {
  Request rq = python("import sys; sys.stdout.buffer.write(sys.stdin.buffer.read())");
  for (int i = 0; rq.stdin_data.size() < (3u << 20); ++i) rq.stdin_data += fmt::format("line {}\n", i);
  const Result r = run(rq);
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_EQ(r.stdout_data, rq.stdin_data);
}

TEST_F(Sandbox, ProgramThatNeverReadsStdinDoesNotBlockTheRun) {
  Request rq = python("print('done')");
  rq.stdin_data.assign(8u << 20, 'x');
  rq.control.assign(4u << 20, 'y');
  const Result r = run(rq);
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_EQ(r.stdout_data, "done\n");
}

TEST_F(Sandbox, FilesAreWrittenIntoTheWorkDirectory) {
  Request rq = python(
      "import os, json; print(json.dumps({'cwd': os.getcwd(), 'home': os.environ['HOME'], "
      "'tmp': os.environ['TMPDIR'], 'a': open('a.txt').read(), 'b': open('sub/dir/b.py').read(), "
      "'listing': sorted(os.listdir('.'))}))");
  rq.files = {{"a.txt", "alpha"}, {"sub/dir/b.py", "print(42)\n"}};
  const Result r = run(rq);
  ASSERT_TRUE(r.ok()) << describe(r);
  const auto j = nlohmann::json::parse(r.stdout_data);
  EXPECT_EQ(j["cwd"], "/tmp/work");
  EXPECT_EQ(j["home"], "/tmp/work");
  EXPECT_EQ(j["tmp"], "/tmp/work");
  EXPECT_EQ(j["a"], "alpha");
  EXPECT_EQ(j["b"], "print(42)\n");
  EXPECT_EQ(j["listing"], nlohmann::json::array({"a.txt", "sub"}));
}

TEST_F(Sandbox, BadRequestsAreSetupErrors) {
  Request relative;
  relative.argv = {"python3", "-c", "pass"};
  EXPECT_EQ(run(relative).status, Status::SETUP_ERROR);
  Request escaping = python("pass");
  escaping.files = {{"../outside.txt", "x"}};
  EXPECT_EQ(run(escaping).status, Status::SETUP_ERROR);
  Request missing;
  missing.argv = {"/nonexistent/mlabench/program"};
  const Result r = run(missing);
  ASSERT_EQ(r.status, Status::SETUP_ERROR) << describe(r);
  EXPECT_NE(r.error.find("execute /nonexistent/mlabench/program"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("HINT"), std::string::npos) << r.error;
}

TEST_F(Sandbox, ControlOnFd3AndReportOnFd4) {
  Request rq = python(
      "import os\n"
      "data = b''\n"
      "while chunk := os.read(3, 65536): data += chunk\n"
      "os.write(4, b'got %d bytes ending %s' % (len(data), data[-4:]))\n");
  rq.control = std::string(300000, 'c') + "tail";
  rq.capture_report = true;
  const Result r = run(rq);
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_EQ(r.report, "got 300004 bytes ending tail");

  Request closed = python(
      "import os\n"
      "try:\n  os.write(4, b'x')\nexcept OSError as e:\n  print(e.errno)\n"
      "print(os.read(3, 10))\n");
  const Result c = run(closed);
  ASSERT_TRUE(c.ok()) << describe(c);
  EXPECT_EQ(c.stdout_data, fmt::format("{}\nb''\n", EBADF));  // no fd 4 without capture_report; fd 3 empty
  EXPECT_EQ(c.report, "");
}

TEST_F(Sandbox, SignalsAreReported) {
  const Result segv = run(python("import ctypes; ctypes.string_at(0)"));
  ASSERT_EQ(segv.status, Status::SIGNALED) << describe(segv);
  EXPECT_EQ(segv.signal, SIGSEGV);
  const Result abrt = run(python("import os; os.abort()"));
  ASSERT_EQ(abrt.status, Status::SIGNALED) << describe(abrt);
  EXPECT_EQ(abrt.signal, SIGABRT);
}

TEST_F(Sandbox, CpuLimitRaisesSigxcpu) {
  Request rq = python("while True: pass");
  rq.limits.cpu_seconds = 1;
  const Result r = run(rq);
  ASSERT_EQ(r.status, Status::SIGNALED) << describe(r);
  EXPECT_EQ(r.signal, SIGXCPU);
  EXPECT_GE(r.cpu_seconds, 0.9);
  EXPECT_LT(r.wall_seconds, 6.0);
}

TEST_F(Sandbox, InfiniteLoopTimesOutAtTheWallLimit) {
  Request rq = python("import time\nwhile True: time.sleep(0.01)");
  rq.limits.wall_seconds = 1.0;
  const Result r = run(rq);
  ASSERT_EQ(r.status, Status::TIMEOUT) << describe(r);
  EXPECT_GE(r.wall_seconds, 1.0);
  EXPECT_LT(r.wall_seconds, 2.5);
}

TEST_F(Sandbox, ForkBombFailsAndLeavesNoProcess) {
  const std::string marker = unique_marker("forkbomb");
  Request rq = python(
      "import os, time\n"
      "while True:\n"
      "  try: os.fork()\n"
      "  except OSError: time.sleep(0.001)\n",
      {marker});
  rq.limits.wall_seconds = 2.0;
  rq.limits.processes = 32;
  const Result r = run(rq);
  EXPECT_EQ(r.status, Status::TIMEOUT) << describe(r);
  EXPECT_LT(r.wall_seconds, 4.0);
  EXPECT_EQ(count_processes_with(marker), 0);
}

TEST_F(Sandbox, DaemonInANewSessionDiesWithTheRun) {
  const std::string marker = unique_marker("daemon");
  const Result r =
      run(python("import os, sys, time\n"
                 "if os.fork() == 0:\n"
                 "  os.setsid()\n"
                 "  if os.fork() == 0:\n"
                 "    time.sleep(60)\n"
                 "  os._exit(0)\n"
                 "time.sleep(0.3)\n"
                 "print('parent leaves')\n",
                 {marker}));
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_LT(r.wall_seconds, 5.0);
  EXPECT_EQ(count_processes_with(marker), 0);
}

TEST_F(Sandbox, AllocatingSixteenGigabytesFailsInsideTheProgram) {
  const Result r = run(python("x = bytearray(16 << 30)"));
  ASSERT_EQ(r.status, Status::EXITED) << describe(r);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.stderr_data.find("MemoryError"), std::string::npos) << r.stderr_data;
}

TEST_F(Sandbox, OneGigabyteWriteStopsAtTheFileSizeAndTmpfsLimits) {
  const std::string name = unique_marker("bigfile");
  const std::string code =
      "import sys\n"
      "block = b'x' * (1 << 20)\n"
      "with open(sys.argv[1], 'wb') as f:\n"
      "  for _ in range(1024): f.write(block)\n";
  Request by_size = python(code, {name});
  by_size.limits.file_size_bytes = 8 << 20;
  const Result s = run(by_size);
  ASSERT_EQ(s.status, Status::EXITED) << describe(s);
  EXPECT_NE(s.exit_code, 0);
  EXPECT_NE(s.stderr_data.find("File too large"), std::string::npos) << s.stderr_data;

  Request by_tmpfs = python(code, {name});
  by_tmpfs.limits.file_size_bytes = 2LL << 30;
  by_tmpfs.limits.tmpfs_bytes = 16 << 20;
  const Result t = run(by_tmpfs);
  ASSERT_EQ(t.status, Status::EXITED) << describe(t);
  EXPECT_NE(t.exit_code, 0);
  EXPECT_NE(t.stderr_data.find("No space left"), std::string::npos) << t.stderr_data;
  EXPECT_FALSE(fs::exists(fs::path("/tmp/work") / name));
  EXPECT_FALSE(fs::exists(fs::current_path() / name));
}

TEST_F(Sandbox, WritesOutsideTheWorkDirectoryNeverReachTheHost) {
  const std::string name = unique_marker("escape");
  const char* home = std::getenv("HOME");
  const std::vector<std::string> targets = {std::string(home ? home : "/root") + "/" + name,
                                            "/tmp/" + name,
                                            "/var/tmp/" + name,
                                            "/dev/shm/" + name,
                                            (fs::current_path() / name).string(),
                                            "/" + name};
  std::vector<std::string> args = targets;
  const Result r =
      run(python("import sys, json\n"
                 "out = {}\n"
                 "for p in sys.argv[1:]:\n"
                 "  try:\n"
                 "    with open(p, 'w') as f: f.write('escaped')\n"
                 "    out[p] = 'written'\n"
                 "  except OSError as e:\n"
                 "    out[p] = e.strerror\n"
                 "print(json.dumps(out))\n",
                 args));
  ASSERT_TRUE(r.ok()) << describe(r);
  const auto j = nlohmann::json::parse(r.stdout_data);
  // The read-only root refuses; the scratch mounts accept, in memory that dies with the sandbox. A working
  // directory under one of the covered folders (a checkout in /tmp or $HOME) is hidden by its empty tmpfs.
  const std::string cwd = fs::current_path().string() + "/";
  bool covered = false;
  for (const std::string& dir : {std::string(home ? home : "/root"), std::string("/tmp"), std::string("/var/tmp"),
                                std::string("/run"), std::string("/dev/shm")})
    covered = covered || cwd.starts_with(dir + "/");
  EXPECT_EQ(j[(fs::current_path() / name).string()].get<std::string>(),
            covered ? "No such file or directory" : "Read-only file system")
      << cwd;
  EXPECT_EQ(j["/" + name], "Read-only file system");
  EXPECT_EQ(j["/tmp/" + name], "written");
  for (const auto& t : targets) EXPECT_FALSE(fs::exists(t)) << t << " appeared on the host";
}

TEST_F(Sandbox, HostFilesCannotBeDeletedOrChanged) {
  const fs::path victim_dir = fs::current_path() / unique_marker("victim");
  fs::create_directories(victim_dir);
  const fs::path victim = victim_dir / "keep.txt";
  std::ofstream(victim) << "precious";
  const Result r =
      run(python("import os, shutil, sys\n"
                 "d, f = sys.argv[1], sys.argv[2]\n"
                 "attempts = [lambda: os.remove(f), lambda: os.rename(f, f + '.moved'), lambda: shutil.rmtree(d),\n"
                 "            lambda: open(f, 'w').close(), lambda: os.chmod(f, 0o777), lambda: os.truncate(f, 0)]\n"
                 "for a in attempts:\n"
                 "  try:\n"
                 "    a(); print('succeeded')\n"
                 "  except OSError as e:\n"
                 "    print('refused')\n",
                 {victim_dir.string(), victim.string()}));
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_EQ(r.stdout_data, "refused\nrefused\nrefused\nrefused\nrefused\nrefused\n");
  std::ifstream in(victim);
  std::string content;
  in >> content;
  EXPECT_EQ(content, "precious");
  fs::remove_all(victim_dir);
}

TEST_F(Sandbox, NoNetworkNotEvenLoopback) {
  const int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(listener, 4), 0);
  ASSERT_EQ(getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const Result r =
      run(python("import socket, sys\n"
                 "try:\n"
                 "  socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=2); print('connected')\n"
                 "except OSError as e:\n"
                 "  print('inet refused:', type(e).__name__)\n"
                 "a, b = socket.socketpair(); a.sendall(b'ping'); print('unix pair:', b.recv(4).decode())\n"
                 "try:\n"
                 "  s = socket.socket(socket.AF_UNIX); s.connect('/run/docker.sock'); print('unix connected')\n"
                 "except OSError as e:\n"
                 "  print('unix connect refused')\n",
                 {std::to_string(ntohs(addr.sin_port))}));
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_EQ(r.stdout_data, "inet refused: PermissionError\nunix pair: ping\nunix connect refused\n");
  EXPECT_LT(accept(listener, nullptr, nullptr), 0);  // nothing ever connected
  EXPECT_EQ(errno, EAGAIN);
  close(listener);
}

TEST_F(Sandbox, TheHarnessEnvironmentIsInvisible) {
  const std::string secret = unique_marker("secret");
  ASSERT_EQ(setenv("MLABENCH_SANDBOX_TEST_SECRET", secret.c_str(), 1), 0);
  Request rq = python(
      "import os, json\n"
      "out = {'env': dict(os.environ), 'ppid': os.getppid()}\n"
      "for what in ['environ', 'cmdline', 'mem']:\n"
      "  try:\n"
      "    with open('/proc/%d/%s' % (os.getppid(), what), 'rb') as f: out[what] = f.read(4096).decode('latin-1')\n"
      "  except OSError as e:\n"
      "    out[what] = e.strerror\n"
      "print(json.dumps(out))\n");
  rq.env = {"EXTRA=1", "OMP_NUM_THREADS=2"};
  const Result r = run(rq);
  unsetenv("MLABENCH_SANDBOX_TEST_SECRET");
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_EQ(r.stdout_data.find(secret), std::string::npos);
  const auto j = nlohmann::json::parse(r.stdout_data);
  const nlohmann::json expected_env = {
      {"PATH", "/usr/local/bin:/usr/bin:/bin"}, {"HOME", "/tmp/work"},    {"LANG", "C.UTF-8"}, {"TMPDIR", "/tmp/work"},
      {"PYTHONDONTWRITEBYTECODE", "1"},         {"OMP_NUM_THREADS", "2"}, {"EXTRA", "1"}};
  EXPECT_EQ(j["env"], expected_env);
  EXPECT_EQ(j["ppid"], 1);  // the sandbox's init; the harness is outside the PID namespace
  EXPECT_EQ(j["environ"], "Permission denied");
  EXPECT_EQ(j["mem"], "Permission denied");
  EXPECT_EQ(j["cmdline"].get<std::string>().find("test_sandbox"), std::string::npos) << j["cmdline"];
}

TEST_F(Sandbox, KillingTheParentOrEveryoneHurtsOnlyTheSandbox) {
  const Result r =
      run(python("import os, signal, sys\n"
                 "os.kill(os.getppid(), signal.SIGKILL)\n"
                 "try:\n"
                 "  os.kill(-1, signal.SIGKILL)\n"
                 "except ProcessLookupError:\n"
                 "  pass\n"
                 "try:\n"
                 "  os.kill(int(sys.argv[1]), signal.SIGKILL); print('harness signalled')\n"
                 "except ProcessLookupError:\n"
                 "  print('harness not visible')\n"
                 "print('still here')\n",
                 {std::to_string(getpid())}));
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_EQ(r.stdout_data, "harness not visible\nstill here\n");
  EXPECT_TRUE(run(python("pass")).ok());  // and the harness goes on
}

TEST_F(Sandbox, HundredMegabytesOfStdoutHitTheOutputLimit) {
  Request rq = python("import sys\nblock = b'o' * (1 << 20)\nfor _ in range(100): sys.stdout.buffer.write(block)");
  rq.limits.output_bytes = 4 << 20;
  const Result r = run(rq);
  ASSERT_EQ(r.status, Status::OUTPUT_LIMIT) << describe(r);
  EXPECT_EQ(r.stdout_data.size(), size_t{4} << 20);
  EXPECT_LT(r.wall_seconds, 5.0);
}

TEST_F(Sandbox, ProgramHasNoPrivilegesAndOnlyItsDescriptors) {
  Request rq = python(
      "import os, json, ctypes\n"
      "status = dict(l.split(':\\t', 1) for l in open('/proc/self/status').read().splitlines() if ':\\t' in l)\n"
      "libc = ctypes.CDLL(None, use_errno=True)\n"
      "def errno_of(rc): return ctypes.get_errno() if rc != 0 else 0\n"
      "def can_fstat(fd):\n"
      "  try: os.fstat(fd); return True\n"
      "  except OSError: return False\n"
      "print(json.dumps({'cap_eff': status['CapEff'].strip(), 'cap_bnd': status['CapBnd'].strip(),\n"
      "  'nnp': status['NoNewPrivs'].strip(), 'seccomp': status['Seccomp'].strip(), 'uid': os.getuid(),\n"
      "  'fds': [fd for fd in range(1024) if can_fstat(fd)],\n"
      "  'unshare': errno_of(libc.unshare(0x10000000)), 'ptrace': errno_of(libc.ptrace(16, 1, 0, 0)),\n"
      "  'mount': errno_of(libc.mount(b'none', b'/tmp', b'tmpfs', 0, None)),\n"
      "  'dev': sorted(os.listdir('/dev')), 'hostname': os.uname().nodename}))\n");
  rq.capture_report = true;
  const Result r = run(rq);
  ASSERT_TRUE(r.ok()) << describe(r);
  const auto j = nlohmann::json::parse(r.stdout_data);
  EXPECT_EQ(j["cap_eff"], "0000000000000000");
  EXPECT_EQ(j["cap_bnd"], "0000000000000000");
  EXPECT_EQ(j["nnp"], "1");
  EXPECT_EQ(j["seccomp"], "2");
  if (geteuid() == 0)
    EXPECT_EQ(j["uid"], 65534);
  else
    EXPECT_EQ(j["uid"], geteuid());
  EXPECT_EQ(j["fds"], nlohmann::json::array({0, 1, 2, 3, 4}));
  EXPECT_EQ(j["unshare"], EPERM);
  EXPECT_EQ(j["ptrace"], EPERM);
  EXPECT_EQ(j["mount"], EPERM);
  EXPECT_EQ(j["dev"], nlohmann::json::array(
                          {"fd", "full", "null", "random", "shm", "stderr", "stdin", "stdout", "urandom", "zero"}));
  EXPECT_EQ(j["hostname"], "sandbox");
}

TEST(SandboxPool, RunsJobsConcurrentlyAndRethrows) {
  Pool pool(4);
  EXPECT_EQ(pool.workers(), 4);
  std::atomic<int> arrived{0};
  std::atomic<int> saw_all{0};
  // Each job waits until all four are inside at once: only four concurrent workers get there.
  pool.parallel_for(4, [&](size_t) {
    ++arrived;
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (arrived.load() < 4 && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (arrived.load() == 4) ++saw_all;
  });
  EXPECT_EQ(saw_all.load(), 4);

  std::atomic<int> ran{0};
  EXPECT_THROW(pool.parallel_for(20,
                                 [&](size_t i) {
                                   ++ran;
                                   if (i == 7) throw std::runtime_error("job 7");
                                 }),
               std::runtime_error);
  EXPECT_EQ(ran.load(), 20);
  pool.parallel_for(0, [](size_t) { FAIL() << "no job for n = 0"; });
}

TEST_F(Sandbox, PoolRunsSandboxesInParallel) {
  Pool pool(4);
  std::vector<Result> results(8);
  const auto t0 = std::chrono::steady_clock::now();
  pool.parallel_for(results.size(), [&](size_t i) {
    results[i] = run(python(fmt::format("import time; time.sleep(0.5); print({})", i)));
  });
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (size_t i = 0; i < results.size(); ++i) {
    ASSERT_TRUE(results[i].ok()) << describe(results[i]);
    EXPECT_EQ(results[i].stdout_data, fmt::format("{}\n", i));
  }
  EXPECT_LT(elapsed, 3.5);  // 8 x 0.5 s of sleep one after another would take 4 s
}

}  // namespace
}  // namespace mlabench::sandbox
