// The CPU twin of the NCCL collectives the sharded engine uses (issue 22): a group of ranks as threads of one
// process, each call collective (every rank calls the same ones in the same order, as NCCL requires). Sums run in
// rank order 0..N-1, so every rank gets the same bits and a test can compare against a serial sum. CI runs the
// sharded CPU math through it (tests/engine/test_parallel.cpp).
#pragma once

#include <barrier>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
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
  /// Every rank's `mine` (a row count, an offset), in rank order, on every rank: exact integers, where a gather of
  /// floats would round counts past 2^24.
  std::vector<int64_t> all_gather_counts(int rank, int64_t mine);
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
    const int64_t* value = nullptr;
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

/// The same over threads that live as long as this object: one per rank, so a rank keeps its thread (its OpenMP
/// pool on the CPU; its CUDA device and stream on a GPU) from one step to the next instead of a new thread a step.
/// run() is called by one thread at a time (the serving core's); after a rank has thrown, the group is broken and
/// every later run() fails at once with the first error.
class RankThreads {
 public:
  explicit RankThreads(HostGroup& group);
  ~RankThreads();
  RankThreads(const RankThreads&) = delete;
  RankThreads& operator=(const RankThreads&) = delete;
  /// f(rank) on every rank's thread; returns when all have ended, rethrowing the first exception one threw.
  void run(const std::function<void(int rank)>& f);

 private:
  void loop(int rank);
  HostGroup& group_;
  std::mutex mu_;
  std::condition_variable start_, finished_;
  const std::function<void(int)>* job_ = nullptr;
  uint64_t generation_ = 0;
  int running_ = 0;
  bool stop_ = false;
  std::exception_ptr first_;  // the first exception a rank threw; once set, the group is broken
  std::vector<std::thread> threads_;
};

}  // namespace mlabench::parallel
