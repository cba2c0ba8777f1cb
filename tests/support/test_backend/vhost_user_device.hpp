// Test fixture: the device side of vhost-user, the part virtiofsd plays. Accepts one frontend,
// maps its memory table, and runs one thread per virtqueue that hands available chains to a
// handler. Completions may be posted from any thread. Never the default backend of anything.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "support/device_model.hpp"

namespace virtiofs::test {

class ChainHandler {
 public:
  virtual ~ChainHandler() = default;
  // Runs on queue `queue`'s thread with every chain that was available at once.
  virtual void on_chains(unsigned queue, std::vector<DeviceChain>& chains) = 0;
};

struct DeviceConfig {
  unsigned request_queues = 1;
  std::string tag = "testfs";
  bool offer_config = true;  // answer GET_CONFIG (virtiofsd 7.2 does not)
};

class VhostUserDevice {
 public:
  VhostUserDevice(const DeviceConfig& config, ChainHandler& handler);
  ~VhostUserDevice();

  // Serves one frontend connected on `fd` until it hangs up or breaks the protocol.
  void serve(int fd);

  // Puts a used element (any id and len: faults included) and interrupts the driver if it
  // asked for one. Safe from any thread.
  void complete(unsigned queue, uint32_t id, uint32_t len);
  // Several at once, one interrupt decision.
  void complete_all(unsigned queue, const std::vector<std::pair<uint32_t, uint32_t>>& used);
  // Moves queue's used index `by` entries ahead without writing them (a fault).
  void jump_used_idx(unsigned queue, uint16_t by);
  unsigned num_queues() const { return 1 + config_.request_queues; }
  uint16_t queue_size(unsigned queue) const { return vrings_.at(queue)->size; }

 private:
  struct Region {
    uint64_t guest_addr, size, user_addr;
    std::byte* map;
    size_t map_len;
  };
  struct Vring {
    uint16_t size = 0;
    uint16_t base = 0;
    uint64_t desc = 0, avail = 0, used = 0;  // frontend virtual addresses
    int kick = -1, call = -1;
    bool enabled = false;
    std::mutex used_mu;
    std::unique_ptr<DeviceModel> model;
    std::thread thread;
    std::atomic<bool> running{false};
  };

  bool handle_message(int fd);
  void signal(unsigned queue, bool interrupt);
  void start_vring(unsigned index);
  void stop_vring(unsigned index);
  void run_vring(unsigned index);
  std::byte* from_guest(uint64_t addr, uint64_t len) const;
  std::byte* from_user(uint64_t addr, uint64_t len) const;
  void unmap_all();

  DeviceConfig config_;
  ChainHandler& handler_;
  uint64_t features_ = 0;
  uint64_t protocol_features_ = 0;
  std::vector<Region> regions_;
  std::vector<std::unique_ptr<Vring>> vrings_;
};

}  // namespace virtiofs::test
