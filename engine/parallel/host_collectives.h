// The CPU twin of the NCCL collectives the sharded engine uses (issue 22): a group of ranks as threads of one
// process, each call collective (every rank calls the same ones in the same order, as NCCL requires). Sums run in
// rank order 0..N-1, so every rank gets the same bits and a test can compare against a serial sum. CI runs the
// sharded CPU math through it (tests/engine/test_parallel.cpp).
#pragma once

#include <barrier>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

namespace mlabench::parallel {

class HostGroup {
 public:
  explicit HostGroup(int ranks);
  int size() const { return n_; }

  /// out = sum over ranks of in (n floats), on every rank; in and out may be the same buffer.
  void all_reduce_sum(int rank, const float* in, float* out, int64_t n);
  /// out = [rank 0's counts[0] floats | rank 1's | ...]; counts[r] is what rank r gives (the same vector on every
  /// rank).
  void all_gather(int rank, const float* in, const std::vector<int64_t>& counts, float* out);
  /// Rank r sends send_counts[d] rows of `width` floats to rank d (rows for d contiguous, in rank order) and
  /// receives the rows every rank sent it, in source-rank order, into recv (recv_counts[s] rows from rank s, filled
  /// here). recv must hold the total it is sent.
  void all_to_all(int rank, const float* send, const std::vector<int64_t>& send_counts, int64_t width, float* recv,
                  std::vector<int64_t>& recv_counts);
  /// Marks this rank gone (it threw): the others' next collective fails instead of waiting forever.
  void leave(int rank);

 private:
  struct Slot {
    const float* data = nullptr;
    const std::vector<int64_t>* counts = nullptr;
  };
  void publish(int rank, Slot s);  // then every rank's slot is readable
  void done();                      // every rank has read: slots may be overwritten
  int n_;
  std::vector<Slot> slots_;
  std::unique_ptr<std::barrier<>> barrier_;
  std::vector<char> gone_;
};

/// Runs f(rank) on one thread per rank of the group and rethrows the first exception a
/// rank threw, after every thread ended; a rank that throws leaves the group so the others fail too.
void run_ranks(HostGroup& group, const std::function<void(int rank)>& f);

}  // namespace mlabench::parallel
