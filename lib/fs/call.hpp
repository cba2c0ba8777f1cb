// One FUSE request as the session carries it: the frame to send, the reply that came back, and
// how to tell the owner. The owner keeps the Call (and every buffer its frame references) alive
// until on_done runs; the session never allocates one.
#pragma once

#include <condition_variable>
#include <mutex>
#include <system_error>

#include "fuse/frame.hpp"

namespace virtiofs::fs {

struct Call {
  fuse::Frame frame;
  fuse::Reply reply;
  std::error_code ec;  // empty, the device's errno, or the session's (EIO broken, ENOTCONN lost)
  void (*on_done)(Call&) = nullptr;

  // Session-private: the waiting-list link while the ring or buffers are full.
  Call* next_waiting = nullptr;
};

// A Call a thread blocks on. The waiter may destroy it as soon as wait() returns, so the
// completer signals under the mutex and touches nothing after unlocking (POSIX allows destroying
// a mutex right after another thread's unlock; an atomic notify after the store would not be safe).
struct SyncCall : Call {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  SyncCall() {
    on_done = [](Call& c) {
      auto& s = static_cast<SyncCall&>(c);
      std::lock_guard lock(s.mu);
      s.done = true;
      s.cv.notify_one();
    };
  }
  void wait() {
    std::unique_lock lock(mu);
    cv.wait(lock, [this] { return done; });
  }
};

}  // namespace virtiofs::fs
