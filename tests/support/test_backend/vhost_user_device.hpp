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
#include "support/device_queues.hpp"

namespace virtiofs::test {

struct DeviceConfig {
  unsigned request_queues = 1;
  std::string tag = "testfs";
  bool offer_config = true;  // answer GET_CONFIG (virtiofsd 7.2 does not)
};

class VhostUserDevice final : public DeviceQueues {
 public:
  VhostUserDevice(const DeviceConfig& config, ChainHandler& handler);
  ~VhostUserDevice() override;

  // Serves one frontend connected on `fd` until it hangs up or breaks the protocol.
  void serve(int fd);

  void complete(unsigned queue, uint32_t id, uint32_t len) override;
  void complete_all(unsigned queue, const Used& used) override;
  void jump_used_idx(unsigned queue, uint16_t by) override;
  // This process is the device: it dies (SIGKILL, as a crash; no exit handlers).
  void lose() override;
  unsigned num_queues() const override { return 1 + config_.request_queues; }
  uint16_t queue_size(unsigned queue) const override { return vrings_.at(queue)->size; }

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
