// One virtqueue as the session drives it: its ring, request slots, buffer chunks and the calls
// parked for room, all under one lock. The hiprio queue extends it (hiprio_queue.hpp).
//
// Lock rule: `mu_` guards every member below it; methods named *_locked are called with it held.
// The one exception is a slot whose owner is SlotOwner::kReaper: the thread that took its used
// element reads its reply without the lock and is the only one that releases it (release_locked),
// so a failure on another thread (fail_locked) never frees or completes it under that thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <system_error>
#include <vector>

#include "fs/chunk_pool.hpp"
#include "fs/counters.hpp"
#include "fs/request_stager.hpp"
#include "fs/wait_list.hpp"
#include "virtio/split_ring.hpp"
#include "virtio/transport.hpp"

namespace virtiofs::fs {

// Slots, chunks and ring carved for one queue (device_memory.hpp).
struct QueueMemory {
  virtio::RingMemory ring;
  std::vector<Slot> slots;
  ChunkPool chunks;
};

class RequestQueue {
 public:
  static constexpr unsigned kReapBatch = 64;

  RequestQueue(unsigned index, QueueMemory memory, uint16_t size, bool event_idx, bool indirect,
               const RequestStager& stager, virtio::Transport& transport, SessionCounters& counters);
  virtual ~RequestQueue() = default;
  RequestQueue(const RequestQueue&) = delete;
  RequestQueue& operator=(const RequestQueue&) = delete;

  unsigned index() const { return index_; }
  const virtio::RingMemory& ring_memory() const { return ring_memory_; }
  uint16_t size() const { return ring_.size(); }
  size_t slot_count() const { return slots_.size(); }

  // Starts the call, or parks it behind earlier ones until completions make room (never
  // sleep-and-retry). Ends it on this thread (on_done) when the queue failed or the call can
  // never be staged. Kicks the device when it asks for it.
  void submit(Call& call);
  // A call parked for room ends with EINTR at once (true, on this thread); otherwise the unique
  // of the request the device holds for it, or 0 when it is not (or no longer) there.
  bool cancel_parked(Call& call);
  uint64_t unique_with_device(const Call& call);
  // The owner no longer wants the call's reply: a parked call, or one the device holds whose
  // payloads all lie in queue memory, ends with EINTR at once (true, on this thread); the
  // device's reply is dropped when it comes and only then is the slot free. False when the
  // call is not this queue's to end: done, being completed, or using app memory in place (the
  // device may read or write that until it answers, so the owner waits for the reply).
  bool abandon(Call& call);
  // Where the replies of abandoned calls go (their slots are free again), on the reaping
  // thread with no lock held. Set before the queue starts.
  void set_dropped_sink(std::function<void(const DroppedReply&)> sink) { dropped_sink_ = std::move(sink); }
  // The device holds a request with this unique (one the session numbered).
  bool holds(uint64_t unique);

  struct Reaped {
    size_t n = 0;          // used elements taken
    bool broken = false;   // the device broke the protocol: the caller fails the session
    bool more = false;     // more may be waiting: reap again
  };
  // One batch: takes used elements (their slots become this thread's), copies and validates
  // their replies unlocked, releases the slots, starts parked calls, kicks. The finished calls
  // go to `done` for the caller to complete after this returns. Before it returns, interrupts
  // are back on (and re-checked) unless a poller holds them off.
  Reaped reap(std::vector<Call*>& done);
  bool has_used();

  // A thread polling this queue for its reply keeps the device's interrupts off while it does;
  // the last one out turns them back on and returns true when used elements are already there.
  void enter_polling();
  bool leave_polling();

  // Marks the queue failed with ec (the first error stays) and moves every call the device
  // holds and every parked call into `done`, with that error.
  void fail(std::error_code ec, std::vector<Call*>& done);
  std::error_code failure();
  // No request with the device and none parked.
  bool idle();

 protected:
  // Under mu_: the hiprio queue's own pending work, run whenever room may have appeared.
  virtual void on_room_locked() {}
  virtual void on_fail_locked() {}
  enum class Start { kStarted, kWait, kFailed };
  Start try_start_locked(Call& call);
  bool publish_locked();
  void kick() { transport_.notify(index_); }

  const unsigned index_;
  const RequestStager& stager_;
  virtio::Transport& transport_;
  SessionCounters& counters_;

  std::mutex mu_;
  std::error_code failed_;  // set once: every later call fails with it

 private:
  void release_locked(uint32_t slot_index, std::vector<Call*>& done);
  void admit_parked_locked(std::vector<Call*>& done);

  virtio::RingMemory ring_memory_;
  virtio::SplitRing ring_;
  std::vector<Slot> slots_;
  std::vector<uint32_t> free_slots_;
  ChunkPool chunks_;
  WaitList parked_;
  uint32_t in_flight_ = 0;  // slots not free
  uint32_t seq_ = 0;
  unsigned pollers_ = 0;    // threads polling for their reply with interrupts off
  std::function<void(const DroppedReply&)> dropped_sink_;  // set before start, then only read
};

}  // namespace virtiofs::fs
