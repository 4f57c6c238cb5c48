# The sandbox model-written code runs in (sandbox/sandbox.h): namespaces, seccomp (libseccomp), rlimits.
pkg_check_modules(SECCOMP REQUIRED IMPORTED_TARGET libseccomp)
target_sources(mlabench_sandbox PRIVATE
  sandbox/sandbox.cpp
  sandbox/sandbox_child.cpp
  sandbox/seccomp_filter.cpp
  sandbox/pool.cpp
)
target_link_libraries(mlabench_sandbox PRIVATE PkgConfig::SECCOMP)
