// How a waiting caller (and, with a fixed poll_us, a completion thread) spins on a queue before
// it sleeps: the fixed spin of poll_us = N, and adaptive polling's learned one (spin_learner.hpp).
#include <sched.h>

#include <chrono>

#include "fs/call_ending.hpp"
#include "fs/caller_batch.hpp"
#include "fs/completion.hpp"

namespace virtiofs::fs {

using detail::PollingRole;

uint64_t Completion::now_ns() const {
  if (clock_) return clock_();
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

bool Completion::poll_used(RequestQueue& q) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::microseconds(poll_us_);
  for (unsigned spin = 0;; ++spin) {
    if (q.has_used()) return true;
    if ((spin & 63) == 63 && (q.failure() || std::chrono::steady_clock::now() >= deadline))
      return false;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();  // let the sibling hyperthread run while we spin
#endif
  }
}

Completion::Spin Completion::reap_own(RequestQueue& q, SyncCall& call, std::vector<Call*>& done,
                                      uint64_t deadline_ns, unsigned check_mask, bool taken) {
  PollingRole role(q, taken);
  // Done while spinning: a reply found only after the deadline (below, or by a thread that
  // was descheduled past it) does not count, so that a loaded machine does not teach a spin.
  // Nor does one another thread reaped: this spin did not take it.
  Spin result = Spin::kMiss;
  for (unsigned spin = 1;; ++spin) {
    if (call.done.load(std::memory_order_acquire)) {
      if (result == Spin::kMiss) result = Spin::kOther;
      break;
    }
    if ((spin & check_mask) == 0 && (q.failure() || now_ns() >= deadline_ns)) break;
    if (!q.has_used()) {
      // Give the CPU to whatever else is runnable here (the device's threads, on a small
      // machine): a waiting caller must not delay the reply it waits for.
      sched_yield();
      continue;
    }
    const bool ok = reap_all(q, done, /*polled=*/true);
    end_wake_ups(done);
    if (!ok) break;  // the session failed
    if (call.done.load(std::memory_order_acquire)) result = Spin::kHit;
  }
  // The last poller out turns interrupts back on; what arrived while they were off would not
  // be signalled, so it is reaped here, as the completion thread would have (without polling
  // on: this caller's reply is in, or its polling time is up). Only then do the callbacks that
  // may block run: no one else's reply waits on them unsignalled.
  if (role.leave()) drain(q, done, /*may_poll=*/false);
  complete(done);
  return q.failure() ? Spin::kOther : result;
}

void Completion::end_wake_ups(std::vector<Call*>& done) {
  // While the polling role is held (interrupts off) only calls that merely wake a thread end;
  // a callback that blocks would leave every other reply on the queue unsignalled and unreaped
  // until it returns. The rest stay in `done`, in order, for after the role is left.
  hand_over(done);
  size_t kept = 0;
  bool ended = false;
  for (Call* c : done) {
    if (c->never_blocks) {
      end_call(*c);
      ended = true;
    } else {
      done[kept++] = c;
    }
  }
  done.resize(kept);
  if (ended) progress_();
}

void Completion::wait_adaptive(RequestQueue& q, Source& source, SyncCall& call,
                               std::vector<Call*>& done, bool taken) {
  // One clock read here and one at the end per wait (vDSO, no syscall), more while spinning.
  SpinLearner& learner = *learners_[q.index()];
  const uint64_t start = now_ns();
  const uint32_t budget = std::exchange(call.budgeted, false) ? call.budget_ns : learner.budget();
  // The clock is read every turn: a turn is a sched_yield, which costs far more.
  const Spin spin = budget > 0 ? reap_own(q, call, done, start + budget, 0, taken) : Spin::kMiss;
  const bool hit = spin == Spin::kHit;
  if (spin != Spin::kHit) {
    if (budget > 0 && spin == Spin::kMiss) SessionCounters::add(counters_.spin_misses);
    // Missed (or backed off): sleep on the interrupt itself, one wake-up for the reply, not on
    // the call behind a completion thread's wake-up; where no thread reaps, on the source.
    // Another caller may lead already: then the condition variable (call.wait) it is.
    if (!source.threaded) {
      wait_reading(source, call, done);
    } else if (source.alone) {
      wait_as_leader(source, call, done);
    }
    call.wait();
  }
  // Reaped by another thread or failed: the round trip is a sample, not a hit or a miss.
  learner.record(now_ns() - start, budget > 0 && spin != Spin::kOther, hit);
}

}  // namespace virtiofs::fs
