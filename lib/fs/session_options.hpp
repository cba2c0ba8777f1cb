// What a Session is built with, and what it reports.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

#include "virtiofs/types.hpp"

namespace virtiofs::fs {

// SessionOptions::poll_us: learn how long to spin (virtiofs::kAdaptivePolling).
inline constexpr unsigned kAdaptivePolling = ~0u;

struct SessionOptions {
  uint16_t queue_size = 128;
  unsigned num_request_queues = 1;
  unsigned max_in_flight = 256;       // request slots per queue (capped at queue_size)
  uint32_t max_transfer = 1u << 20;   // payload bytes per READ/WRITE, before INIT clamps it
  size_t chunk_bytes = 64 * 1024;
  uint32_t chunks_per_queue = 64;     // buffer memory per queue = chunks * chunk_bytes
  size_t staging_bytes = 0;           // device memory handed to the owner for RawMessages
  // Device memory for the application's own I/O buffers: payloads that lie in it go to the
  // device as they are (no copy), as libblkio's memory regions.
  size_t app_memory_bytes = 0;
  // How a blocking caller waits (virtiofs::Options::poll_us says the same for the public API):
  // - kAdaptivePolling: it spins on its queue (interrupts off) for a time learned from recent
  //   round trips (spin_learner.hpp), then sleeps on the queue's interrupt itself; completion
  //   threads never spin (asynchronous calls stay interrupt-driven);
  // - 0: interrupt-driven only;
  // - N: after the last completion, a completion thread keeps polling the used ring N us before
  //   it re-enables interrupts and sleeps on the eventfd, and a thread waiting in wait() polls
  //   for its own reply N us before it sleeps on its condition variable.
  // With app_reaps_completions it concerns blocking calls only (process_completions never
  // spins): a blocking caller polls its queue (N us, or the learned time), then sleeps on the
  // queue's call eventfd. 0 here (the FUSE bridge's polled readers do their own polling);
  // Client's Options default to kAdaptivePolling.
  unsigned poll_us = 0;
  // Adaptive polling's internals, for tests: the absolute cap on a spin, and the clock it reads
  // (null: steady_clock; else a function returning nanoseconds).
  unsigned spin_cap_us = 200;
  uint64_t (*spin_clock_ns)() = nullptr;
  // The application reaps the request queues on its own thread (Session::completion_fd and
  // process_completions, for an event loop): no completion thread is made for them, and
  // asynchronous calls complete inside process_completions (completion.hpp says exactly when
  // else). The high-priority queue and the session's own watches keep their internal thread.
  bool app_reaps_completions = false;
  // How long INIT, DESTROY and the drain at shutdown may take before the device counts as
  // failed (ETIMEDOUT): every wait has an end.
  std::chrono::milliseconds device_timeout{5000};
};

// One set of counters for the session and the public Client (virtiofs/types.hpp).
using SessionStats = virtiofs::Stats;

}  // namespace virtiofs::fs
