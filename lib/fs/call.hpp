// One FUSE request as the session carries it: the frame to send, the reply that came back, and
// how to tell the owner. The owner keeps the Call (and every buffer its frame references) alive
// until on_done runs; the session never allocates one.
#pragma once

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <system_error>
#include <thread>

#include "fuse/frame.hpp"

namespace virtiofs::fs {

// A piece of the session's shared memory (see Session::staging()).
struct DeviceBuffer {
  std::byte* data = nullptr;
  uint32_t len = 0;
};

// A whole FUSE message its owner already staged in device memory (the FUSE bridge reads
// /dev/fuse straight into it): sent as is, nothing copied in. The reply stays in `out`; only its
// header is copied out and validated.
struct RawMessage {
  std::span<const DeviceBuffer> in;   // the request, fuse_in_header first
  std::span<const DeviceBuffer> out;  // room for the reply, fuse_out_header first; empty: no reply
  uint64_t unique = 0;                // the staged header's unique, read before the device saw it
  bool reply_optional = false;        // the device may hand it back with nothing written (INTERRUPT)
};

// The reply to a call its owner gave up on (Session::abandon), handed to the owner's handler so
// that what the reply gave out (a lookup reference, an open file) can be given back.
struct DroppedReply {
  uint32_t opcode = 0;
  uint64_t nodeid = 0;  // the request's node
  fuse::Reply reply;    // header and fixed args only: variable data is not kept
};

struct Call {
  fuse::Frame frame;
  const RawMessage* raw = nullptr;  // set: send this instead of building from `frame`
  fuse::Reply reply;
  std::error_code ec;  // empty, the device's errno, or the session's (EIO broken, ENOTCONN lost)
  void (*on_done)(Call&) = nullptr;
  // on_done only wakes a thread (or recycles the call) and never blocks: it may run inside
  // another callback that waits (call_ending.hpp). Whoever sets on_done sets this with it (a
  // SyncCall whose on_done is replaced must clear it).
  bool never_blocks = false;
  // Once sent, the call may be given up before its reply (Session::abandon). False where a late
  // reply would leave something the owner cannot give back (a lock granted, directory entries
  // each holding a reference): a stop then waits for the device's answer.
  bool abandonable = true;
  // Set by Session::abandon when it ended the call while the device still held its request:
  // the device may still carry it out, and its reply (error or not) reaches the dropped-reply
  // handler, unless the session fails first. Cleared at submit.
  bool left_with_device = false;

  // Session-private: the waiting-list link while the ring or buffers are full, and where the
  // call went (for interrupt()).
  Call* next_waiting = nullptr;
  uint32_t queue_index = 0;
  uint32_t slot_index = 0;
};

// A Call a thread blocks on. The waiter may destroy it as soon as wait() returns, so the
// completer signals under the mutex and touches nothing after unlocking (POSIX allows destroying
// a mutex right after another thread's unlock; an atomic notify after the store would not be safe).
// A waiter that sleeps in poll() on the device's interrupt instead of on the condition variable
// names an eventfd (set_waker): a completion taken by another thread is signalled there.
struct SyncCall : Call {
  std::mutex mu;
  std::condition_variable cv;
  std::atomic<bool> done{false};  // atomic: a polling waiter reads it without the mutex
  int waker_fd = -1;              // under mu
  std::thread::id waiter;         // under mu: the thread behind waker_fd
  // Session::submit_for_wait, read by the waiter's wait() on the same thread: the polling role
  // of this request queue (0: none) was taken before the kick; adaptive: the learner's budget.
  uint32_t polling_queue = 0;
  bool budgeted = false;
  uint32_t budget_ns = 0;
  SyncCall() {
    never_blocks = true;
    on_done = [](Call& c) {
      auto& s = static_cast<SyncCall&>(c);
      std::lock_guard lock(s.mu);
      s.done.store(true, std::memory_order_release);
      if (s.waker_fd < 0) {
        s.cv.notify_one();
      } else if (s.waiter != std::this_thread::get_id()) {
        const uint64_t one = 1;
        [[maybe_unused]] ssize_t n = ::write(s.waker_fd, &one, sizeof(one));
      }
    };
  }
  // From now on (until clear_waker) a completion by another thread writes `fd`. False when the
  // call is already done.
  bool set_waker(int fd) {
    std::lock_guard lock(mu);
    if (done.load(std::memory_order_relaxed)) return false;
    waker_fd = fd;
    waiter = std::this_thread::get_id();
    return true;
  }
  void clear_waker() {
    std::lock_guard lock(mu);
    waker_fd = -1;
  }
  void wait() {
    std::unique_lock lock(mu);
    cv.wait(lock, [this] { return done.load(std::memory_order_relaxed); });
  }
  // False when the deadline passed first.
  bool wait_until(std::chrono::steady_clock::time_point deadline) {
    std::unique_lock lock(mu);
    return cv.wait_until(lock, deadline, [this] { return done.load(std::memory_order_relaxed); });
  }
};

}  // namespace virtiofs::fs
