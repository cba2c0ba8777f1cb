#include "fs/hiprio_queue.hpp"

#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>

#include "virtio/setup_error.hpp"

namespace virtiofs::fs {

namespace {
constexpr size_t kForgetBatch =
    (kInInline - sizeof(fuse_in_header) - sizeof(fuse_batch_forget_in)) / sizeof(fuse_forget_one);
}  // namespace

HiprioQueue::HiprioQueue(QueueMemory memory, uint16_t size, bool event_idx, bool indirect,
                         const RequestStager& stager, virtio::Transport& transport,
                         SessionCounters& counters)
    : RequestQueue(0, std::move(memory), size, event_idx, indirect, stager, transport, counters),
      calls_(slot_count()) {
  for (uint32_t i = 0; i < calls_.size(); ++i) {
    calls_[i].owner = this;
    calls_[i].index = i;
    calls_[i].on_done = on_call_done;
    calls_[i].never_blocks = true;
    free_calls_.push_back(i);
  }
  timer_fd_ = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  if (timer_fd_ < 0) virtiofs::fail(errno, "timerfd_create");
}

HiprioQueue::~HiprioQueue() {
  if (timer_fd_ >= 0) close(timer_fd_);
}

HiprioQueue::HiprioCall* HiprioQueue::take_call_locked() {
  if (free_calls_.empty()) return nullptr;
  HiprioCall& c = calls_[free_calls_.back()];
  c.frame = fuse::Frame{};
  c.raw = nullptr;
  // An INTERRUPT handed back with nothing written leaves ec as it was: not a stale EAGAIN.
  c.ec = {};
  c.reply = {};
  return &c;
}

void HiprioQueue::arm_timer_locked() {
  if (timer_armed_) return;
  const itimerspec delay{{}, {0, long{kGatherMicros} * 1000}};
  timer_armed_ = timerfd_settime(timer_fd_, 0, &delay, nullptr) == 0;
  // Should the timer fail, what it would have sent goes now rather than never.
  if (!timer_armed_) {
    for (auto& r : retries_) interrupts_.push_back(r);
    retries_.clear();
    forgets_due_ = !forgets_.empty();
  }
}

void HiprioQueue::flush_locked() {
  while (!interrupts_.empty()) {
    HiprioCall* c = take_call_locked();
    if (!c) return;
    const PendingInterrupt p = interrupts_.front();
    c->frame.opcode = FUSE_INTERRUPT;
    c->frame.set_args(fuse_interrupt_in{p.unique});
    // Room for an answer: the device says EAGAIN when the request has not reached it yet.
    c->frame.reply_optional = true;
    c->target = p.unique;
    c->resends = p.resends;
    if (try_start_locked(*c) != Start::kStarted) return;  // full: stays pending
    free_calls_.pop_back();
    interrupts_.pop_front();
    SessionCounters::add(counters_.interrupts_sent);
  }
  while (forgets_due_ && !forgets_.empty()) {
    HiprioCall* c = take_call_locked();
    if (!c) return;
    std::array<fuse_forget_one, kForgetBatch> batch;
    size_t count = 0;
    for (auto it = forgets_.begin(); it != forgets_.end() && count < kForgetBatch; ++it)
      batch[count++] = fuse_forget_one{it->first, it->second};
    c->frame.opcode = FUSE_BATCH_FORGET;
    c->frame.expects_reply = false;
    c->frame.set_args(fuse_batch_forget_in{static_cast<uint32_t>(count), 0});
    c->frame.add_in(std::as_bytes(std::span(batch.data(), count)));
    if (try_start_locked(*c) != Start::kStarted) return;  // full: stays pending, never dropped
    free_calls_.pop_back();
    for (size_t i = 0; i < count; ++i) forgets_.erase(batch[i].nodeid);
    SessionCounters::add(counters_.forgets, count);
  }
  if (forgets_.empty()) forgets_due_ = false;
}

void HiprioQueue::forget(uint64_t inode, uint64_t nlookup) {
  if (nlookup == 0) return;
  bool kick_now = false;
  {
    std::lock_guard lock(mu_);
    if (failed_ || destroyed_) return;
    forgets_[inode] += nlookup;
    if (forgets_.size() >= kForgetBatch) forgets_due_ = true;
    if (!forgets_due_) arm_timer_locked();
    if (forgets_due_) {
      flush_locked();
      kick_now = publish_locked();
    }
  }
  if (kick_now) kick();
}

void HiprioQueue::interrupt(uint64_t unique) {
  bool kick_now = false;
  {
    std::lock_guard lock(mu_);
    if (failed_) return;
    interrupts_.push_back({unique, 0});
    flush_locked();
    kick_now = publish_locked();
  }
  if (kick_now) kick();
}

void HiprioQueue::flush_now() {
  bool kick_now = false;
  {
    std::lock_guard lock(mu_);
    timer_armed_ = false;  // a later FORGET or retry arms it again
    if (failed_) return;
    for (auto& r : retries_) interrupts_.push_back(r);
    retries_.clear();
    forgets_due_ = !forgets_.empty();
    flush_locked();
    kick_now = publish_locked();
  }
  if (kick_now) kick();
}

void HiprioQueue::on_call_done(Call& call) {
  auto& c = static_cast<HiprioCall&>(call);
  HiprioQueue& q = *c.owner;
  // Asked before taking this queue's lock: the check takes the request's queue lock. Only
  // uniques the session numbered can be checked; a raw call's (the kernel's) is never resent.
  // A retry is not checked again when the timer sends it: at most one INTERRUPT too many.
  const bool again = c.frame.opcode == FUSE_INTERRUPT &&
                     c.ec == std::errc::resource_unavailable_try_again &&
                     c.resends < kMaxInterruptResends && q.outstanding_ && q.outstanding_(c.target);
  bool kick_now = false;
  {
    std::lock_guard lock(q.mu_);
    if (!q.failed_ && again) {
      q.retries_.push_back({c.target, c.resends + 1});
      q.arm_timer_locked();
    }
    q.free_calls_.push_back(c.index);
    if (!q.failed_) {
      q.flush_locked();  // a pending INTERRUPT or FORGET may have waited for this call
      kick_now = q.publish_locked();
    }
  }
  if (kick_now) q.kick();
}

void HiprioQueue::on_room_locked() { flush_locked(); }

void HiprioQueue::on_fail_locked() {
  forgets_.clear();
  interrupts_.clear();
  retries_.clear();
}

bool HiprioQueue::settled() {
  {
    std::lock_guard lock(mu_);
    if (failed_) return true;
    if (!forgets_.empty()) return false;
  }
  return idle();
}

void HiprioQueue::mark_destroyed() {
  std::lock_guard lock(mu_);
  destroyed_ = true;
  forgets_.clear();
}

}  // namespace virtiofs::fs
