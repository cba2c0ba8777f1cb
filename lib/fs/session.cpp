#include "fs/session.hpp"

#include <poll.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <system_error>

#include "virtio/setup_error.hpp"
#include "fuse/init.hpp"
#include "fuse/ops.hpp"
#include "virtio/features.hpp"

namespace virtiofs::fs {

namespace {

// Per-slot inline areas: every request's headers, names and link targets fit here, so a typical
// request is two descriptors. Larger payloads spill into chunks.
constexpr size_t kInInline = 8192;
constexpr size_t kOutInline = 8192;
constexpr unsigned kCompletionBatch = 64;
constexpr auto kDrainTimeout = std::chrono::seconds(5);
constexpr size_t kForgetBatch =
    (kInInline - sizeof(fuse_in_header) - sizeof(fuse_batch_forget_in)) / sizeof(fuse_forget_one);
// How long a FORGET may wait for others to share its BATCH_FORGET. A program that looks up and
// drops one inode at a time would otherwise pay a hiprio request and a kick for each.
constexpr auto kForgetDelay = std::chrono::milliseconds(1);


struct Credentials {
  uint32_t uid, gid, pid;
};
const Credentials& credentials() {
  // Read once: the device acts with these on the caller's behalf.
  static const Credentials c{static_cast<uint32_t>(geteuid()), static_cast<uint32_t>(getegid()),
                             static_cast<uint32_t>(getpid())};
  return c;
}

// Writes a byte stream into a first inline buffer, then into pool chunks, recording segments.
class StreamWriter {
 public:
  StreamWriter(const virtio::DmaRegion& mem, ChunkPool& pool, uint32_t* chunks, uint16_t& chunk_count,
               virtio::Segment* segs, unsigned& nsegs, bool writable)
      : mem_(mem), pool_(pool), chunks_(chunks), chunk_count_(chunk_count), segs_(segs),
        nsegs_(nsegs), writable_(writable) {}

  void start(std::byte* first, size_t cap) {
    cur_ = first;
    cap_ = cap;
    len_ = 0;
  }
  void append(std::span<const std::byte> bytes) {
    while (!bytes.empty()) {
      if (len_ == cap_) next_chunk(pool_.chunk_bytes());
      size_t n = std::min(bytes.size(), cap_ - len_);
      std::memcpy(cur_ + len_, bytes.data(), n);
      len_ += n;
      bytes = bytes.subspan(n);
    }
  }
  // Reserves `bytes` of writable space without writing them.
  template <class PieceFn>
  void reserve(size_t bytes, PieceFn&& on_piece) {
    while (bytes > 0) {
      if (len_ == cap_) next_chunk(pool_.chunk_bytes());
      size_t n = std::min(bytes, cap_ - len_);
      on_piece(cur_ + len_, n);
      len_ += n;
      bytes -= n;
    }
  }
  void finish() {
    if (len_ > 0) segs_[nsegs_++] = {mem_.device_addr(cur_), static_cast<uint32_t>(len_), writable_};
  }

 private:
  void next_chunk(size_t cap) {
    finish();
    uint32_t c = pool_.take();
    chunks_[chunk_count_++] = c;
    cur_ = pool_.at(c);
    cap_ = cap;
    len_ = 0;
  }
  const virtio::DmaRegion& mem_;
  ChunkPool& pool_;
  uint32_t* chunks_;
  uint16_t& chunk_count_;
  virtio::Segment* segs_;
  unsigned& nsegs_;
  bool writable_;
  std::byte* cur_ = nullptr;
  size_t cap_ = 0, len_ = 0;
};

}  // namespace

unsigned request_queue_count(unsigned requested, virtio::Transport& transport,
                             const virtio::DeviceConfig& config) {
  std::optional<unsigned> offered = config.num_request_queues;
  if (!offered)
    if (auto total = transport.max_queues(); total && *total > 1) offered = *total - 1;
  if (requested == 0) return std::clamp(offered.value_or(1), 1u, kMaxAutoQueues);
  if (offered && requested > *offered)
    fail(EINVAL, "device has " + std::to_string(*offered) + " request queue(s), " +
                     std::to_string(requested) + " asked for");
  return requested;
}

Session::Session(std::unique_ptr<virtio::Transport> transport, const SessionOptions& options)
    : options_(options), transport_(std::move(transport)) {
  if (!virtio::is_valid_queue_size(options_.queue_size) || options_.queue_size < 2)
    fail(EINVAL, "queue size " + std::to_string(options_.queue_size) +
                     " is not a power of two between 2 and 32768");
  if (options_.num_request_queues == 0) fail(EINVAL, "at least one request queue is needed");
  if (options_.chunk_bytes < 4096 || options_.chunks_per_queue == 0)
    fail(EINVAL, "buffer chunks must be at least 4 KiB and there must be some");
  build_queues(transport_->device_features());

  // Queues that share an interrupt vector share a call fd: one watch, on one thread, serves
  // them all. Every other fd gets its own completion thread, so each request queue is owned by
  // one thread; hiprio (light traffic) rides on the first request queue's thread.
  std::vector<std::pair<int, std::vector<Queue*>>> by_fd;
  for (auto& q : queues_) {
    const int fd = transport_->call_fd(q->index);
    auto it = std::find_if(by_fd.begin(), by_fd.end(), [fd](auto& e) { return e.first == fd; });
    if (it == by_fd.end()) it = by_fd.insert(by_fd.end(), {fd, {}});
    it->second.push_back(q.get());
  }
  for (auto& [fd, group] : by_fd) group.front()->call_fd_alone = group.size() == 1;
  const bool hiprio_alone = by_fd.size() > 1 && by_fd.front().second.size() == 1;
  completers_.resize(by_fd.size() - (hiprio_alone ? 1 : 0));
  size_t all_slots = 0;
  for (auto& q : queues_) all_slots += q->slots.size();
  for (auto& c : completers_) {
    c.reactor = std::make_unique<loop::Reactor>(64);
    c.done.reserve(all_slots);
  }
  for (size_t g = 0; g < by_fd.size(); ++g) {
    const size_t owner = hiprio_alone ? (g == 0 ? 0 : g - 1) : g;
    const int fd = by_fd[g].first;
    std::vector<Call*>* done = &completers_[owner].done;
    completers_[owner].reactor->watch(fd, POLLIN, [this, fd, done, queues = by_fd[g].second](int) {
      // The poll does not clear the eventfd: read it, or the next poll fires at once; unless a
      // caller sleeps on it (wait_on_interrupt), which must see it set. The multishot poll
      // fires on every write whatever the counter holds.
      const bool led = std::any_of(queues.begin(), queues.end(), [](Queue* qp) {
        return qp->interrupt_leader.load(std::memory_order_acquire);
      });
      uint64_t count;
      if (!led) [[maybe_unused]] ssize_t n = read(fd, &count, sizeof(count));
      stat_interrupts_.fetch_add(1, std::memory_order_relaxed);
      transport_->rearm_interrupt(queues.front()->index);
      for (Queue* qp : queues) on_call_event(*qp, *done);
    });
  }
  forget_timer_.fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  if (forget_timer_.fd < 0) fail(errno, "timerfd_create");
  completers_.front().reactor->watch(forget_timer_.fd, POLLIN, [this](int) {
    uint64_t expirations;
    [[maybe_unused]] ssize_t n = read(forget_timer_.fd, &expirations, sizeof(expirations));
    send_forgets();
  });
  if (const auto live = transport_->liveness(); live.fd >= 0) {
    completers_.front().reactor->watch(
        live.fd, live.events, [this](int) { fail_all(std::make_error_code(std::errc::not_connected)); },
        /*once=*/true);
  }
  for (auto& c : completers_) {
    c.thread = std::thread([this, reactor = c.reactor.get()] {
      try {
        reactor->run();
      } catch (const std::exception&) {
        fail_all(std::make_error_code(std::errc::io_error));
      }
    });
  }
}

void Session::init(uint64_t flags, uint32_t max_readahead, uint32_t minor) {
  SyncCall call;
  call.frame = fuse::make_init(flags, max_readahead, minor);
  run_sync(call);
  if (call.ec) fail(call.ec.value(), "FUSE_INIT failed");
  if (auto ec = fuse::negotiate_init(call.reply, flags, fuse::InitLimits{max_transfer_, 4096},
                                     negotiated_))
    fail(ec.value(), "FUSE_INIT reply not acceptable (unsupported protocol or absurd sizes)");
  max_transfer_ = std::min(negotiated_.max_write, negotiated_.max_read);
  initialized_ = true;
}

Session::~Session() { shutdown(); }

Session::TimerFd::~TimerFd() {
  if (fd >= 0) close(fd);
}

void Session::build_queues(uint64_t device_features) {
  using namespace virtio;
  if (!(device_features & feature::kVersion1))
    fail(EPROTO, "device does not offer VIRTIO_F_VERSION_1 (legacy devices are not supported)");
  const uint64_t features = device_features & kDriverFeatures;
  transport_->set_driver_features(features);
  const bool event_idx = features & feature::kRingEventIdx;
  const bool indirect = features & feature::kRingIndirectDesc;

  const unsigned nqueues = 1 + options_.num_request_queues;
  if (auto max = transport_->max_queues(); max && nqueues > *max)
    fail(EINVAL, "device has " + std::to_string(*max - 1) + " request queue(s), " +
                     std::to_string(options_.num_request_queues) + " asked for");

  const uint16_t size = options_.queue_size;
  const unsigned slots = std::min<unsigned>(options_.max_in_flight, size);
  const unsigned max_segs = std::min<unsigned>(kMaxSegments, indirect ? kMaxSegments : size);
  const size_t data_chunks = std::min<size_t>(max_segs - 2, options_.chunks_per_queue);
  max_transfer_ = static_cast<uint32_t>(
      std::min<size_t>(options_.max_transfer, data_chunks * options_.chunk_bytes));
  max_transfer_ = std::max<uint32_t>(max_transfer_ & ~4095u, 4096);

  const size_t ring_bytes = desc_table_bytes(size) + avail_ring_bytes(size) +
                            used_ring_bytes(size) + 3 * 64;
  const size_t slot_bytes = kInInline + kOutInline + kMaxSegments * sizeof(Desc) + 3 * 64;
  const size_t per_queue = ring_bytes + slots * slot_bytes +
                           options_.chunks_per_queue * options_.chunk_bytes + 4096;
  const size_t staging = (options_.staging_bytes + 4095) & ~size_t{4095};
  const size_t app_bytes = (options_.app_memory_bytes + 4095) & ~size_t{4095};
  memory_ = transport_->allocate_memory(per_queue * nqueues + staging + app_bytes + 4096,
                                        "virtiofs-rings");
  if (staging) staging_ = std::span(memory_->carve(staging, 4096), staging);
  if (app_bytes) app_memory_ = std::span(memory_->carve(app_bytes, 4096), app_bytes);

  for (unsigned qi = 0; qi < nqueues; ++qi) {
    auto q = std::make_unique<Queue>();
    q->index = qi;
    RingMemory rm;
    rm.desc = reinterpret_cast<Desc*>(memory_->carve(desc_table_bytes(size), kDescAlign));
    rm.avail = reinterpret_cast<AvailRing*>(memory_->carve(avail_ring_bytes(size), kAvailAlign));
    rm.used = reinterpret_cast<UsedRing*>(memory_->carve(used_ring_bytes(size), 64));
    rm.desc_addr = memory_->device_addr(rm.desc);
    rm.avail_addr = memory_->device_addr(rm.avail);
    rm.used_addr = memory_->device_addr(rm.used);
    q->ring_memory = rm;
    q->ring = std::make_unique<SplitRing>(size, rm, event_idx, indirect);
    q->slots.resize(slots);
    q->free_slots.reserve(slots);
    for (unsigned s = 0; s < slots; ++s) {
      Slot& slot = q->slots[s];
      slot.in_area = memory_->carve(kInInline, 64);
      slot.out_area = memory_->carve(kOutInline, 64);
      auto* table = reinterpret_cast<Desc*>(memory_->carve(kMaxSegments * sizeof(Desc), 64));
      slot.indirect = IndirectTable{table, memory_->device_addr(table), kMaxSegments};
      q->free_slots.push_back(slots - 1 - s);
    }
    q->chunks = ChunkPool(memory_->carve(options_.chunks_per_queue * options_.chunk_bytes, 4096),
                          options_.chunk_bytes, options_.chunks_per_queue);
    if (qi == 0) {
      q->hiprio_calls.resize(slots);
      for (unsigned s = 0; s < slots; ++s) q->free_hiprio_calls.push_back(s);
    }
    queues_.push_back(std::move(q));
  }
  transport_->register_memory(*memory_);
  for (auto& q : queues_) transport_->setup_queue(QueueSetup{q->index, size, q->ring_memory});
  transport_->start();
}


Session::Queue& Session::pick_queue() {
  // Like the Linux driver's per-CPU map: a thread keeps to one request queue, and threads are
  // dealt out in turn so that N submitting threads cover N queues.
  static std::atomic<size_t> next_ticket{0};
  static thread_local const size_t ticket = next_ticket.fetch_add(1, std::memory_order_relaxed);
  return *queues_[1 + ticket % (queues_.size() - 1)];
}

bool Session::stage_raw(Slot& slot, const RawMessage& raw, std::span<virtio::Segment> segs,
                        unsigned& n) {
  for (const DeviceBuffer& b : raw.in) {
    if (!memory_->contiguous(b.data, b.len) || b.len == 0) return false;
    segs[n++] = {memory_->device_addr(b.data), b.len, false};
  }
  for (const DeviceBuffer& b : raw.out) {
    if (!memory_->contiguous(b.data, b.len) || b.len == 0) return false;
    segs[n++] = {memory_->device_addr(b.data), b.len, true};
    slot.out_pieces[slot.out_piece_count++] = Piece{b.data, b.len};
  }
  slot.unique = raw.unique;
  return true;
}

Session::Start Session::try_start(Queue& q, Call& call) {
  if (call.raw) {
    const RawMessage& raw = *call.raw;
    const size_t nsegs = raw.in.size() + raw.out.size();
    if (raw.in.empty() || nsegs > kMaxSegments) {
      call.ec = std::make_error_code(std::errc::invalid_argument);
      return Start::kFailed;
    }
    if (q.free_slots.empty() ||
        q.ring->descriptors_needed(static_cast<unsigned>(nsegs), true) > q.ring->num_free())
      return Start::kWait;
    const uint32_t slot_index = q.free_slots.back();
    Slot& slot = q.slots[slot_index];
    slot.chunk_count = 0;
    slot.out_piece_count = 0;
    std::array<virtio::Segment, kMaxSegments> segs;
    unsigned n = 0;
    std::error_code ec = std::make_error_code(std::errc::bad_address);
    if (stage_raw(slot, raw, segs, n)) ec = q.ring->add(std::span(segs.data(), n), slot_index, &slot.indirect);
    if (ec) {
      call.ec = ec;
      return Start::kFailed;
    }
    q.free_slots.pop_back();
    slot.call = &call;
    call.slot_index = slot_index;
    ++q.in_flight;
    return Start::kStarted;
  }
  const fuse::Frame& f = call.frame;
  // A last payload (WRITE data, READ buffer) that already lies in device memory (the app's
  // registered memory) goes to the device as its own descriptor: no copy either way.
  const std::span<const std::byte> last_in = f.in_count ? f.in[f.in_count - 1] : std::span<const std::byte>{};
  const bool direct_in = !last_in.empty() && memory_->contiguous(last_in.data(), last_in.size());
  const bool direct_out =
      f.expects_reply && !f.out_data.empty() && memory_->contiguous(f.out_data.data(), f.out_data.size());
  const size_t in_bytes = f.in_bytes() - (direct_in ? last_in.size() : 0);
  const size_t out_bytes =
      f.expects_reply
          ? sizeof(fuse_out_header) + f.out_args_len + (direct_out ? 0 : f.out_data.size())
          : 0;
  const uint32_t in_chunks = q.chunks.needed(in_bytes, kInInline);
  const uint32_t out_chunks = q.chunks.needed(out_bytes, kOutInline);
  const unsigned nsegs = 1 + in_chunks + direct_in + (out_bytes ? 1 + out_chunks + direct_out : 0);
  if (q.free_slots.empty() || in_chunks + out_chunks > q.chunks.available() ||
      q.ring->descriptors_needed(nsegs, true) > q.ring->num_free())
    return Start::kWait;

  const uint32_t slot_index = q.free_slots.back();
  q.free_slots.pop_back();
  Slot& slot = q.slots[slot_index];
  slot.chunk_count = 0;
  slot.out_piece_count = 0;
  if (++q.seq == 0) q.seq = 1;
  slot.unique = (uint64_t{q.seq} << 32) | (uint64_t{q.index} << 16) | slot_index;

  const Credentials& cred = credentials();
  fuse_in_header header{};
  header.len = static_cast<uint32_t>(f.in_bytes());
  header.opcode = f.opcode;
  header.unique = slot.unique;
  header.nodeid = f.nodeid;
  header.uid = cred.uid;
  header.gid = cred.gid;
  header.pid = cred.pid;

  std::array<virtio::Segment, kMaxSegments> segs;
  unsigned n = 0;
  StreamWriter in(*memory_, q.chunks, slot.chunks.data(), slot.chunk_count, segs.data(), n, false);
  in.start(slot.in_area, kInInline);
  in.append(std::as_bytes(std::span(&header, 1)));
  in.append(std::span(f.args.data(), f.args_len));
  for (uint32_t i = 0; i + (direct_in ? 1 : 0) < f.in_count; ++i) in.append(f.in[i]);
  in.finish();
  if (direct_in) {
    segs[n++] = {memory_->device_addr(last_in.data()), static_cast<uint32_t>(last_in.size()), false};
    stat_zero_copy_.fetch_add(last_in.size(), std::memory_order_relaxed);
  }
  if (out_bytes) {
    StreamWriter out(*memory_, q.chunks, slot.chunks.data(), slot.chunk_count, segs.data(), n, true);
    out.start(slot.out_area, kOutInline);
    auto add_piece = [&slot](std::byte* p, size_t len) {
      Piece& last = slot.out_pieces[slot.out_piece_count > 0 ? slot.out_piece_count - 1 : 0];
      if (slot.out_piece_count > 0 && last.ptr + last.len == p) {
        last.len += static_cast<uint32_t>(len);
      } else {
        slot.out_pieces[slot.out_piece_count++] = Piece{p, static_cast<uint32_t>(len)};
      }
    };
    out.reserve(out_bytes, add_piece);
    out.finish();
    if (direct_out) {
      const auto len = static_cast<uint32_t>(f.out_data.size());
      segs[n++] = {memory_->device_addr(f.out_data.data()), len, true};
      slot.out_pieces[slot.out_piece_count++] = Piece{f.out_data.data(), len};
      stat_zero_copy_.fetch_add(len, std::memory_order_relaxed);
    }
  }

  if (auto ec = q.ring->add(std::span(segs.data(), n), slot_index, &slot.indirect)) {
    for (uint16_t i = 0; i < slot.chunk_count; ++i) q.chunks.give(slot.chunks[i]);
    q.free_slots.push_back(slot_index);
    call.ec = ec;
    return Start::kFailed;
  }
  slot.call = &call;
  call.slot_index = slot_index;
  ++q.in_flight;
  return Start::kStarted;
}

bool Session::publish(Queue& q) {
  if (!q.ring->kick_prepare()) return false;
  stat_notifications_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void Session::submit(Call& call) { submit_to(pick_queue(), call); }

void Session::submit_hiprio(Call& call) { submit_to(*queues_[0], call); }

void Session::submit_to(Queue& q, Call& call) {
  call.ec = {};
  call.reply = {};
  call.queue_index = q.index;
  const fuse::Frame& f = call.frame;
  if (!call.raw && (f.in_bytes() + f.out_data.size() > max_transfer_ + kInInline ||
                    f.in_count > fuse::kMaxInPayloads)) {
    call.ec = std::make_error_code(std::errc::invalid_argument);
    call.on_done(call);
    return;
  }
  if (shut_down_.load(std::memory_order_acquire)) {
    call.ec = std::make_error_code(std::errc::not_connected);
    call.on_done(call);
    return;
  }
  bool kick = false;
  // Once the call is on the ring it belongs to the completion thread: decide here, under the
  // lock, whether this thread must complete it, and never read the call after unlocking.
  bool fail_now = false;
  {
    std::lock_guard lock(q.mu);
    if (q.failed) {
      call.ec = q.failed;
      fail_now = true;
    } else {
      stat_requests_.fetch_add(1, std::memory_order_relaxed);
      Start r = q.wait_head ? Start::kWait : try_start(q, call);
      if (r == Start::kWait) {
        // Full ring or buffers: park until completions make room (no sleep-and-retry).
        stat_waits_.fetch_add(1, std::memory_order_relaxed);
        call.next_waiting = nullptr;
        (q.wait_tail ? q.wait_tail->next_waiting : q.wait_head) = &call;
        q.wait_tail = &call;
      } else if (r == Start::kStarted) {
        kick = publish(q);
      } else {
        fail_now = true;
      }
    }
  }
  if (kick) transport_->notify(q.index);
  if (fail_now) call.on_done(call);
}

void Session::run_sync(Call& call) {
  auto& sync = static_cast<SyncCall&>(call);
  submit(sync);
  wait(sync);
}

void Session::forget(Inode inode, uint64_t nlookup) {
  if (nlookup == 0) return;
  Queue& q = *queues_[0];
  bool kick = false;
  {
    std::lock_guard lock(q.mu);
    if (q.failed || destroyed_) return;  // the device is gone, or dropped every inode (DESTROY)
    q.forgets.push_back(fuse_forget_one{inode, nlookup});
    if (q.forgets.size() >= kForgetBatch) q.forgets_due = true;
    if (q.forgets_due) {
      flush_hiprio(q);
      kick = publish(q);
    } else if (!q.forget_timer_armed) {
      const itimerspec delay{{}, {0, std::chrono::nanoseconds(kForgetDelay).count()}};
      // Should the timer fail, the FORGETs go now rather than wait for the next batch.
      q.forget_timer_armed = timerfd_settime(forget_timer_.fd, 0, &delay, nullptr) == 0;
      if (!q.forget_timer_armed) {
        forgets_now(q);
        kick = publish(q);
      }
    }
  }
  if (kick) transport_->notify(q.index);
}

void Session::interrupt(Call& call) {
  Queue& q = *queues_.at(call.queue_index);
  uint64_t unique = 0;
  bool ended_here = false;
  {
    std::lock_guard lock(q.mu);
    if (q.failed) return;  // the failure already ended (or is ending) the call
    Call* prev = nullptr;
    for (Call* c = q.wait_head; c; prev = c, c = c->next_waiting) {
      if (c != &call) continue;
      (prev ? prev->next_waiting : q.wait_head) = c->next_waiting;
      if (q.wait_tail == c) q.wait_tail = prev;
      call.ec = std::make_error_code(std::errc::interrupted);
      ended_here = true;
      break;
    }
    if (!ended_here) {
      if (call.slot_index >= q.slots.size() || q.slots[call.slot_index].call != &call) return;
      unique = q.slots[call.slot_index].unique;  // still with the device
    }
  }
  if (ended_here) {
    call.on_done(call);
    return;
  }
  Queue& h = *queues_[0];
  bool kick = false;
  {
    std::lock_guard lock(h.mu);
    if (h.failed) return;
    h.interrupts.push_back(unique);
    flush_hiprio(h);
    kick = publish(h);
  }
  if (kick) transport_->notify(h.index);
}

void Session::device_misbehaved() { fail_all(std::make_error_code(std::errc::io_error)); }

void Session::flush_hiprio(Queue& q) {
  auto take_call = [&]() -> Call* {
    if (q.free_hiprio_calls.empty()) return nullptr;
    Call& c = q.hiprio_calls[q.free_hiprio_calls.back()];
    c.frame = fuse::Frame{};
    c.frame.expects_reply = false;
    c.on_done = nullptr;  // recycled by the completion path, not reported
    return &c;
  };
  while (!q.interrupts.empty()) {
    Call* c = take_call();
    if (!c) return;
    c->frame.opcode = FUSE_INTERRUPT;
    c->frame.set_args(fuse_interrupt_in{q.interrupts.front()});
    if (try_start(q, *c) != Start::kStarted) return;  // hiprio full: stays queued
    q.free_hiprio_calls.pop_back();
    q.interrupts.pop_front();
    stat_interrupts_sent_.fetch_add(1, std::memory_order_relaxed);
  }
  while (q.forgets_due && !q.forgets.empty()) {
    Call* c = take_call();
    if (!c) return;
    const size_t count = std::min(q.forgets.size(), kForgetBatch);
    std::array<fuse_forget_one, kForgetBatch> batch;
    std::copy_n(q.forgets.begin(), count, batch.begin());
    c->frame.opcode = FUSE_BATCH_FORGET;
    c->frame.set_args(fuse_batch_forget_in{static_cast<uint32_t>(count), 0});
    c->frame.add_in(std::as_bytes(std::span(batch.data(), count)));
    if (try_start(q, *c) != Start::kStarted) return;  // hiprio full: stays queued, never dropped
    q.free_hiprio_calls.pop_back();
    q.forgets.erase(q.forgets.begin(), q.forgets.begin() + static_cast<ptrdiff_t>(count));
    stat_forgets_.fetch_add(count, std::memory_order_relaxed);
  }
  if (q.forgets.empty()) q.forgets_due = false;
}

void Session::forgets_now(Queue& q) {
  q.forgets_due = !q.forgets.empty();
  flush_hiprio(q);
}

void Session::send_forgets() {
  Queue& h = *queues_[0];
  bool kick = false;
  {
    std::lock_guard lock(h.mu);
    h.forget_timer_armed = false;  // a later FORGET arms it again
    if (!h.failed) {
      forgets_now(h);
      kick = publish(h);
    }
  }
  if (kick) transport_->notify(h.index);
}

void Session::admit_waiting(Queue& q, std::vector<Call*>& done) {
  while (q.wait_head) {
    Call* c = q.wait_head;
    Start r = try_start(q, *c);
    if (r == Start::kWait) break;
    q.wait_head = c->next_waiting;
    if (!q.wait_head) q.wait_tail = nullptr;
    if (r == Start::kFailed) done.push_back(c);
  }
  if (q.index == 0) flush_hiprio(q);
}

bool Session::finish_slot(Slot& slot, uint32_t used_len) {
  Call& call = *slot.call;
  if (call.raw ? call.raw->out.empty() : !call.frame.expects_reply) return false;
  // Gather [offset, offset+len) of the reply stream out of device memory, once, into private
  // memory: nothing is re-read after it is validated.
  auto gather = [&](size_t offset, std::byte* dst, size_t len) {
    for (uint16_t i = 0; i < slot.out_piece_count && len > 0; ++i) {
      const Piece& p = slot.out_pieces[i];
      if (offset >= p.len) {
        offset -= p.len;
        continue;
      }
      size_t n = std::min<size_t>(len, p.len - offset);
      if (dst != p.ptr + offset) std::memcpy(dst, p.ptr + offset, n);  // same: zero-copy buffer
      dst += n;
      len -= n;
      offset = 0;
    }
  };
  if (used_len == 0 && call.raw && call.raw->reply_optional) return false;  // header.len stays 0
  if (used_len >= sizeof(fuse_out_header)) gather(0, reinterpret_cast<std::byte*>(&call.reply.header), sizeof(fuse_out_header));
  bool malformed = false;
  call.ec = fuse::validate_reply(call.reply.header, used_len, slot.unique, malformed);
  if (malformed || call.ec) return malformed;
  if (call.raw) {
    // The payload stays in device memory for the owner to pass on as it is.
    call.reply.data_len = used_len - static_cast<uint32_t>(sizeof(fuse_out_header));
    return false;
  }
  const uint32_t payload = used_len - static_cast<uint32_t>(sizeof(fuse_out_header));
  call.reply.args_len = std::min(payload, call.frame.out_args_len);
  gather(sizeof(fuse_out_header), call.reply.args.data(), call.reply.args_len);
  call.reply.data_len = payload - call.reply.args_len;
  gather(sizeof(fuse_out_header) + call.frame.out_args_len, call.frame.out_data.data(),
         call.reply.data_len);
  return false;
}

void Session::release_slot(Queue& q, uint32_t index, std::vector<Call*>& done) {
  Slot& slot = q.slots[index];
  for (uint16_t i = 0; i < slot.chunk_count; ++i) q.chunks.give(slot.chunks[i]);
  slot.chunk_count = 0;
  Call* c = slot.call;
  slot.call = nullptr;
  q.free_slots.push_back(index);
  --q.in_flight;
  if (!c->on_done) {
    q.free_hiprio_calls.push_back(static_cast<uint32_t>(c - q.hiprio_calls.data()));
  } else {
    done.push_back(c);
  }
}

Session::Reaped Session::reap(Queue& q, std::vector<Call*>& done, bool may_sleep) {
  std::array<virtio::UsedElement, kCompletionBatch> used;
  std::error_code ring_ec;
  size_t n;
  {
    std::lock_guard lock(q.mu);
    if (q.failed) return {0, false, true};
    q.ring->disable_interrupts();
    n = q.ring->collect_used(used, ring_ec);
  }
  // Slots whose chains came back are ours alone until released: copy replies unlocked.
  bool malformed = false;
  for (size_t i = 0; i < n; ++i) malformed |= finish_slot(q.slots[used[i].token], used[i].len);
  bool kick = false;
  bool idle = false;
  {
    std::lock_guard lock(q.mu);
    for (size_t i = 0; i < n; ++i) release_slot(q, used[i].token, done);
    if (!ring_ec && !malformed) {
      admit_waiting(q, done);
      kick = publish(q);
      // A thread polling for its own reply (wait()) turns interrupts back on when it leaves.
      if (n == 0 && may_sleep) idle = q.pollers > 0 || !q.ring->enable_interrupts();
    }
  }
  if (kick) transport_->notify(q.index);
  complete(done);
  if (ring_ec || malformed) {
    fail_all(std::make_error_code(std::errc::io_error));
    return {n, true, true};
  }
  if (quiescing_.load(std::memory_order_acquire)) notify_drained();
  return {n, false, idle};
}

void Session::on_call_event(Queue& q, std::vector<Call*>& done) {
  // With poll_us, a ring that runs dry is polled for a while with interrupts still off; they
  // are re-enabled only after a poll that found nothing (then the eventfd wakes us).
  bool poll_done = options_.poll_us == 0;
  bool found_by_poll = false;
  for (;;) {
    const Reaped r = reap(q, done, poll_done);
    if (r.broken || r.idle) return;
    if (r.n > 0) {
      if (found_by_poll) stat_polled_.fetch_add(r.n, std::memory_order_relaxed);
      poll_done = options_.poll_us == 0;
      found_by_poll = false;
    } else if (!poll_done) {
      found_by_poll = poll_used(q);
      poll_done = !found_by_poll;
    }
  }
}

namespace {
// Calls a thread in wait() reaps for others, completed from there: reserved once per thread.
// A callback run from that batch which blocks in another wait() (even another session's) must
// not reap into it while it is being walked: it sleeps on its condition variable instead.
struct CallerBatch {
  std::vector<Call*> calls;
  bool in_use = false;
  CallerBatch() { calls.reserve(2 * kCompletionBatch); }
};
thread_local CallerBatch caller_batch;

// A thread's own eventfd, for SyncCall::set_waker: made once per thread, closed with it.
struct ThreadWaker {
  int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  ~ThreadWaker() {
    if (fd >= 0) close(fd);
  }
};
}  // namespace

void Session::wait(SyncCall& call) {
  if (call.queue_index < queues_.size() && !caller_batch.in_use) {
    Queue& q = *queues_[call.queue_index];
    caller_batch.in_use = true;
    if (options_.poll_us) {
      reap_own(q, call, caller_batch.calls);
    } else if (q.call_fd_alone) {
      wait_on_interrupt(q, call, caller_batch.calls);
    }
    caller_batch.in_use = false;
  }
  call.wait();
}

void Session::wait_on_interrupt(Queue& q, SyncCall& call, std::vector<Call*>& done) {
  bool free = false;
  if (!q.interrupt_leader.compare_exchange_strong(free, true, std::memory_order_acq_rel)) return;
  thread_local ThreadWaker waker;
  const int irq_fd = transport_->call_fd(q.index);
  if (waker.fd >= 0 && call.set_waker(waker.fd)) {
    // Interrupts are on whenever no one is reaping (reap's last step), so the device signals
    // irq_fd for this call's reply; the completion thread may take it first, and then says so
    // on the waker.
    while (!call.done.load(std::memory_order_acquire)) {
      pollfd fds[2] = {{irq_fd, POLLIN, 0}, {waker.fd, POLLIN, 0}};
      if (poll(fds, 2, -1) < 0 && errno != EINTR) break;  // the condition variable still works
      uint64_t count;
      if (fds[1].revents & POLLIN) [[maybe_unused]] ssize_t n = read(waker.fd, &count, sizeof(count));
      if (fds[0].revents & POLLIN) {
        [[maybe_unused]] ssize_t n = read(irq_fd, &count, sizeof(count));
        on_call_event(q, done);
        if (call.done.load(std::memory_order_acquire))
          stat_callers_woken_.fetch_add(1, std::memory_order_relaxed);
      }
    }
    call.clear_waker();
  }
  q.interrupt_leader.store(false, std::memory_order_release);
}

void Session::reap_own(Queue& q, SyncCall& call, std::vector<Call*>& done) {
  {
    std::lock_guard lock(q.mu);
    if (q.failed || call.done.load(std::memory_order_acquire)) return;
    ++q.pollers;
    q.ring->disable_interrupts();
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::microseconds(options_.poll_us);
  for (unsigned spin = 1;; ++spin) {
    const bool finished = call.done.load(std::memory_order_acquire);
    if (finished || ((spin & 63) == 0 && std::chrono::steady_clock::now() >= deadline)) break;
    bool ready;
    {
      std::lock_guard lock(q.mu);
      ready = !q.failed && q.ring->has_used();
    }
    if (ready) {
      const Reaped r = reap(q, done, false);
      if (r.n) stat_polled_.fetch_add(r.n, std::memory_order_relaxed);
      if (r.broken) break;
    } else {
      // Give the CPU to whatever else is runnable here (the device's threads, on a small
      // machine): a waiting caller must not delay the reply it waits for.
      sched_yield();
    }
  }
  // The last poller out turns interrupts back on; what arrived while they were off would not
  // be signalled, so it is reaped here, as the completion thread would have.
  bool more;
  {
    std::lock_guard lock(q.mu);
    more = --q.pollers == 0 && !q.failed && q.ring->enable_interrupts();
  }
  if (more) on_call_event(q, done);
}

bool Session::poll_used(Queue& q) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::microseconds(options_.poll_us);
  for (unsigned spin = 0;; ++spin) {
    {
      std::lock_guard lock(q.mu);
      if (q.failed || q.ring->has_used()) return !q.failed;
    }
    if ((spin & 63) == 63 && std::chrono::steady_clock::now() >= deadline) return false;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();  // let the sibling hyperthread run while we spin
#endif
  }
}

void Session::complete(std::vector<Call*>& calls) {
  for (Call* c : calls) c->on_done(*c);
  calls.clear();
}

void Session::fail_queue(Queue& q, std::error_code ec, std::vector<Call*>& out) {
  if (!q.failed) q.failed = ec;
  for (uint32_t i = 0; i < q.slots.size(); ++i) {
    Slot& slot = q.slots[i];
    if (!slot.call) continue;
    Call* c = slot.call;
    if (c->on_done) {
      c->ec = q.failed;
      out.push_back(c);
    } else {
      q.free_hiprio_calls.push_back(static_cast<uint32_t>(c - q.hiprio_calls.data()));
    }
    for (uint16_t k = 0; k < slot.chunk_count; ++k) q.chunks.give(slot.chunks[k]);
    slot.chunk_count = 0;
    slot.call = nullptr;
    q.free_slots.push_back(i);
  }
  q.in_flight = 0;
  for (Call* c = q.wait_head; c; c = c->next_waiting) {
    c->ec = q.failed;
    out.push_back(c);
  }
  q.wait_head = q.wait_tail = nullptr;
  q.forgets.clear();
  q.interrupts.clear();
}

void Session::set_failure_handler(std::function<void(std::error_code)> handler) {
  std::lock_guard lock(failure_mu_);
  failure_handler_ = std::move(handler);
}

void Session::fail_all(std::error_code ec) {
  if (!shut_down_.load(std::memory_order_acquire)) {
    std::function<void(std::error_code)> report;
    {
      std::lock_guard lock(failure_mu_);
      if (!failure_reported_) report = failure_handler_;
      failure_reported_ = true;
    }
    if (report) report(ec);
  }
  std::vector<Call*> out;
  for (auto& q : queues_) {
    {
      std::lock_guard lock(q->mu);
      fail_queue(*q, ec, out);
    }
    complete(out);
  }
  notify_drained();
}

void Session::notify_drained() {
  std::lock_guard lock(drain_mu_);
  drained_.notify_all();
}

std::error_code Session::failure() const {
  for (auto& q : queues_) {
    std::lock_guard lock(q->mu);
    if (q->failed) return q->failed;
  }
  return {};
}

SessionStats Session::stats() const {
  return SessionStats{stat_requests_.load(),   stat_notifications_.load(), stat_forgets_.load(),
                      stat_waits_.load(),      stat_interrupts_.load(),    stat_polled_.load(),
                      stat_interrupts_sent_.load(), stat_zero_copy_.load(), stat_callers_woken_.load()};
}

void Session::shutdown() {
  if (shut_down_.load(std::memory_order_acquire) || completers_.empty()) return;
  quiescing_.store(true, std::memory_order_release);
  if (initialized_ && !failure()) {
    // FORGETs still queued or in flight reach the device before DESTROY; after it the device
    // holds no inodes (virtiofsd answers a late FORGET with EIO on a chain with no reply room),
    // so later ones are dropped.
    Queue& hiprio = *queues_[0];
    send_forgets();
    {
      std::unique_lock lock(drain_mu_);
      drained_.wait_for(lock, kDrainTimeout, [&] {
        std::lock_guard ql(hiprio.mu);
        return hiprio.failed || (hiprio.forgets.empty() && hiprio.in_flight == 0);
      });
    }
    {
      std::lock_guard lock(hiprio.mu);
      destroyed_ = true;
      hiprio.forgets.clear();
    }
    SyncCall destroy;
    destroy.frame = fuse::make_destroy();
    run_sync(destroy);
  }
  shut_down_.store(true, std::memory_order_release);
  {
    // Let requests already handed to the device finish, but never wait for ever.
    std::unique_lock lock(drain_mu_);
    drained_.wait_for(lock, kDrainTimeout, [this] {
      for (auto& q : queues_) {
        std::lock_guard ql(q->mu);
        if (!q->failed && (q->in_flight > 0 || q->wait_head)) return false;
      }
      return true;
    });
  }
  for (auto& c : completers_) c.reactor->stop();
  for (auto& c : completers_) c.thread.join();
  fail_all(std::make_error_code(std::errc::not_connected));
  try {
    transport_->stop();
  } catch (const std::exception&) {
    // The backend is already gone: nothing left to stop.
  }
}

}  // namespace virtiofs::fs
