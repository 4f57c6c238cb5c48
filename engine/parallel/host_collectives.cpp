#include "engine/parallel/host_collectives.h"

#include <algorithm>
#include <exception>
#include <mutex>
#include <thread>

#include "core/check.h"

namespace mlabench::parallel {

HostGroup::HostGroup(int ranks)
    : n_(ranks), slots_(static_cast<size_t>(std::max(ranks, 0))), gone_(static_cast<size_t>(std::max(ranks, 0)), 0) {
  MLABENCH_CHECK(ranks >= 1 && ranks <= 64, "HostGroup: {} ranks (1 to 64)", ranks);
  barrier_ = std::make_unique<std::barrier<>>(ranks);
}

void HostGroup::publish(int rank, Slot s) {
  MLABENCH_CHECK(rank >= 0 && rank < n_, "HostGroup: rank {} of {}", rank, n_);
  slots_[static_cast<size_t>(rank)] = s;
  barrier_->arrive_and_wait();
  for (int r = 0; r < n_; ++r)
    MLABENCH_CHECK(!gone_[static_cast<size_t>(r)], "HostGroup: rank {} left the group (it failed); rank {} stops", r,
                   rank);
}

void HostGroup::done() { barrier_->arrive_and_wait(); }

void HostGroup::leave(int rank) {
  gone_[static_cast<size_t>(rank)] = 1;
  barrier_->arrive_and_drop();
}

void HostGroup::all_reduce_sum(int rank, const float* in, float* out, int64_t n) {
  publish(rank, {in, nullptr});
  // Into a temporary: out may alias this rank's in, which the others are still reading.
  std::vector<float> sum(static_cast<size_t>(n), 0.0f);
  for (int r = 0; r < n_; ++r) {
    const float* src = slots_[static_cast<size_t>(r)].data;
    for (int64_t i = 0; i < n; ++i) sum[static_cast<size_t>(i)] += src[i];
  }
  done();
  std::copy(sum.begin(), sum.end(), out);
}

void HostGroup::all_gather(int rank, const float* in, const std::vector<int64_t>& counts, float* out) {
  MLABENCH_CHECK(static_cast<int>(counts.size()) == n_, "HostGroup::all_gather: {} counts for {} ranks",
                 counts.size(), n_);
  publish(rank, {in, nullptr});
  int64_t at = 0;
  for (int r = 0; r < n_; ++r) {
    const int64_t c = counts[static_cast<size_t>(r)];
    std::copy(slots_[static_cast<size_t>(r)].data, slots_[static_cast<size_t>(r)].data + c, out + at);
    at += c;
  }
  done();
}

std::vector<int64_t> HostGroup::all_gather_counts(int rank, int64_t mine) {
  publish(rank, {nullptr, nullptr, &mine});
  std::vector<int64_t> all(static_cast<size_t>(n_));
  for (int r = 0; r < n_; ++r) all[static_cast<size_t>(r)] = *slots_[static_cast<size_t>(r)].value;
  done();
  return all;
}

void HostGroup::all_to_all(int rank, const float* send, const std::vector<int64_t>& send_counts, int64_t width,
                           float* recv, std::vector<int64_t>& recv_counts) {
  MLABENCH_CHECK(static_cast<int>(send_counts.size()) == n_ && width > 0,
                 "HostGroup::all_to_all: {} send counts for {} ranks, width {}", send_counts.size(), n_, width);
  publish(rank, {send, &send_counts});
  recv_counts.assign(static_cast<size_t>(n_), 0);
  int64_t at = 0;
  for (int src = 0; src < n_; ++src) {
    const Slot& s = slots_[static_cast<size_t>(src)];
    int64_t offset = 0;  // rows src sends to ranks before this one
    for (int d = 0; d < rank; ++d) offset += (*s.counts)[static_cast<size_t>(d)];
    const int64_t rows = (*s.counts)[static_cast<size_t>(rank)];
    std::copy(s.data + offset * width, s.data + (offset + rows) * width, recv + at * width);
    recv_counts[static_cast<size_t>(src)] = rows;
    at += rows;
  }
  done();
}

void run_ranks(HostGroup& group, const std::function<void(int rank)>& f) {
  std::mutex mu;
  std::exception_ptr first;
  std::vector<std::thread> threads;
  for (int r = 0; r < group.size(); ++r)
    threads.emplace_back([&, r] {
      try {
        f(r);
      } catch (...) {
        {
          std::lock_guard<std::mutex> lock(mu);
          if (!first) first = std::current_exception();
        }
        group.leave(r);
      }
    });
  for (auto& t : threads) t.join();
  if (first) std::rethrow_exception(first);
}

}  // namespace mlabench::parallel

namespace mlabench::parallel {

RankThreads::RankThreads(HostGroup& group) : group_(group) {
  for (int r = 0; r < group.size(); ++r) threads_.emplace_back([this, r] { loop(r); });
}

RankThreads::~RankThreads() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  start_.notify_all();
  for (auto& t : threads_) t.join();
}

void RankThreads::loop(int rank) {
  uint64_t seen = 0;
  for (;;) {
    const std::function<void(int)>* job = nullptr;
    {
      std::unique_lock<std::mutex> lock(mu_);
      start_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      job = job_;
    }
    std::exception_ptr error;
    try {
      (*job)(rank);
    } catch (...) {
      error = std::current_exception();
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (error) {
      if (!first_) first_ = error;
      group_.leave(rank);  // the others' next collective fails instead of waiting for this rank
    }
    if (--running_ == 0) finished_.notify_all();
  }
}

void RankThreads::run(const std::function<void(int rank)>& f) {
  std::unique_lock<std::mutex> lock(mu_);
  if (first_) std::rethrow_exception(first_);  // a rank left the group: it cannot run another collective step
  job_ = &f;
  running_ = group_.size();
  ++generation_;
  start_.notify_all();
  finished_.wait(lock, [&] { return running_ == 0; });
  job_ = nullptr;
  if (first_) std::rethrow_exception(first_);
}

}  // namespace mlabench::parallel
