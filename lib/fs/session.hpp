// The virtio-fs session: hiprio + N request queues over a Transport, request slots in device
// memory, completion-driven backpressure, FORGET batching, completion dispatch on an io_uring
// reactor thread, and the failure of every pending request when the device breaks or is lost.
#pragma once

#include <linux/fuse.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "fs/call.hpp"
#include "fs/chunk_pool.hpp"
#include "loop/reactor.hpp"
#include "virtio/dma_region.hpp"
#include "virtio/split_ring.hpp"
#include "virtio/transport.hpp"
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
  // own reply this long before it sleeps (0: interrupt-driven only).
  unsigned poll_us = 0;
};

struct SessionStats {
  uint64_t requests = 0;
  uint64_t notifications = 0;  // kicks actually sent
  uint64_t forgets = 0;        // FORGET entries handed to the device
  uint64_t waits = 0;          // requests that waited for ring or buffer space
  uint64_t interrupts = 0;     // completion eventfd wake-ups handled
  uint64_t polled = 0;         // completions found by busy-polling, with no interrupt
  uint64_t interrupts_sent = 0;  // FUSE_INTERRUPTs handed to the device
  uint64_t zero_copy_bytes = 0;  // payload bytes that went to or came from app memory as is
  uint64_t callers_woken = 0;    // blocking calls whose thread the device's interrupt woke itself
};

// Request queues to use when `requested` (0: all the device offers, at most kMaxAutoQueues):
// checked against the device's config, else against the queues the transport counts. Throws
// std::system_error(EINVAL) naming both numbers.
inline constexpr unsigned kMaxAutoQueues = 16;
unsigned request_queue_count(unsigned requested, virtio::Transport& transport,
                             const virtio::DeviceConfig& config);

class Session {
 public:
  // Negotiates features, builds the rings in one shared region, starts the queues and the
  // completion thread. Throws std::system_error with a readable message.
  Session(std::unique_ptr<virtio::Transport> transport, const SessionOptions& options);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // FUSE_INIT with the device, offering `flags` at protocol 7.`minor`; must come before any
  // other request. The FUSE bridge calls it when the kernel's INIT arrives, so that all three
  // agree. Throws on refusal.
  void init(uint64_t flags, uint32_t max_readahead, uint32_t minor = FUSE_KERNEL_MINOR_VERSION);

  // Queues the call on a request queue. on_done runs on the completion thread, or on this
  // thread at once when the session has already failed.
  void submit(Call& call);
  // The same on the high-priority queue (INTERRUPT).
  void submit_hiprio(Call& call);
  // Waits for a submitted SyncCall. With poll_us, this thread first polls the call's queue for
  // up to poll_us with the device's interrupts off and completes what it finds itself: at
  // queue depth 1 the reply is taken with no eventfd and no hand-off between threads. Without,
  // it sleeps on the queue's interrupt itself when no other caller does. Either way it may
  // complete other calls of its queue (their on_done runs on this thread).
  void wait(SyncCall& call);
  // Asks the device to abandon a submitted call (FUSE_INTERRUPT on hiprio). The call still ends
  // through on_done: with EINTR, or with its real result when the device answered first. A
  // call still waiting for ring space ends with EINTR at once, on this thread. The caller keeps
  // `call` alive until on_done has run, as for submit.
  void interrupt(Call& call);
  // Drops nlookup references to inode: gathered for up to a millisecond, sent in batches on
  // hiprio, never lost while the device lives.
  void forget(Inode inode, uint64_t nlookup);
  // The owner found a reply malformed past what the session checks (e.g. directory entries):
  // the device can no longer be trusted, so everything fails with EIO from now on.
  void device_misbehaved();
  // Sends DESTROY, waits (bounded) for in-flight requests, stops the queues. Idempotent.
  void shutdown();

  // Runs once, on whichever thread notices, when the device is lost or breaks (not on shutdown).
  void set_failure_handler(std::function<void(std::error_code)> handler);

  const Negotiated& negotiated() const { return negotiated_; }
  // Largest payload one request may carry: what the rings and buffers allow, then INIT.
  uint32_t max_transfer() const { return max_transfer_; }
  // The owner's part of device memory (SessionOptions::staging_bytes, page aligned).
  std::span<std::byte> staging() const { return staging_; }
  // The application's part of device memory (SessionOptions::app_memory_bytes).
  std::span<std::byte> app_memory() const { return app_memory_; }
  SessionStats stats() const;
  unsigned num_request_queues() const { return static_cast<unsigned>(queues_.size() - 1); }
  // Why the session failed (empty while healthy).
  std::error_code failure() const;

 private:
  struct Piece {
    std::byte* ptr;
    uint32_t len;
  };
  static constexpr unsigned kMaxSegments = 40;
  struct Slot {
    std::byte* in_area;
    std::byte* out_area;
    virtio::IndirectTable indirect;
    Call* call = nullptr;
    uint64_t unique = 0;
    uint16_t chunk_count = 0;
    uint16_t out_piece_count = 0;
    std::array<uint32_t, kMaxSegments> chunks{};
    std::array<Piece, kMaxSegments> out_pieces{};
  };
  struct Queue {
    unsigned index = 0;
    std::mutex mu;
    virtio::RingMemory ring_memory;
    std::unique_ptr<virtio::SplitRing> ring;
    std::vector<Slot> slots;
    std::vector<uint32_t> free_slots;
    ChunkPool chunks;
    Call* wait_head = nullptr;
    Call* wait_tail = nullptr;
    std::error_code failed;  // set once: every later call fails with it
    uint32_t in_flight = 0;
    uint32_t seq = 0;
    // hiprio only: FORGETs and INTERRUPTs not yet handed to the device, and the session-owned
    // calls that carry them (never reported to anyone; recycled on completion).
    std::deque<fuse_forget_one> forgets;
    // FORGETs wait up to kForgetDelay (or until a batch is full) so that a stream of them goes
    // as a few BATCH_FORGETs rather than a request and a kick each; then they are due.
    bool forgets_due = false;
    bool forget_timer_armed = false;
    std::deque<uint64_t> interrupts;
    std::vector<Call> hiprio_calls;
    std::vector<uint32_t> free_hiprio_calls;
    unsigned pollers = 0;  // threads in wait() polling for their own reply, interrupts off
    // A thread in wait() sleeps on this queue's call eventfd and reads its counter; the
    // completion thread leaves the counter to it (interrupt-driven mode, at most one).
    std::atomic<bool> interrupt_leader{false};
    // Its call eventfd is its alone (not a shared MSI-X vector or INTx): a caller that sleeps on
    // it and takes a signal there takes no other queue's.
    bool call_fd_alone = false;
  };
  enum class Start { kStarted, kWait, kFailed };
  // One completion thread and its io_uring reactor; it owns the queues whose call fds it watches.
  struct Completer {
    std::unique_ptr<loop::Reactor> reactor;
    std::thread thread;
    std::vector<Call*> done;  // its batch of calls to complete, reserved up front
  };
  struct Reaped {
    size_t n;     // used entries taken
    bool broken;  // the queue failed (now or before)
    bool idle;    // nothing came and interrupts are back on (or a poller will turn them on)
  };

  void build_queues(uint64_t device_features);
  Queue& pick_queue();
  void submit_to(Queue& q, Call& call);
  // Describes a caller-staged message without copying; false if a buffer lies outside memory_.
  bool stage_raw(Slot& slot, const RawMessage& raw, std::span<virtio::Segment> segs, unsigned& n);
  // Under q.mu: stage the call into a slot and add it to the ring.
  Start try_start(Queue& q, Call& call);
  // Under q.mu: start waiting calls and pending forgets while there is room.
  void admit_waiting(Queue& q, std::vector<Call*>& done);
  // Under hiprio's lock: hand pending INTERRUPTs, then due FORGET batches, to the device while
  // there is room; what does not fit stays queued, never dropped.
  void flush_hiprio(Queue& q);
  // Under hiprio's lock: makes the pending FORGETs due and hands them on.
  void forgets_now(Queue& q);
  // The same, taking the lock and kicking: the gathering's timer fired, or shutdown.
  void send_forgets();
  // Busy-polls q's used ring for up to poll_us; true when something arrived.
  bool poll_used(Queue& q);
  // Under q.mu: publish and decide whether to notify (the notify itself is done unlocked).
  bool publish(Queue& q);
  // One batch: take used entries, finish their calls into `done` and complete them, start
  // waiting calls. With may_sleep, an empty batch turns interrupts back on.
  Reaped reap(Queue& q, std::vector<Call*>& done, bool may_sleep);
  // The completion thread's handler: reaps until the queue is idle.
  void on_call_event(Queue& q, std::vector<Call*>& done);
  // wait()'s poll: reaps q on the caller's thread until `call` is done or poll_us passed.
  // Both reap into `done`, the calling thread's batch for completions of other calls.
  void reap_own(Queue& q, SyncCall& call, std::vector<Call*>& done);
  // wait() without poll_us: the caller sleeps on q's call eventfd itself and reaps when the
  // device signals, so the interrupt wakes the thread that wants the reply, not the completion
  // thread that would wake it in turn (one cross-CPU wake-up fewer). One such caller per queue;
  // others sleep on their call's condition variable. Only for a queue whose call fd is its own:
  // a signal the caller consumes must not be one that another queue (or an INTx re-arm) needed.
  void wait_on_interrupt(Queue& q, SyncCall& call, std::vector<Call*>& done);
  // Copies and validates the reply of a completed slot into its Call (device memory is read
  // once). Returns true when the reply is malformed: the device can no longer be trusted.
  bool finish_slot(Slot& slot, uint32_t used_len);
  void notify_drained();
  void release_slot(Queue& q, uint32_t index, std::vector<Call*>& done);
  // Marks every queue failed with ec and completes all pending calls with it.
  void fail_all(std::error_code ec);
  void fail_queue(Queue& q, std::error_code ec, std::vector<Call*>& out);
  void complete(std::vector<Call*>& calls);
  void run_sync(Call& call);

  SessionOptions options_;
  std::unique_ptr<virtio::Transport> transport_;
  std::unique_ptr<virtio::DmaRegion> memory_;
  std::vector<std::unique_ptr<Queue>> queues_;  // [0] = hiprio
  Negotiated negotiated_{};
  bool initialized_ = false;
  std::span<std::byte> staging_;
  std::span<std::byte> app_memory_;
  std::mutex failure_mu_;
  std::function<void(std::error_code)> failure_handler_;
  bool failure_reported_ = false;
  uint32_t max_transfer_ = 0;
  // Fires kForgetDelay after the first FORGET of a gathering (watched by the hiprio thread).
  struct TimerFd {
    int fd = -1;
    ~TimerFd();
  } forget_timer_;
  std::vector<Completer> completers_;
  std::atomic<bool> shut_down_{false};
  std::atomic<bool> quiescing_{false};  // shutdown() began: completions wake its waits
  bool destroyed_ = false;              // under hiprio's lock: DESTROY is on its way
  std::mutex drain_mu_;
  std::condition_variable drained_;
  std::atomic<uint64_t> stat_requests_{0}, stat_notifications_{0}, stat_forgets_{0}, stat_waits_{0},
      stat_interrupts_{0}, stat_polled_{0}, stat_interrupts_sent_{0}, stat_zero_copy_{0},
      stat_callers_woken_{0};
};

}  // namespace virtiofs::fs
