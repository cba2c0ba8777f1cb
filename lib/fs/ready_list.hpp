// Calls handed over to the application (SessionOptions::app_reaps_completions): asynchronous
// calls of its queues that some other thread reaped (a blocking caller reaping for itself, the
// library's thread on an interrupt shared with hiprio, a failure), kept for the application's
// next Session::process_completions. An eventfd is set exactly while the list is not empty, so
// the application's poll sees the hand-over.
//
// Lock rule: mu_ guards the list, closed_ and the eventfd's count (written and read only under
// it: the count is nonzero exactly when the list is not empty). `nonempty_` mirrors the list for
// a lock-free "anything?" on the application's path.
#pragma once

#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <mutex>
#include <system_error>

#include "fs/call.hpp"

namespace virtiofs::fs {

class ReadyList {
 public:
  ReadyList() : fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    if (fd_ < 0)
      throw std::system_error(errno, std::system_category(), "eventfd for handed-over completions");
  }
  ~ReadyList() { close(fd_); }
  ReadyList(const ReadyList&) = delete;
  ReadyList& operator=(const ReadyList&) = delete;

  // Readable while calls wait here.
  int fd() const { return fd_; }
  // Appends the call (linked through next_waiting: it is out of every queue by now). False once
  // closed: the caller ends the call itself.
  bool push(Call& call) {
    std::lock_guard lock(mu_);
    if (closed_) return false;
    call.next_waiting = nullptr;
    *tail_ = &call;
    tail_ = &call.next_waiting;
    if (!nonempty_.load(std::memory_order_relaxed)) {
      nonempty_.store(true, std::memory_order_release);
      const uint64_t one = 1;
      [[maybe_unused]] ssize_t n = write(fd_, &one, sizeof(one));
    }
    return true;
  }
  // Takes every call, oldest first (a list through next_waiting), and clears the fd.
  Call* take_all() {
    if (!nonempty_.load(std::memory_order_acquire)) return nullptr;
    std::lock_guard lock(mu_);
    return take_locked();
  }
  // From now on push refuses; returns what was left.
  Call* close_and_take() {
    std::lock_guard lock(mu_);
    closed_ = true;
    return take_locked();
  }

 private:
  Call* take_locked() {
    Call* head = head_;
    head_ = nullptr;
    tail_ = &head_;
    if (nonempty_.exchange(false, std::memory_order_acq_rel)) {
      uint64_t count;
      [[maybe_unused]] ssize_t n = read(fd_, &count, sizeof(count));
    }
    return head;
  }

  std::mutex mu_;
  Call* head_ = nullptr;
  Call** tail_ = &head_;
  bool closed_ = false;
  std::atomic<bool> nonempty_{false};
  int fd_;
};

}  // namespace virtiofs::fs
