// Adaptive polling (SessionOptions::poll_us = kAdaptivePolling): how long a blocking caller
// spins on its queue for its reply before it sleeps on the interrupt, learned per request queue
// from recent round trips, as Linux's hybrid io_uring polling and NAPI busy-poll do:
// - the budget is twice the median of the last kSamples round trips (wait entered -> reply
//   seen), at most the cap (200 us unless SessionOptions::spin_cap_us says otherwise) and at
//   least kFloorNs; with no sample yet, the cap (the first waits learn);
// - a spin that ends without its reply is a miss; kMissesToBackOff misses in a row back off:
//   the next waits sleep at once without spinning, 1 of them, then after a probe (a wait that
//   spins again) that misses too 2, 4, ... up to kMaxSkip; a probe that takes its reply ends
//   the back-off. Waits that do not spin still give samples (their reply came to a sleeper),
//   so the median follows a device that got slow or fast again, and the probe uses it.
//
// Shared state: any thread waiting on the queue calls budget() and record(); every field is an
// atomic read and written relaxed. Nothing else is published through them, and two threads
// racing may lose a sample or a back-off step, which only makes the next budget slightly off:
// a heuristic, never a correctness matter (the caller sleeps on the interrupt whatever the
// budget says). No lock, no allocation, no syscall.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <limits>

namespace virtiofs::fs {

class alignas(64) SpinLearner {
 public:
  static constexpr unsigned kSamples = 16;
  static constexpr unsigned kMissesToBackOff = 2;
  static constexpr uint32_t kMaxSkip = 64;
  // A budget is at least this (unless the cap is less): a spin looks at least once or twice.
  static constexpr uint32_t kFloorNs = 1000;

  explicit SpinLearner(uint32_t cap_ns) : cap_ns_(cap_ns), budget_ns_(cap_ns) {}

  // The spin for the next wait, in ns; 0: sleep at once (backed off).
  uint32_t budget() {
    uint32_t skip = skip_.load(std::memory_order_relaxed);
    while (skip > 0)
      if (skip_.compare_exchange_weak(skip, skip - 1, std::memory_order_relaxed)) return 0;
    return budget_ns_.load(std::memory_order_relaxed);
  }

  // A wait ended: its reply came rtt_ns after the wait began; spun: budget() was not 0; hit:
  // the spin took it (no sleep).
  void record(uint64_t rtt_ns, bool spun, bool hit) {
    const uint32_t sample =
        static_cast<uint32_t>(std::min<uint64_t>(rtt_ns, std::numeric_limits<uint32_t>::max()));
    const uint32_t at = next_.fetch_add(1, std::memory_order_relaxed);
    samples_[at % kSamples].store(sample, std::memory_order_relaxed);
    budget_ns_.store(learned_budget(std::min<uint32_t>(at, kSamples - 1) + 1), std::memory_order_relaxed);
    if (!spun) return;
    if (hit) {
      misses_.store(0, std::memory_order_relaxed);
      skip_len_.store(0, std::memory_order_relaxed);
      return;
    }
    if (misses_.fetch_add(1, std::memory_order_relaxed) + 1 < kMissesToBackOff) return;
    // Back off; the probe after it backs off again, twice as long, at its first miss.
    misses_.store(kMissesToBackOff - 1, std::memory_order_relaxed);
    const uint32_t len = std::clamp<uint32_t>(2 * skip_len_.load(std::memory_order_relaxed), 1, kMaxSkip);
    skip_len_.store(len, std::memory_order_relaxed);
    skip_.store(len, std::memory_order_relaxed);
  }

  uint32_t cap_ns() const { return cap_ns_; }

 private:
  uint32_t learned_budget(uint32_t n) const {
    std::array<uint32_t, kSamples> s;
    for (uint32_t i = 0; i < n; ++i) s[i] = samples_[i].load(std::memory_order_relaxed);
    std::nth_element(s.begin(), s.begin() + n / 2, s.begin() + n);
    const uint64_t twice = 2 * uint64_t{s[n / 2]};
    return static_cast<uint32_t>(std::clamp<uint64_t>(twice, std::min(kFloorNs, cap_ns_), cap_ns_));
  }

  const uint32_t cap_ns_;
  std::array<std::atomic<uint32_t>, kSamples> samples_{};
  std::atomic<uint32_t> next_{0};       // samples recorded (the ring's next slot, mod kSamples)
  std::atomic<uint32_t> budget_ns_;     // 2 x the median, capped: what budget() gives
  std::atomic<uint32_t> misses_{0};     // spins in a row that missed
  std::atomic<uint32_t> skip_{0};       // waits left to sleep at once
  std::atomic<uint32_t> skip_len_{0};   // the current back-off's length (doubles per failed probe)
};

}  // namespace virtiofs::fs
