// The vhost-user frontend: the part QEMU plays for a vhost-user-fs backend such as virtiofsd.
// Implements the Transport seam over a Channel, shared memfd memory and eventfds.
#pragma once

#include <poll.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "vhost_user/channel.hpp"
#include "virtio/transport.hpp"

namespace virtiofs::vhost_user {

class Frontend final : public virtio::Transport {
 public:
  // Connects and performs SET_OWNER, GET_FEATURES and the protocol-feature exchange.
  explicit Frontend(const std::string& socket_path);
  // The same over an adopted connected stream socket (socketpair: tests); `name` appears in errors.
  Frontend(int connected_fd, std::string name,
           std::chrono::milliseconds reply_timeout = Channel::kDefaultReplyTimeout);
  ~Frontend() override;

  uint64_t device_features() override { return features_ & ~kFeatureProtocolFeatures; }
  void set_driver_features(uint64_t features) override;
  std::optional<unsigned> max_queues() override { return queue_num_; }
  virtio::DeviceConfig read_config() override;
  std::unique_ptr<virtio::DmaRegion> allocate_memory(size_t bytes, const std::string& name) override;
  void register_memory(const virtio::DmaRegion& region) override;
  void setup_queue(const virtio::QueueSetup& queue) override;
  void start() override;
  int call_fd(unsigned index) const override;
  void notify(unsigned index) override;
  LivenessWatch liveness() const override { return {channel_.fd(), POLLRDHUP}; }
  void stop() override;

  uint64_t protocol_features() const { return protocol_features_; }

 private:
  struct QueueFds {
    int kick = -1;
    int call = -1;
  };

  // SET_OWNER, GET_FEATURES, the protocol features and GET_QUEUE_NUM when MQ is negotiated.
  void handshake();
  // Sends a request; when REPLY_ACK is negotiated waits for the backend's status.
  void send_checked(Request req, std::span<const std::byte> payload, std::span<const int> fds = {});
  uint64_t get_u64(Request req);

  Channel channel_;
  uint64_t features_ = 0;
  uint64_t protocol_features_ = 0;
  std::optional<unsigned> queue_num_;
  std::vector<QueueFds> queues_;
  bool stopped_ = false;
};

}  // namespace virtiofs::vhost_user
