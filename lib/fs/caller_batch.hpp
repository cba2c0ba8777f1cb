// Per-thread state of the threads that reap for others outside a completion thread (callers
// in Completion::wait, the owner's pollers): the batch they complete from and the queue whose
// polling role they hold (PollingRole). Internal to lib/fs/completion*.cpp.
#pragma once

#include <utility>
#include <vector>

#include "fs/call.hpp"
#include "fs/request_queue.hpp"

namespace virtiofs::fs::detail {

// Calls a thread reaps for others, completed from there: reserved once per thread.
struct CallerBatch {
  std::vector<Call*> calls;
  bool in_use = false;
  CallerBatch() { calls.reserve(2 * RequestQueue::kReapBatch); }
};
inline thread_local CallerBatch caller_batch;

// The queue whose polling role this thread holds (at most one: a wait inside a callback hands
// it back first, see Completion::wait).
inline thread_local RequestQueue* held_polling = nullptr;

// The thread's batch for a scope; a callback run from that batch that reaps again (a nested
// wait or poll) gets a batch of its own.
class BatchScope {
 public:
  BatchScope() : outer_(!std::exchange(caller_batch.in_use, true)) {}
  ~BatchScope() {
    if (outer_) caller_batch.in_use = false;
  }
  BatchScope(const BatchScope&) = delete;
  BatchScope& operator=(const BatchScope&) = delete;
  std::vector<Call*>& calls() { return outer_ ? caller_batch.calls : nested_; }

 private:
  bool outer_;
  std::vector<Call*> nested_;
};

// Holds q's polling role for a scope: the device's interrupts stay off while this thread reaps
// q itself. A callback that waits meanwhile lends the role back (Completion::wait).
class PollingRole {
 public:
  // taken: this thread entered polling already (Completion::before_submit); the role adopts it.
  explicit PollingRole(RequestQueue& q, bool taken = false)
      : q_(q), outer_(std::exchange(held_polling, &q)) {
    if (!taken) q_.enter_polling();
  }
  ~PollingRole() { leave(); }
  PollingRole(const PollingRole&) = delete;
  PollingRole& operator=(const PollingRole&) = delete;
  // True when used elements came while interrupts were off (the caller reaps them).
  bool leave() {
    if (!held_) return false;
    held_ = false;
    held_polling = outer_;
    return q_.leave_polling();
  }

 private:
  RequestQueue& q_;
  RequestQueue* outer_;
  bool held_ = true;
};

}  // namespace virtiofs::fs::detail
