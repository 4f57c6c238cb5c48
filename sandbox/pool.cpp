// sandbox::Pool (sandbox.h): fixed workers taking indices of one parallel_for at a time.
#include <algorithm>
#include <condition_variable>
#include <exception>
#include <mutex>

#include "sandbox/sandbox.h"

namespace mlabench::sandbox {

struct Pool::State {
  std::mutex call;  // one parallel_for at a time: a second caller waits for the first to finish
  std::mutex m;
  std::condition_variable work, done;
  const std::function<void(size_t)>* job = nullptr;
  size_t n = 0, next = 0, finished = 0;
  std::exception_ptr error;
  bool stop = false;
};

Pool::Pool(int workers) : state_(std::make_unique<State>()) {
  if (workers <= 0) workers = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  threads_.reserve(static_cast<size_t>(workers));
  for (int w = 0; w < workers; ++w) {
    threads_.emplace_back([s = state_.get()] {
      std::unique_lock lock(s->m);
      for (;;) {
        s->work.wait(lock, [s] { return s->stop || (s->job != nullptr && s->next < s->n); });
        if (s->stop) return;
        const size_t i = s->next++;
        const auto* job = s->job;
        lock.unlock();
        std::exception_ptr error;
        try {
          (*job)(i);
        } catch (...) {
          error = std::current_exception();
        }
        lock.lock();
        if (error && !s->error) s->error = error;
        if (++s->finished == s->n) s->done.notify_all();
      }
    });
  }
}

Pool::~Pool() {
  {
    std::lock_guard lock(state_->m);
    state_->stop = true;
  }
  state_->work.notify_all();
  for (auto& t : threads_) t.join();
}

void Pool::parallel_for(size_t n, const std::function<void(size_t)>& job) {
  if (n == 0) return;
  std::lock_guard call(state_->call);
  std::unique_lock lock(state_->m);
  state_->job = &job;
  state_->n = n;
  state_->next = 0;
  state_->finished = 0;
  state_->error = nullptr;
  state_->work.notify_all();
  state_->done.wait(lock, [this] { return state_->finished == state_->n; });
  state_->job = nullptr;
  if (state_->error) std::rethrow_exception(std::exchange(state_->error, nullptr));
}

}  // namespace mlabench::sandbox
