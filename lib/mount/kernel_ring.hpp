// FUSE over io_uring (Linux 6.14+, fuse module parameter enable_uring): the kernel hands each
// request to a ring entry of the CPU it was made on, and takes the reply back together with the
// fetch of the next request, in one io_uring command, instead of read(2) and write(2) on
// /dev/fuse. The entries live in the session's device memory, so a request goes to the device
// from where the kernel wrote it and a READ's data lands where the kernel takes it from: no copy
// either way. FORGET and INTERRUPT still come through /dev/fuse reads (the kernel sends them
// there), so the bridge's readers keep running beside the ring.
#pragma once

#include <liburing.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <thread>
#include <vector>

#include "fs/session.hpp"
#include "mount/in_flight.hpp"

namespace virtiofs::mount {

class KernelRing {
 public:
  // Per entry, beside its payload buffer: the kernel's request header, a spare for a small
  // request payload, and room for a small reply.
  static constexpr uint32_t kHeadBytes = 16384;

  // The kernel makes one queue per possible CPU and serves none until every one has an entry.
  static unsigned kernel_queue_count();
  // Device memory for `depth` entries on every kernel queue, each with `payload_bytes` of payload.
  static size_t memory_bytes(unsigned depth, uint32_t payload_bytes);

  // Sets up one io_uring per kernel queue on clones of `fuse_fd`. Throws std::system_error when
  // io_uring cannot be used here; nothing is registered yet, so the caller may still decline
  // FUSE over io_uring in its INIT reply.
  // poll_us (BridgeOptions::poll_us): a queue thread polls its CQ and its session queue's used
  // ring this long after the last request or reply before it sleeps.
  KernelRing(fs::Session& session, int fuse_fd, std::span<std::byte> memory, unsigned depth,
             uint32_t payload_bytes, InFlight& in_flight, bool debug, unsigned poll_us = 0);
  ~KernelRing();
  KernelRing(const KernelRing&) = delete;
  KernelRing& operator=(const KernelRing&) = delete;

  // Once the kernel took an INIT reply with FUSE over io_uring: each queue's thread registers its
  // entries and serves. `max_payload` bounds READ-like replies, as on the read path.
  void start(uint32_t max_payload);
  // Stops the queue threads. Replies still coming from the device are committed until the
  // ring is destroyed (after the bridge saw every request finish).
  void stop();
  // Requests that arrived through the ring.
  uint64_t requests() const { return requests_.load(std::memory_order_relaxed); }

 private:
  struct Entry;
  struct Queue;

  void serve(Queue& q);
  // poll_us: spins until the CQ has something (running the kernel's pending work for this
  // thread, which brings requests in) and reaps the session's replies meanwhile; past poll_us
  // of nothing, lets go of the poller and sleeps in io_uring_wait_cqe.
  int wait_polled(Queue& q, std::optional<fs::Session::Poller>& poller);
  void handle(Entry& e);
  void answer(Entry& e, int error);  // a reply from the bridge itself: header only
  void send(Entry& e, uint32_t command);
  static void on_reply(fs::Call& call);

  fs::Session& session_;
  InFlight& in_flight_;
  uint32_t payload_bytes_;
  uint32_t max_payload_ = 0;
  bool debug_;
  unsigned poll_us_;
  std::vector<std::unique_ptr<Queue>> queues_;
  std::atomic<uint64_t> requests_{0};
  std::atomic<bool> refused_said_{false};
};

}  // namespace virtiofs::mount
