// The session's statistics, counted by every part with relaxed atomics (nothing is ordered by
// them) and read as one SessionStats.
#pragma once

#include <atomic>
#include <cstdint>

#include "fs/session_options.hpp"

namespace virtiofs::fs {

struct SessionCounters {
  std::atomic<uint64_t> requests{0}, notifications{0}, forgets{0}, waits{0}, interrupts{0},
      polled{0}, interrupts_sent{0}, zero_copy_bytes{0}, callers_woken{0};

  static void add(std::atomic<uint64_t>& counter, uint64_t n = 1) {
    counter.fetch_add(n, std::memory_order_relaxed);
  }
  SessionStats snapshot() const {
    return SessionStats{requests.load(),        notifications.load(),   forgets.load(),
                        waits.load(),           interrupts.load(),      polled.load(),
                        interrupts_sent.load(), zero_copy_bytes.load(), callers_woken.load()};
  }
};

}  // namespace virtiofs::fs
