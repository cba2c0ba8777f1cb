#include "fs/request_queue.hpp"

#include <array>
#include <string>

#include "fs/call_ending.hpp"
#include "log/log.hpp"

namespace virtiofs::fs {

RequestQueue::RequestQueue(unsigned index, QueueMemory memory, uint16_t size, bool event_idx,
                           bool indirect, const RequestStager& stager, virtio::Transport& transport,
                           SessionCounters& counters)
    : index_(index), stager_(stager), transport_(transport), counters_(counters),
      ring_memory_(memory.ring), ring_(size, memory.ring, event_idx, indirect),
      slots_(std::move(memory.slots)), chunks_(std::move(memory.chunks)) {
  free_slots_.reserve(slots_.size());
  for (size_t s = slots_.size(); s > 0; --s) free_slots_.push_back(static_cast<uint32_t>(s - 1));
}

RequestQueue::Start RequestQueue::try_start_locked(Call& call) {
  StagePlan plan;
  if (auto ec = stager_.plan(call, chunks_, plan)) {
    call.ec = ec;
    return Start::kFailed;
  }
  if (free_slots_.empty() || plan.chunks > chunks_.available() ||
      ring_.descriptors_needed(plan.segments, true) > ring_.num_free())
    return Start::kWait;
  const uint32_t slot_index = free_slots_.back();
  Slot& slot = slots_[slot_index];
  uint64_t unique = call.raw ? call.raw->unique : 0;
  if (!call.raw) {
    if (++seq_ == 0) seq_ = 1;
    unique = (uint64_t{seq_} << 32) | (uint64_t{index_} << 16) | slot_index;
  }
  std::array<virtio::Segment, kMaxSegments> segs;
  uint64_t zero_copy = 0;
  const unsigned n = stager_.stage(slot, call, plan, unique, chunks_, segs, zero_copy);
  if (auto ec = ring_.add(std::span(segs.data(), n), slot_index, &slot.indirect)) {
    for (uint16_t i = 0; i < slot.chunk_count; ++i) chunks_.give(slot.chunks[i]);
    slot.chunk_count = 0;
    call.ec = ec;
    return Start::kFailed;
  }
  free_slots_.pop_back();
  slot.owner = SlotOwner::kDevice;
  slot.call = &call;
  slot.direct = call.raw || plan.direct_in || plan.direct_out;
  slot.direct_reply = plan.direct_out;
  call.slot_index = slot_index;
  ++in_flight_;
  if (zero_copy) SessionCounters::add(counters_.zero_copy_bytes, zero_copy);
  return Start::kStarted;
}

bool RequestQueue::publish_locked() {
  if (!ring_.kick_prepare()) return false;
  SessionCounters::add(counters_.notifications);
  return true;
}

void RequestQueue::submit(Call& call) {
  call.queue_index = index_;
  call.left_with_device = false;
  bool kick_now = false;
  // Once the call is on the ring it belongs to whoever reaps it: decide here, under the lock,
  // whether this thread must end it, and never read the call after unlocking.
  bool end_here = false;
  {
    std::lock_guard lock(mu_);
    if (failed_) {
      call.ec = failed_;
      end_here = true;
    } else {
      SessionCounters::add(counters_.requests);
      const Start r = parked_.empty() ? try_start_locked(call) : Start::kWait;
      if (r == Start::kWait) {
        SessionCounters::add(counters_.waits);
        parked_.push_back(call);
      } else if (r == Start::kStarted) {
        kick_now = publish_locked();
      } else {
        end_here = true;
      }
    }
  }
  if (kick_now) kick();
  if (end_here) end_call(call);
}

bool RequestQueue::cancel_parked(Call& call) {
  {
    std::lock_guard lock(mu_);
    if (failed_ || !parked_.remove(call)) return false;
    call.ec = std::make_error_code(std::errc::interrupted);
  }
  end_call(call);
  return true;
}

bool RequestQueue::abandon(Call& call) {
  {
    std::lock_guard lock(mu_);
    if (failed_) return false;
    if (!parked_.remove(call)) {
      if (!call.abandonable || call.slot_index >= slots_.size()) return false;
      Slot& slot = slots_[call.slot_index];
      if (slot.owner != SlotOwner::kDevice || slot.call != &call || slot.direct) return false;
      slot.call = nullptr;
      slot.dropped_opcode = call.frame.opcode;
      slot.dropped_out_args_len = call.frame.out_args_len;
      slot.dropped_nodeid = call.frame.nodeid;
      call.left_with_device = true;
      SessionCounters::add(counters_.abandoned);
    }
    call.ec = std::make_error_code(std::errc::interrupted);
  }
  end_call(call);
  return true;
}

uint64_t RequestQueue::unique_with_device(const Call& call) {
  std::lock_guard lock(mu_);
  if (failed_ || call.slot_index >= slots_.size()) return 0;
  const Slot& slot = slots_[call.slot_index];
  return slot.owner == SlotOwner::kDevice && slot.call == &call ? slot.unique : 0;
}

bool RequestQueue::holds(uint64_t unique) {
  std::lock_guard lock(mu_);
  const uint32_t slot_index = unique & 0xffff;
  return !failed_ && slot_index < slots_.size() && slots_[slot_index].owner == SlotOwner::kDevice &&
         slots_[slot_index].unique == unique;
}

void RequestQueue::release_locked(uint32_t slot_index, std::vector<Call*>& done) {
  Slot& slot = slots_[slot_index];
  for (uint16_t i = 0; i < slot.chunk_count; ++i) chunks_.give(slot.chunks[i]);
  slot.chunk_count = 0;
  if (slot.call) done.push_back(slot.call);
  slot.call = nullptr;
  slot.owner = SlotOwner::kFree;
  free_slots_.push_back(slot_index);
  --in_flight_;
}

void RequestQueue::admit_parked_locked(std::vector<Call*>& done) {
  while (Call* c = parked_.front()) {
    const Start r = try_start_locked(*c);
    if (r == Start::kWait) break;
    parked_.pop_front();
    if (r == Start::kFailed) done.push_back(c);
  }
  on_room_locked();
}

RequestQueue::Reaped RequestQueue::reap(std::vector<Call*>& done) {
  std::array<virtio::UsedElement, kReapBatch> used;
  std::error_code ring_ec;
  size_t n = 0;
  std::string broke;  // logged after unlocking: a log sink may call back into the session
  {
    std::lock_guard lock(mu_);
    if (failed_) return {};
    ring_.disable_interrupts();
    const bool was_broken = ring_.broken();
    n = ring_.collect_used(used, ring_ec);
    for (size_t i = 0; i < n; ++i) slots_[used[i].token].owner = SlotOwner::kReaper;
    if (!was_broken && ring_.broken()) broke = ring_.broken_why();
  }
  if (!broke.empty())
    log::error("the device broke the protocol on queue %u: %s", index_, broke.c_str());
  // These slots are this thread's alone until released: copy the replies out unlocked.
  bool malformed = false;
  std::vector<DroppedReply> dropped;  // rare: only calls given up on
  for (size_t i = 0; i < n; ++i) {
    Slot& slot = slots_[used[i].token];
    if (slot.call) {
      malformed |= RequestStager::copy_reply(slot, *slot.call, used[i].len);
      if (slot.direct_reply && !slot.call->ec)
        SessionCounters::add(counters_.zero_copy_bytes, slot.call->reply.data_len);
    } else {
      malformed |= RequestStager::take_dropped_reply(slot, used[i].len, dropped.emplace_back());
    }
  }
  Reaped r{n, ring_ec || malformed, n == used.size()};
  bool kick_now = false;
  {
    std::lock_guard lock(mu_);
    for (size_t i = 0; i < n; ++i) release_locked(used[i].token, done);
    if (!r.broken && !failed_) {
      admit_parked_locked(done);
      kick_now = publish_locked();
      // Interrupts go back on (and the ring is re-checked) unless a poller holds them off: it
      // reaps what comes, and the last one out turns them on.
      if (pollers_ == 0) {
        r.more |= ring_.enable_interrupts();
      } else {
        r.more |= ring_.has_used();
      }
    }
  }
  if (kick_now) kick();
  if (!dropped.empty()) SessionCounters::add(counters_.replies_dropped, dropped.size());
  if (!r.broken && dropped_sink_)
    for (const DroppedReply& d : dropped) dropped_sink_(d);
  return r;
}

bool RequestQueue::has_used() {
  std::lock_guard lock(mu_);
  return !failed_ && ring_.has_used();
}

void RequestQueue::enter_polling() {
  std::lock_guard lock(mu_);
  if (++pollers_ == 1 && !failed_) ring_.disable_interrupts();
}

bool RequestQueue::leave_polling() {
  std::lock_guard lock(mu_);
  return --pollers_ == 0 && !failed_ && ring_.enable_interrupts();
}

void RequestQueue::fail(std::error_code ec, std::vector<Call*>& done) {
  std::lock_guard lock(mu_);
  if (!failed_) failed_ = ec;
  for (uint32_t i = 0; i < slots_.size(); ++i) {
    Slot& slot = slots_[i];
    if (slot.owner != SlotOwner::kDevice) continue;  // free, or a reaper's to release
    if (slot.call) slot.call->ec = failed_;
    release_locked(i, done);
  }
  while (Call* c = parked_.pop_front()) {
    c->ec = failed_;
    done.push_back(c);
  }
  on_fail_locked();
}

std::error_code RequestQueue::failure() {
  std::lock_guard lock(mu_);
  return failed_;
}

bool RequestQueue::idle() {
  std::lock_guard lock(mu_);
  return in_flight_ == 0 && parked_.empty();
}

}  // namespace virtiofs::fs
