#include "fs/session.hpp"

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <system_error>
#include <thread>

#include "fs/call_ending.hpp"
#include "fuse/init.hpp"
#include "fuse/ops.hpp"
#include "log/log.hpp"
#include "virtio/features.hpp"
#include "virtio/setup_error.hpp"

namespace virtiofs::fs {

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
  start_device(transport_->device_features());
}

void Session::start_device(uint64_t device_features) {
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

  limits_ = derive_limits(options_, indirect);
  max_transfer_ = limits_.max_transfer;
  memory_ = carve_session_memory(*transport_, options_, limits_, nqueues);
  stager_ = std::make_unique<RequestStager>(*memory_.region, limits_.max_segments);
  const uint16_t size = options_.queue_size;
  auto hiprio = std::make_unique<HiprioQueue>(std::move(memory_.queues[0]), size, event_idx,
                                              indirect, *stager_, *transport_, counters_);
  hiprio_ = hiprio.get();
  // An INTERRUPT answered EAGAIN goes again only while its request is with the device (the
  // unique names the queue and slot: see RequestQueue::try_start_locked).
  hiprio_->set_outstanding_check([this](uint64_t unique) {
    const unsigned queue = static_cast<unsigned>((unique >> 16) & 0xffff);
    return queue > 0 && queue < queues_.size() && queues_[queue]->holds(unique);
  });
  queues_.push_back(std::move(hiprio));
  for (unsigned qi = 1; qi < nqueues; ++qi)
    queues_.push_back(std::make_unique<RequestQueue>(qi, std::move(memory_.queues[qi]), size,
                                                     event_idx, indirect, *stager_, *transport_,
                                                     counters_));
  memory_.queues.clear();
  for (unsigned qi = 1; qi < nqueues; ++qi)
    queues_[qi]->set_dropped_sink([this](const DroppedReply& d) {
      if (dropped_handler_) dropped_handler_(d);
      // No call ends with a dropped reply, yet the queue may have just become idle: a
      // shutdown waiting for that must hear it.
      if (quiescing_.load(std::memory_order_acquire)) notify_drained();
    });

  transport_->register_memory(*memory_.region);
  try {
    // From here the device may use the memory: whatever fails stops it before memory goes.
    for (auto& q : queues_) transport_->setup_queue(QueueSetup{q->index(), size, q->ring_memory()});
    transport_->start();
    std::vector<RequestQueue*> all;
    for (auto& q : queues_) all.push_back(q.get());
    completion_ = std::make_unique<Completion>(
        *transport_, std::move(all), options_, counters_,
        [this](std::error_code ec) { fail_all(ec); },
        [this] {
          if (quiescing_.load(std::memory_order_acquire)) notify_drained();
        });
    completion_->watch(hiprio_->timer_fd(), POLLIN, [this] {
      uint64_t expirations;
      [[maybe_unused]] ssize_t n = read(hiprio_->timer_fd(), &expirations, sizeof(expirations));
      hiprio_->flush_now();
    }, /*once=*/false);
    if (const auto live = transport_->liveness(); live.fd >= 0)
      completion_->watch(live.fd, live.events,
                         [this] { fail_all(std::make_error_code(std::errc::not_connected)); },
                         /*once=*/true);
    // DEVICE_NEEDS_RESET comes as a config interrupt: the device serves nothing more, so every
    // request fails at once (EIO: broken, as a misbehaving device) instead of waiting for ever.
    if (const auto config = transport_->config_watch(); config.fd >= 0)
      completion_->watch(config.fd, config.events, [this] {
        const std::error_code ec = transport_->config_changed();
        if (!ec) return;
        if (!failure())
          log::error("the device %s: every request fails (%s)",
                     ec == std::errc::io_error ? "needs a reset (DEVICE_NEEDS_RESET)" : "is gone",
                     ec.message().c_str());
        fail_all(ec);
      }, /*once=*/false);
    completion_->start();
  } catch (...) {
    if (completion_) completion_->stop();
    try {
      transport_->stop();
    } catch (const std::exception&) {
      // Gone already: nothing to stop.
    }
    throw;
  }
}

void Session::init(uint64_t flags, uint32_t max_readahead, uint32_t minor) {
  SyncCall call;
  call.frame = fuse::make_init(flags, max_readahead, minor);
  submit(call);
  if (!wait_until(call, std::chrono::steady_clock::now() + options_.device_timeout))
    fail(ETIMEDOUT, "the device did not answer FUSE_INIT within " +
                        std::to_string(options_.device_timeout.count()) +
                        " ms (is a backend serving the share?)");
  if (call.ec) fail(call.ec.value(), "FUSE_INIT failed");
  if (auto ec = fuse::negotiate_init(call.reply, flags, fuse::InitLimits{max_transfer_, 4096},
                                     negotiated_))
    fail(ec.value(), "FUSE_INIT reply not acceptable (unsupported protocol or absurd sizes)");
  max_transfer_ = std::min(negotiated_.max_write, negotiated_.max_read);
  initialized_ = true;
}

Session::~Session() { shutdown(); }

RequestQueue& Session::pick_queue() {
  // Like the Linux driver's per-CPU map: a thread keeps to one request queue, and threads are
  // dealt out in turn so that N submitting threads cover N queues.
  static std::atomic<size_t> next_ticket{0};
  static thread_local const size_t ticket = next_ticket.fetch_add(1, std::memory_order_relaxed);
  return *queues_[1 + ticket % (queues_.size() - 1)];
}

Session::Poller::Poller(Session& session)
    : session_(session), queue_(session.pick_queue().index()) {
  if (session.options_.app_reaps_completions)
    throw std::system_error(EINVAL, std::system_category(),
                            "Session::Poller: the application reaps completions");
  session.completion_->enter_owner_polling(queue_);
}

Session::Poller::~Poller() { session_.completion_->leave_owner_polling(queue_); }

void Session::submit(Call& call) {
  if (RequestQueue* q = admit(call)) q->submit(call);
}

void Session::submit_for_wait(SyncCall& call) {
  if (RequestQueue* q = admit(call)) {
    completion_->before_submit(*q, call);
    q->submit(call);
  }
}

RequestQueue* Session::admit(Call& call) {
  call.ec = {};
  call.reply = {};
  const fuse::Frame& f = call.frame;
  if (!call.raw && (f.in_bytes() + f.out_data.size() > max_transfer_ + kInInline ||
                    f.in_count > fuse::kMaxInPayloads)) {
    call.ec = std::make_error_code(std::errc::invalid_argument);
    end_call(call);
    return nullptr;
  }
  if (shut_down_.load(std::memory_order_acquire)) {
    call.ec = std::make_error_code(std::errc::not_connected);
    end_call(call);
    return nullptr;
  }
  return &pick_queue();
}

void Session::submit_hiprio(Call& call) {
  call.ec = {};
  call.reply = {};
  if (shut_down_.load(std::memory_order_acquire)) {
    call.ec = std::make_error_code(std::errc::not_connected);
    end_call(call);
    return;
  }
  hiprio_->submit(call);
}

void Session::wait(SyncCall& call) { completion_->wait(call); }

bool Session::wait_until(SyncCall& call, std::chrono::steady_clock::time_point deadline) {
  // The completion threads reap (or this thread, a batch at a time, where the application
  // reaps), so the bound holds whatever the device does.
  if (completion_->wait_until(call, deadline)) return true;
  fail_all(std::make_error_code(std::errc::timed_out));
  call.wait();  // failed now, or its reply is being taken: it ends at once
  return false;
}

void Session::interrupt(Call& call) {
  if (call.queue_index >= queues_.size()) return;
  RequestQueue& q = *queues_[call.queue_index];
  if (q.cancel_parked(call)) return;
  if (const uint64_t unique = q.unique_with_device(call)) hiprio_->interrupt(unique);
}

void Session::abandon(Call& call) {
  if (call.queue_index == 0 || call.queue_index >= queues_.size()) return;
  queues_[call.queue_index]->abandon(call);
}

void Session::forget(Inode inode, uint64_t nlookup) { hiprio_->forget(inode, nlookup); }

void Session::device_misbehaved() {
  // The rings still work: references handed out before the bad reply (READDIRPLUS entries the
  // owner forgot) go back before the device is dropped.
  hiprio_->flush_now();
  // fail_all stops the device first, so they must have reached it: wait, bounded. Not on a
  // completion thread, which may be the one to reap them (they are lost then).
  if (!completion_->on_own_thread()) {
    const auto deadline = std::chrono::steady_clock::now() + options_.device_timeout;
    while (!hiprio_->settled() && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  fail_all(std::make_error_code(std::errc::io_error));
}

void Session::set_failure_handler(std::function<void(std::error_code)> handler) {
  std::lock_guard lock(failure_mu_);
  failure_handler_ = std::move(handler);
}

void Session::stop_device() {
  std::lock_guard lock(stop_mu_);
  if (device_stopped_) return;
  device_stopped_ = true;
  try {
    transport_->stop();
  } catch (const std::exception&) {
    // The backend is already gone: nothing left to stop.
  }
}

void Session::fail_all(std::error_code ec) {
  // NEEDS_RESET or a bad reply does not stop the device's DMA (a vhost backend still finishes
  // descriptors): stop it before slots, chunks and zero-copy reply buffers go back.
  stop_device();
  if (!shut_down_.load(std::memory_order_acquire)) {
    std::function<void(std::error_code)> report;
    {
      std::lock_guard lock(failure_mu_);
      if (!failure_reported_) report = failure_handler_;
      failure_reported_ = true;
    }
    if (report) report(ec);
  }
  // Every queue fails before any call ends: a callback that submits and waits must find its
  // new call failed, not queued to the stopped device.
  std::vector<Call*> failed;
  for (auto& q : queues_) q->fail(ec, failed);
  completion_->hand_over(failed);  // the application's calls end in process_completions
  end_calls(failed);
  notify_drained();
}

void Session::notify_drained() {
  std::lock_guard lock(drain_mu_);
  drained_.notify_all();
}

int Session::completion_fd(unsigned request_queue) const {
  return completion_->app_fd(app_queue(request_queue));
}

size_t Session::process_completions(unsigned request_queue) {
  return completion_->process(app_queue(request_queue));
}

unsigned Session::app_queue(unsigned request_queue) const {
  if (!options_.app_reaps_completions)
    fail(EINVAL, "completion_fd and process_completions need SessionOptions::app_reaps_completions");
  if (request_queue >= num_request_queues())
    fail(EINVAL, "request queue " + std::to_string(request_queue) + " does not exist (the session has " +
                     std::to_string(num_request_queues()) + ", numbered from 0)");
  return request_queue + 1;
}

std::error_code Session::failure() const {
  for (auto& q : queues_)
    if (auto ec = q->failure()) return ec;
  return {};
}

bool Session::on_completion_thread() const { return completion_ && completion_->on_own_thread(); }

void Session::shutdown() { shutdown(std::chrono::steady_clock::now() + options_.device_timeout); }

void Session::shutdown(std::chrono::steady_clock::time_point deadline) {
  if (!completion_) return;
  if (completion_->on_own_thread())
    throw std::system_error(std::make_error_code(std::errc::resource_deadlock_would_occur),
                            "Session::shutdown from a completion callback (it would wait for "
                            "its own thread): close the session from another thread");
  // A second caller waits until the first is done: after shutdown returns, nothing touches
  // the caller's buffers any more.
  std::lock_guard once(shutdown_mu_);
  if (quiescing_.exchange(true, std::memory_order_acq_rel)) return;
  auto wait_drained = [&](auto done) {
    std::unique_lock lock(drain_mu_);
    drained_.wait_until(lock, deadline, done);
  };
  if (initialized_ && !failure()) {
    // FORGETs still pending or in flight reach the device before DESTROY; after it the device
    // holds no inodes (virtiofsd answers a late FORGET with EIO on a chain with no reply room),
    // so later ones are dropped.
    hiprio_->flush_now();
    wait_drained([&] { return hiprio_->settled(); });
    hiprio_->mark_destroyed();
    SyncCall destroy;
    destroy.frame = fuse::make_destroy();
    submit(destroy);
    if (!wait_until(destroy, deadline))
      log::warn("the device did not answer FUSE_DESTROY within %lld ms: stopped without it",
                static_cast<long long>(options_.device_timeout.count()));
  }
  shut_down_.store(true, std::memory_order_release);
  // Let requests already handed to the device finish, but never wait for ever; where the
  // application reaps, this thread reaps them (it may be idle, or this very thread).
  auto all_drained = [&] {
    return std::all_of(queues_.begin(), queues_.end(),
                       [](auto& q) { return q->failure() || q->idle(); });
  };
  if (options_.app_reaps_completions) {
    completion_->reap_until(deadline, all_drained);
  } else {
    wait_drained(all_drained);
  }
  // The device stops before the calls still with it end: their buffers go back to their owners
  // only once nothing writes into them. Ending them also ends a callback blocked in a wait on
  // a completion thread, which must happen before the threads are joined.
  fail_all(std::make_error_code(std::errc::not_connected));  // stops the device first
  completion_->stop();
}

}  // namespace virtiofs::fs
