#include "support/loopback_device.hpp"

#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <stdexcept>
#include <system_error>

namespace virtiofs::test {

namespace {

int make_eventfd() {
  const int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0) throw std::system_error(errno, std::system_category(), "loopback eventfd");
  return fd;
}

void write_one(int fd) {
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t n = write(fd, &one, sizeof(one));
}

}  // namespace

LoopbackDevice::LoopbackDevice(const LoopbackConfig& config, ChainHandler& handler)
    : config_(config), handler_(handler) {
  if (config_.request_queues == 0) throw std::invalid_argument("a device has request queues");
  liveness_fd_ = make_eventfd();
  config_fd_ = make_eventfd();
  const int shared = config_.shared_call_fd ? make_eventfd() : -1;
  for (unsigned i = 0; i < num_queues(); ++i) {
    auto q = std::make_unique<Queue>();
    q->stepped = config_.stepped;
    q->call_fd = config_.shared_call_fd ? shared : make_eventfd();
    queues_.push_back(std::move(q));
  }
}

LoopbackDevice::~LoopbackDevice() {
  stop();
  for (size_t i = 0; i < queues_.size(); ++i)
    if (i == 0 || !config_.shared_call_fd) close(queues_[i]->call_fd);
  close(liveness_fd_);
  close(config_fd_);
  if (map_) munmap(map_, map_len_);
}

LoopbackDevice::Queue& LoopbackDevice::queue(unsigned index) const {
  if (index >= queues_.size()) throw std::out_of_range("loopback queue index");
  return *queues_[index];
}

void LoopbackDevice::set_driver_features(uint64_t features) {
  if (features & ~config_.features)
    throw std::system_error(EINVAL, std::system_category(), "driver accepted features not offered");
  driver_features_.store(features);
}

void LoopbackDevice::register_memory(const virtio::DmaRegion& region) {
  if (map_) throw std::system_error(EBUSY, std::system_category(), "loopback memory registered twice");
  void* p = mmap(nullptr, region.size(), PROT_READ | PROT_WRITE, MAP_SHARED, region.fd(), 0);
  if (p == MAP_FAILED) throw std::system_error(errno, std::system_category(), "loopback mmap");
  map_ = static_cast<std::byte*>(p);
  map_len_ = region.size();
}

std::byte* LoopbackDevice::translate(uint64_t addr, uint64_t len) const {
  const uint64_t base = config_.device_base;
  if (!map_ || addr < base || len > map_len_ || addr - base > map_len_ - len) return nullptr;
  return map_ + (addr - base);
}

void LoopbackDevice::setup_queue(const virtio::QueueSetup& setup) {
  Queue& q = queue(setup.index);
  const uint16_t size = setup.size;
  if (!virtio::is_valid_queue_size(size)) throw std::system_error(EINVAL, std::system_category(), "queue size");
  // Only the device addresses count: the host pointers in setup are the driver's business.
  virtio::RingMemory rm;
  rm.desc = reinterpret_cast<virtio::Desc*>(translate(setup.memory.desc_addr, virtio::desc_table_bytes(size)));
  rm.avail = reinterpret_cast<virtio::AvailRing*>(translate(setup.memory.avail_addr, virtio::avail_ring_bytes(size)));
  rm.used = reinterpret_cast<virtio::UsedRing*>(translate(setup.memory.used_addr, virtio::used_ring_bytes(size)));
  if (!rm.desc || !rm.avail || !rm.used)
    throw std::system_error(EFAULT, std::system_category(), "queue rings outside registered memory");
  rm.desc_addr = setup.memory.desc_addr;
  rm.avail_addr = setup.memory.avail_addr;
  rm.used_addr = setup.memory.used_addr;
  const bool event_idx = driver_features_.load() & virtio::feature::kRingEventIdx;
  std::lock_guard lock(q.mu);
  q.model = std::make_unique<DeviceModel>(
      rm, size, event_idx, [this](uint64_t addr, uint64_t len) { return translate(addr, len); });
  q.avail = rm.avail;
  q.size = size;
}

void LoopbackDevice::start() {
  if (started_) return;
  started_ = true;
  for (unsigned i = 0; i < queues_.size(); ++i) queues_[i]->thread = std::thread([this, i] { run(i); });
}

int LoopbackDevice::call_fd(unsigned index) const { return queue(index).call_fd; }

void LoopbackDevice::notify(unsigned index) {
  Queue& q = queue(index);
  std::lock_guard lock(q.mu);
  ++q.kicks;
  q.cv.notify_all();
}

void LoopbackDevice::stop() {
  if (stopping_.exchange(true)) return;
  for (auto& q : queues_) {
    std::lock_guard lock(q->mu);
    q->cv.notify_all();
  }
  for (auto& q : queues_)
    if (q->thread.joinable()) q->thread.join();
  for (auto& q : queues_) {
    std::lock_guard lock(q->mu);
    q->model.reset();
    q->avail = nullptr;
  }
  stopped_ = true;
}

std::vector<DeviceChain> LoopbackDevice::pop(Queue& q, size_t max) {
  std::vector<DeviceChain> chains;
  if (!q.model || !q.error.empty() || lost_.load()) return chains;
  try {
    while (chains.size() < max) {
      std::optional<DeviceChain> c = q.model->pop();
      if (!c && chains.empty()) {
        // Ask for a kick past what we took, then look again: no lost wake-up.
        q.model->set_avail_event(q.model->last_avail());
        std::atomic_thread_fence(std::memory_order_seq_cst);
        c = q.model->pop();
      }
      if (!c) break;
      chains.push_back(std::move(*c));
    }
  } catch (const std::exception& e) {
    // The driver published something a device must refuse: this queue stops, as virtiofsd's.
    q.error = e.what();
  }
  q.taken += chains.size();
  return chains;
}

size_t LoopbackDevice::count_available(Queue& q) {
  if (!q.model || !q.error.empty() || lost_.load()) return 0;
  if (q.stepped) {
    // The test is the consumer: kick at the next publication, then read the index (the driver
    // fences in between too). A device thread keeps its own avail_event, or it would miss kicks.
    q.model->set_avail_event(q.avail->idx.load());
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
  return static_cast<uint16_t>(q.avail->idx.load() - q.model->last_avail());
}

void LoopbackDevice::run(unsigned index) {
  Queue& q = *queues_[index];
  std::unique_lock lock(q.mu);
  uint64_t looked_at = q.kicks;
  for (;;) {
    q.cv.wait(lock, [&] {
      const bool serving = !q.stepped && !lost_.load() && q.model && q.error.empty();
      return stopping_.load() || (serving && (q.look || q.kicks != looked_at));
    });
    if (stopping_.load()) return;
    q.look = false;
    looked_at = q.kicks;
    std::vector<DeviceChain> chains = pop(q, q.size);
    if (chains.empty()) continue;
    q.look = true;  // more may have come while we worked
    if (q.silent) {
      for (auto& c : chains) q.swallowed.push_back(std::move(c));
      continue;
    }
    q.busy = true;
    lock.unlock();
    handler_.on_chains(index, chains);
    lock.lock();
    q.busy = false;
    q.cv.notify_all();
  }
}

void LoopbackDevice::set_stepped(unsigned index, bool stepped) {
  Queue& q = queue(index);
  std::unique_lock lock(q.mu);
  q.stepped = stepped;
  q.look = q.look || !stepped;  // chains may have piled up while it was stepped
  q.cv.notify_all();
  // Not from the handler: it would wait for its own batch.
  if (stepped) q.cv.wait(lock, [&] { return !q.busy; });
}

void LoopbackDevice::set_all_stepped(bool stepped) {
  for (unsigned i = 0; i < queues_.size(); ++i) set_stepped(i, stepped);
}

void LoopbackDevice::set_silent(unsigned index, bool silent) {
  Queue& q = queue(index);
  std::lock_guard lock(q.mu);
  q.silent = silent;
}

size_t LoopbackDevice::available(unsigned index) {
  Queue& q = queue(index);
  std::lock_guard lock(q.mu);
  return count_available(q);
}

bool LoopbackDevice::wait_available(unsigned index, size_t n, std::chrono::milliseconds timeout) {
  Queue& q = queue(index);
  const auto deadline = Clock::now() + timeout;
  std::unique_lock lock(q.mu);
  for (;;) {
    if (count_available(q) >= n) return true;
    const auto now = Clock::now();
    if (now >= deadline) return false;
    // A kick wakes us; the slice only guards against a driver that publishes without one.
    q.cv.wait_until(lock, std::min(deadline, now + std::chrono::milliseconds(10)));
  }
}

std::vector<DeviceChain> LoopbackDevice::take(unsigned index, size_t max) {
  Queue& q = queue(index);
  std::lock_guard lock(q.mu);
  return pop(q, max);
}

void LoopbackDevice::answer(unsigned index, std::vector<DeviceChain> chains) {
  if (!chains.empty()) handler_.on_chains(index, chains);
}

size_t LoopbackDevice::serve(unsigned index, size_t max) {
  std::vector<DeviceChain> chains = take(index, max);
  const size_t n = chains.size();
  answer(index, std::move(chains));
  return n;
}

void LoopbackDevice::interrupt(unsigned index) { write_one(queue(index).call_fd); }

template <class T>
T LoopbackDevice::read_locked(unsigned index, T Queue::*field) const {
  Queue& q = queue(index);
  std::lock_guard lock(q.mu);
  return q.*field;
}

uint64_t LoopbackDevice::kicks(unsigned index) const { return read_locked(index, &Queue::kicks); }

uint64_t LoopbackDevice::chains_taken(unsigned index) const {
  return read_locked(index, &Queue::taken);
}

bool LoopbackDevice::wants_interrupt(unsigned index) const {
  Queue& q = queue(index);
  std::lock_guard lock(q.mu);
  return q.model && q.model->wants_interrupt();
}

uint64_t LoopbackDevice::interrupts_signalled(unsigned index) const {
  return read_locked(index, &Queue::signalled);
}

std::string LoopbackDevice::error(unsigned index) const { return read_locked(index, &Queue::error); }

uint16_t LoopbackDevice::queue_size(unsigned index) const { return read_locked(index, &Queue::size); }

void LoopbackDevice::complete(unsigned index, uint32_t id, uint32_t len) {
  complete_all(index, {{id, len}});
}

void LoopbackDevice::complete_all(unsigned index, const Used& used) {
  Queue& q = queue(index);
  bool interrupt;
  {
    std::lock_guard lock(q.mu);
    if (!q.model || lost_.load()) return;  // stopped or dead: nothing reaches the driver
    for (auto [id, len] : used) q.model->push(id, len);
    interrupt = q.model->should_interrupt();
    q.signalled += interrupt;
  }
  signal(q, interrupt);
}

void LoopbackDevice::jump_used_idx(unsigned index, uint16_t by) {
  Queue& q = queue(index);
  {
    std::lock_guard lock(q.mu);
    if (!q.model || lost_.load()) return;
    q.model->force_used_idx(static_cast<uint16_t>(q.model->used_idx() + by));
    ++q.signalled;
  }
  signal(q, true);
}

void LoopbackDevice::lose() {
  if (lost_.exchange(true)) return;
  write_one(liveness_fd_);
  for (auto& q : queues_) {
    std::lock_guard lock(q->mu);
    q->cv.notify_all();
  }
}

void LoopbackDevice::set_needs_reset() {
  needs_reset_.store(true);
  write_one(config_fd_);
}

void LoopbackDevice::config_interrupt() { write_one(config_fd_); }

void LoopbackDevice::signal(Queue& q, bool interrupt) {
  if (interrupt) write_one(q.call_fd);
}

}  // namespace virtiofs::test
