// The high-priority queue: FORGETs gathered and coalesced per inode, INTERRUPTs (resent while
// the device answers EAGAIN), carried by calls the queue owns and recycles, and the timer that
// ends a gathering. Lock rule as RequestQueue's: mu_ guards everything here.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <unordered_map>
#include <vector>

#include "fs/request_queue.hpp"

namespace virtiofs::fs {

class HiprioQueue final : public RequestQueue {
 public:
  // How long a FORGET waits for others to share its BATCH_FORGET, and how often an INTERRUPT
  // the device could not match yet (EAGAIN) is sent again, at that pace.
  static constexpr unsigned kGatherMicros = 1000;
  static constexpr unsigned kMaxInterruptResends = 50;

  HiprioQueue(QueueMemory memory, uint16_t size, bool event_idx, bool indirect,
              const RequestStager& stager, virtio::Transport& transport, SessionCounters& counters);
  ~HiprioQueue() override;

  // Drops nlookup references: summed per inode (memory bounded by the inodes held), gathered
  // until the timer or a full batch, then sent; never lost while the device lives. Dropped once
  // DESTROY is on its way, since the device then holds no inodes.
  void forget(uint64_t inode, uint64_t nlookup);
  // Asks the device to abandon the request with this unique.
  void interrupt(uint64_t unique);
  // The gathering's timer fired, or shutdown: what is pending goes now.
  void flush_now();
  // The gathering's timer (the session watches it on this queue's completion thread).
  int timer_fd() const { return timer_fd_; }
  // No FORGET pending and nothing with the device.
  bool settled();
  void mark_destroyed();
  // Tells whether the device still holds the request an INTERRUPT is about (set before use).
  void set_outstanding_check(std::function<bool(uint64_t unique)> check) {
    outstanding_ = std::move(check);
  }

 private:
  struct HiprioCall : Call {
    HiprioQueue* owner = nullptr;
    uint32_t index = 0;
    uint64_t target = 0;  // INTERRUPT: the request it is about
    unsigned resends = 0;
  };
  struct PendingInterrupt {
    uint64_t unique;
    unsigned resends;
  };
  static void on_call_done(Call& call);
  void on_room_locked() override;
  void on_fail_locked() override;
  // Hands pending INTERRUPTs, then due FORGET batches, to the ring while there is room; what
  // does not fit stays pending, never dropped.
  void flush_locked();
  HiprioCall* take_call_locked();
  void arm_timer_locked();

  std::vector<HiprioCall> calls_;
  std::vector<uint32_t> free_calls_;
  std::unordered_map<uint64_t, uint64_t> forgets_;  // inode -> nlookup not yet sent
  bool forgets_due_ = false;
  bool timer_armed_ = false;
  bool destroyed_ = false;
  std::deque<PendingInterrupt> interrupts_;  // to send now
  std::deque<PendingInterrupt> retries_;     // answered EAGAIN: sent again when the timer fires
  int timer_fd_ = -1;
  std::function<bool(uint64_t)> outstanding_;
};

}  // namespace virtiofs::fs
