// The spin of a polling thread (polled readers, io_uring queue threads): poll_us from the last
// request or reply, then it sleeps. One loop for both, so they cannot drift apart.
#pragma once

#include <sched.h>

#include <chrono>

namespace virtiofs::mount {

class SpinBudget {
 public:
  explicit SpinBudget(unsigned poll_us) : budget_(poll_us) { renew(); }
  // A request or reply came: still busy.
  void renew() { deadline_ = Clock::now() + budget_; }
  // A spin that found nothing: true once poll_us passed since the last renew (the clock is read
  // every 64 spins: it costs more than a spin); otherwise it yields the CPU first, as whatever
  // else is runnable here (the device's threads, the caller, on a small machine) must not wait
  // behind a spinning thread for the request or reply that thread waits for.
  bool spent() {
    if ((++spins_ & 63) == 0 && Clock::now() >= deadline_) return true;
    sched_yield();
    return false;
  }

 private:
  using Clock = std::chrono::steady_clock;
  std::chrono::microseconds budget_;
  Clock::time_point deadline_;
  unsigned spins_ = 0;
};

}  // namespace virtiofs::mount
