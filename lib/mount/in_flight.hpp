// Counts requests the bridge handed to the session and not yet finished, so that shutdown can
// wait for the last reply before the memory those requests use goes away.
#pragma once

#include <atomic>
#include <condition_variable>
#include <mutex>

namespace virtiofs::mount {

class InFlight {
 public:
  void add() { count_.fetch_add(1, std::memory_order_relaxed); }
  void done() {
    // Only wait_idle() needs a wake-up, and only once it has announced itself: notify under the
    // lock so that its predicate check cannot miss this (seq_cst pairs the two flags).
    if (count_.fetch_sub(1) == 1 && waiting_.load()) {
      std::lock_guard lock(mu_);
      cv_.notify_all();
    }
  }
  void wait_idle() {
    waiting_.store(true);
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return count_.load() == 0; });
  }

 private:
  std::atomic<unsigned> count_{0};
  std::atomic<bool> waiting_{false};
  std::mutex mu_;
  std::condition_variable cv_;
};

}  // namespace virtiofs::mount
