// Test fixture: the device side of an in-process virtio-fs device, behind LoopbackTransport. It
// reads only what the driver published through the rings (a DeviceModel per queue over its own
// mapping of the driver's DmaRegion, addresses translated and bounded) and hands chains to a
// ChainHandler.
//
// Each queue runs in one of two modes, switchable at any time:
//  - threaded: a device thread pops chains when kicked and hands them to the handler, which
//    completes them (interrupts per EVENT_IDX); a silent queue takes chains and never answers;
//  - stepped: nothing happens until the test calls take/answer/serve/complete, so a test can
//    build exact interleavings (hold a request, complete another, lose the device between).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "support/device_queues.hpp"
#include "virtio/dma_region.hpp"
#include "virtio/features.hpp"
#include "virtio/transport.hpp"

namespace virtiofs::test {

struct LoopbackConfig {
  uint64_t features = virtio::feature::kVersion1 | virtio::feature::kRingEventIdx |
                      virtio::feature::kRingIndirectDesc;
  unsigned request_queues = 1;
  std::string tag = "loopfs";
  bool offer_config = true;     // read_config reports tag and num_request_queues
  bool shared_call_fd = false;  // every queue signals one eventfd (one MSI-X vector for all)
  bool stepped = false;         // every queue starts stepped
  // The device address of the driver's first byte of memory: far from any host address, so a
  // driver that hands over a host pointer is caught.
  uint64_t device_base = uint64_t{1} << 40;
};

class LoopbackDevice final : public DeviceQueues {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr size_t kAll = std::numeric_limits<size_t>::max();

  LoopbackDevice(const LoopbackConfig& config, ChainHandler& handler);
  ~LoopbackDevice() override;
  LoopbackDevice(const LoopbackDevice&) = delete;
  LoopbackDevice& operator=(const LoopbackDevice&) = delete;

  // ---- The driver's side, through LoopbackTransport ----
  const LoopbackConfig& config() const { return config_; }
  void set_driver_features(uint64_t features);
  uint64_t driver_features() const { return driver_features_.load(); }
  // Maps the region's memfd (device addresses: device_base + offset).
  void register_memory(const virtio::DmaRegion& region);
  void setup_queue(const virtio::QueueSetup& setup);
  void start();
  int call_fd(unsigned queue) const;
  void notify(unsigned queue);
  int liveness_fd() const { return liveness_fd_; }
  // The config-change interrupt's eventfd and the device status bit it may announce.
  int config_fd() const { return config_fd_; }
  bool needs_reset() const { return needs_reset_.load(); }
  // Joins the device threads (bounded by the handler's own delays); later calls are no-ops.
  void stop();

  // ---- The test's side ----
  // Stepped: returns once the queue's thread is between batches, so nothing more is taken.
  void set_stepped(unsigned queue, bool stepped);
  void set_all_stepped(bool stepped);
  // Threaded: chains are taken and never answered (a device that went quiet).
  void set_silent(unsigned queue, bool silent);
  // Chains the driver published that the device has not taken.
  size_t available(unsigned queue);
  // Waits until at least n chains are available; false at the deadline.
  bool wait_available(unsigned queue, size_t n, std::chrono::milliseconds timeout);
  // Takes up to `max` available chains; the test owns them until it answers or completes them.
  std::vector<DeviceChain> take(unsigned queue, size_t max = kAll);
  // Hands taken chains to the handler, which replies (faults, holds, reordering included).
  void answer(unsigned queue, std::vector<DeviceChain> chains);
  // take + answer; returns how many chains were served.
  size_t serve(unsigned queue, size_t max = kAll);
  // Signals the queue's call eventfd whatever EVENT_IDX says (a spurious interrupt).
  void interrupt(unsigned queue);
  bool lost() const { return lost_.load(); }
  // The driver stopped the device (Transport::stop returned: no queue is served any more).
  bool stopped() const { return stopped_.load(); }
  uint64_t kicks(unsigned queue) const;
  uint64_t chains_taken(unsigned queue) const;
  // Whether the driver now asks to be interrupted for the queue's next used element, and how
  // many interrupts the device has signalled on the queue (what the driver asked for).
  bool wants_interrupt(unsigned queue) const;
  uint64_t interrupts_signalled(unsigned queue) const;
  // Why the queue stopped serving (the driver published something a device must refuse).
  std::string error(unsigned queue) const;

  // ---- DeviceQueues (the handler's side; also usable raw by a test) ----
  void complete(unsigned queue, uint32_t id, uint32_t len) override;
  void complete_all(unsigned queue, const Used& used) override;
  void jump_used_idx(unsigned queue, uint16_t by) override;
  // Fires the liveness eventfd: the driver sees the device lost; nothing more is answered.
  void lose() override;
  // Sets DEVICE_NEEDS_RESET and raises the config interrupt. The queues go on as they were, so
  // completions may race the failure.
  void set_needs_reset();
  // A config change that is only that (no status bit).
  void config_interrupt();
  unsigned num_queues() const override { return 1 + config_.request_queues; }
  uint16_t queue_size(unsigned queue) const override;

 private:
  struct Queue {
    mutable std::mutex mu;
    std::condition_variable cv;           // kicks, mode changes, stop, batches done
    std::unique_ptr<DeviceModel> model;   // set by setup_queue, dropped by stop
    virtio::AvailRing* avail = nullptr;   // the driver's avail ring, translated
    uint16_t size = 0;
    bool stepped = false;
    bool silent = false;
    bool busy = false;   // the device thread is handing a batch to the handler
    bool look = true;    // the device thread looks at the ring even without a kick
    uint64_t kicks = 0;
    uint64_t kicks_seen = 0;
    uint64_t taken = 0;
    uint64_t signalled = 0;
    std::vector<DeviceChain> swallowed;  // silent: taken, never answered
    std::string error;
    int call_fd = -1;
    std::thread thread;
  };

  Queue& queue(unsigned index) const;
  template <class T>
  T read_locked(unsigned index, T Queue::*field) const;
  // Under q.mu: pops up to max chains; a refused chain stops the queue (q.error).
  std::vector<DeviceChain> pop(Queue& q, size_t max);
  // Under q.mu: chains available; when stepped, asks for a kick at the next publication.
  size_t count_available(Queue& q);
  void run(unsigned index);
  void signal(Queue& q, bool interrupt);
  std::byte* translate(uint64_t addr, uint64_t len) const;

  LoopbackConfig config_;
  ChainHandler& handler_;
  std::atomic<uint64_t> driver_features_{0};
  // The device's own mapping of the driver's memfd, as a vhost-user backend has: it stays valid
  // for held chains after the driver unmapped its side.
  std::byte* map_ = nullptr;
  size_t map_len_ = 0;
  std::vector<std::unique_ptr<Queue>> queues_;
  int liveness_fd_ = -1;
  int config_fd_ = -1;
  std::atomic<bool> needs_reset_{false};
  std::atomic<bool> lost_{false};
  std::atomic<bool> stopping_{false};
  std::atomic<bool> stopped_{false};
  bool started_ = false;
};

}  // namespace virtiofs::test
