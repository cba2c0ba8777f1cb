// What a Session is built with, and what it reports.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

#include "virtiofs/types.hpp"

namespace virtiofs::fs {

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
  // After the last completion, a completion thread keeps polling the used ring this long before
  // it re-enables interrupts and sleeps on the eventfd; a thread waiting in wait() polls for its
  // own reply this long before it sleeps (0: interrupt-driven only). With app_reaps_completions
  // it concerns blocking calls only (process_completions never spins): a blocking caller polls
  // its queue this long, then sleeps on the queue's call eventfd.
  unsigned poll_us = 0;
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
