// The RELEASEs File::close sends without waiting for them (the kernel's FUSE does not wait on
// /dev/fuse mounts either): counted, so that Client::close waits for them — and for the FORGETs their
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
  std::chrono::milliseconds timeout() const { return timeout_; }
  // Until `deadline` (Client::close's one bound, shared with the session's shutdown): a device
  // that never answers fails anyway, and the shutdown then ends the calls.
  void wait_until(std::chrono::steady_clock::time_point deadline) {
    std::unique_lock lock(mu_);
    none_left_.wait_until(lock, deadline, [&] { return pending_ == 0; });
  }

 private:
  bool app_reaps_ = false;
  std::chrono::milliseconds timeout_{5000};
  std::mutex mu_;  // guards pending_
  std::condition_variable none_left_;
  size_t pending_ = 0;
};

}  // namespace virtiofs::client
