// A fixed set of numbered resources (request records, buffer chunks) shared by the threads that
// read /dev/fuse and the completion thread that gives them back. Taking waits for a completion
// to return some, never sleeps and retries; close() releases every waiter for shutdown.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <span>
#include <vector>

namespace virtiofs::mount {

class IndexPool {
 public:
  explicit IndexPool(uint32_t count) {
    free_.reserve(count);
    for (uint32_t i = count; i > 0; --i) free_.push_back(i - 1);
  }

  // Fills `out` with free indices, waiting until that many are free. False once closed.
  bool take(std::span<uint32_t> out) {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return closed_ || free_.size() >= out.size(); });
    if (closed_) return false;
    for (uint32_t& i : out) {
      i = free_.back();
      free_.pop_back();
    }
    return true;
  }
  // The same without waiting: false when fewer are free (or closed).
  bool try_take(std::span<uint32_t> out) {
    std::lock_guard lock(mu_);
    if (closed_ || free_.size() < out.size()) return false;
    for (uint32_t& i : out) {
      i = free_.back();
      free_.pop_back();
    }
    return true;
  }
  void give(std::span<const uint32_t> indices) {
    if (indices.empty()) return;
    {
      std::lock_guard lock(mu_);
      free_.insert(free_.end(), indices.begin(), indices.end());
    }
    cv_.notify_all();
  }
  void close() {
    {
      std::lock_guard lock(mu_);
      closed_ = true;
    }
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<uint32_t> free_;
  bool closed_ = false;
};

}  // namespace virtiofs::mount
