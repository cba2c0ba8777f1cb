// The session's statistics, counted by every part with relaxed atomics (nothing is ordered by
// them) and read as one SessionStats.
#pragma once

#include <atomic>
#include <cstdint>

#include "fs/session_options.hpp"

namespace virtiofs::fs {

struct SessionCounters {
  std::atomic<uint64_t> requests{0}, notifications{0}, forgets{0}, waits{0}, interrupts{0},
      polled{0}, interrupts_sent{0}, zero_copy_bytes{0}, callers_woken{0}, abandoned{0}, replies_dropped{0},
      spin_misses{0};

  static void add(std::atomic<uint64_t>& counter, uint64_t n = 1) {
    counter.fetch_add(n, std::memory_order_relaxed);
  }
  SessionStats snapshot() const {
    SessionStats s;
    s.requests = requests.load(std::memory_order_relaxed);
    s.notifications = notifications.load(std::memory_order_relaxed);
    s.forgets = forgets.load(std::memory_order_relaxed);
    s.waits = waits.load(std::memory_order_relaxed);
    s.interrupts = interrupts.load(std::memory_order_relaxed);
    s.polled = polled.load(std::memory_order_relaxed);
    s.interrupts_sent = interrupts_sent.load(std::memory_order_relaxed);
    s.zero_copy_bytes = zero_copy_bytes.load(std::memory_order_relaxed);
    s.callers_woken = callers_woken.load(std::memory_order_relaxed);
    s.abandoned = abandoned.load(std::memory_order_relaxed);
    s.replies_dropped = replies_dropped.load(std::memory_order_relaxed);
    s.spin_misses = spin_misses.load(std::memory_order_relaxed);
    return s;
  }
};

}  // namespace virtiofs::fs
