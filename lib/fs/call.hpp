// One FUSE request as the session carries it: the frame to send, the reply that came back, and
// how to tell the owner. The owner keeps the Call (and every buffer its frame references) alive
// until on_done runs; the session never allocates one.
#pragma once

#include <atomic>
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

// A Call a thread blocks on.
struct SyncCall : Call {
  std::atomic<bool> done{false};
  SyncCall() {
    on_done = [](Call& c) {
      auto& s = static_cast<SyncCall&>(c);
      s.done.store(true, std::memory_order_release);
      s.done.notify_one();
    };
  }
  void wait() { done.wait(false, std::memory_order_acquire); }
};

}  // namespace virtiofs::fs
