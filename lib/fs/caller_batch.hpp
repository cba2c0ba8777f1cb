// Per-thread state of the threads that reap for others outside a completion thread (callers
// in Completion::wait, the owner's pollers): the batch they complete from and the queue whose
// polling role they hold. Internal to lib/fs/completion*.cpp.
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

}  // namespace virtiofs::fs::detail
