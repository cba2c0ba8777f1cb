// The RELEASEs File::close sends without waiting for them (close(2) does not wait for the
// kernel's either): counted, so that Client::close waits for them — and for the FORGETs their
// replies send — before the session's DESTROY, after which the device holds no handle or node.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <mutex>

namespace virtiofs::client {

class FileReleases {
 public:
  // Set at connect. Where the application reaps completions, a reply's callback runs only when
  // it reaps: File::close then waits for its RELEASE, as nobody may reap at Client::close.
  void configure(bool app_reaps, std::chrono::milliseconds device_timeout) {
    app_reaps_ = app_reaps;
    timeout_ = device_timeout;
  }
  bool may_leave_pending() const { return !app_reaps_; }

  void started() {
    std::lock_guard lock(mu_);
    ++pending_;
  }
  // The release's callback, last thing it does with the client.
  void finished() {
    std::lock_guard lock(mu_);
    if (--pending_ == 0) none_left_.notify_all();
  }
  // Bounded by the device timeout: a device that never answers fails anyway, and the session's
  // shutdown then ends the calls.
  void wait_all() {
    std::unique_lock lock(mu_);
    none_left_.wait_for(lock, timeout_, [&] { return pending_ == 0; });
  }

 private:
  bool app_reaps_ = false;
  std::chrono::milliseconds timeout_{5000};
  std::mutex mu_;  // guards pending_
  std::condition_variable none_left_;
  size_t pending_ = 0;
};

}  // namespace virtiofs::client
