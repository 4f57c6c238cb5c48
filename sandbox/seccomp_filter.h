// The seccomp filter of every sandboxed program, compiled once with libseccomp into a BPF program the cloned
// child can install without allocating (sandbox_child.h). docs/sandbox.md lists what it denies.
#pragma once

#include <linux/filter.h>

#include <string>
#include <vector>

namespace mlabench::sandbox::detail {

struct SeccompProgram {
  std::vector<sock_filter> code;
  sock_fprog program{};  ///< points into code
  std::string error;     ///< non-empty: the filter could not be built (what failed and a HINT)
};

/// Built on first use; thread-safe.
const SeccompProgram& seccomp_program();

}  // namespace mlabench::sandbox::detail
