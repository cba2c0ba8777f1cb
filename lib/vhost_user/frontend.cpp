#include "vhost_user/frontend.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

#include "virtio/setup_error.hpp"
#include "virtio/features.hpp"

namespace virtiofs::vhost_user {

namespace {

template <class T>
std::span<const std::byte> bytes_of(const T& v) {
  return std::as_bytes(std::span<const T, 1>(&v, 1));
}

}  // namespace

Frontend::Frontend(const std::string& socket_path) : channel_(socket_path) { handshake(); }

Frontend::Frontend(int connected_fd, std::string name, std::chrono::milliseconds reply_timeout)
    : channel_(connected_fd, std::move(name), reply_timeout) {
  handshake();
}

void Frontend::handshake() {
  channel_.send(Request::kSetOwner, 0, {});
  features_ = get_u64(Request::kGetFeatures);
  // Refused here, as VfioTransport does, before anything is negotiated with a legacy device.
  if (!(features_ & virtio::feature::kVersion1))
    fail(ENOTSUP, "vhost-user backend does not offer VIRTIO_F_VERSION_1 (legacy devices are not "
                  "supported)");
  if (features_ & kFeatureProtocolFeatures) {
    const uint64_t offered = get_u64(Request::kGetProtocolFeatures);
    protocol_features_ = offered & kFrontendProtocolFeatures;
    channel_.send(Request::kSetProtocolFeatures, 0, bytes_of(protocol_features_));
    if (protocol_features_ & protocol_feature::kMq) {
      const uint64_t n = get_u64(Request::kGetQueueNum);
      if (n == 0 || n > 1024) fail(EPROTO, "vhost-user GET_QUEUE_NUM: implausible count " + std::to_string(n));
      queue_num_ = static_cast<unsigned>(n);
    }
  }
}

Frontend::~Frontend() {
  try {
    stop();
  } catch (...) {
    // The backend may already be gone; its queues are stopped either way.
  }
  for (auto& q : queues_) {
    if (q.kick >= 0) close(q.kick);
    if (q.call >= 0) close(q.call);
  }
}

uint64_t Frontend::get_u64(Request req) {
  channel_.send(req, 0, {});
  uint64_t v = 0;
  channel_.receive_reply(req, std::as_writable_bytes(std::span<uint64_t, 1>(&v, 1)));
  return v;
}

void Frontend::send_checked(Request req, std::span<const std::byte> payload,
                            std::span<const int> fds) {
  const bool ack = protocol_features_ & protocol_feature::kReplyAck;
  channel_.send(req, ack ? kFlagNeedReply : 0, payload, fds);
  if (!ack) return;
  uint64_t status = 0;
  channel_.receive_reply(req, std::as_writable_bytes(std::span<uint64_t, 1>(&status, 1)));
  if (status != 0)
    fail(EPROTO, std::string("vhost-user ") + request_name(req) + ": backend refused (status " +
                     std::to_string(status) + ")");
}

void Frontend::set_driver_features(uint64_t features) {
  if (features & ~device_features()) fail(EINVAL, "driver features not offered by the device");
  uint64_t v = features | (features_ & kFeatureProtocolFeatures);
  send_checked(Request::kSetFeatures, bytes_of(v));
}

virtio::DeviceConfig Frontend::read_config() {
  virtio::DeviceConfig config;
  if (!(protocol_features_ & protocol_feature::kConfig)) return config;
  ConfigSpace req{};
  req.offset = 0;
  req.size = sizeof(virtio::FsConfig);
  channel_.send(Request::kGetConfig, 0,
                std::as_bytes(std::span(reinterpret_cast<const std::byte*>(&req),
                                        kConfigHeaderSize + req.size)));
  ConfigSpace reply{};
  const size_t got = channel_.receive_reply_upto(
      Request::kGetConfig, std::as_writable_bytes(std::span<ConfigSpace, 1>(&reply, 1)));
  if (got != kConfigHeaderSize + sizeof(virtio::FsConfig) || reply.size != sizeof(virtio::FsConfig))
    fail(EPROTO, "vhost-user GET_CONFIG: reply of " + std::to_string(got) + " bytes");
  virtio::FsConfig fs;
  std::memcpy(&fs, reply.payload, sizeof(fs));
  config.tag = std::string(fs.tag, strnlen(fs.tag, sizeof(fs.tag)));
  config.num_request_queues = fs.num_request_queues.load();
  return config;
}

std::unique_ptr<virtio::DmaRegion> Frontend::allocate_memory(size_t bytes, const std::string& name) {
  // The backend maps the memfd and translates this "guest physical" base to its own mapping.
  constexpr uint64_t kGuestBase = 0x40000000;
  return std::make_unique<virtio::DmaRegion>(bytes, kGuestBase, name);
}

void Frontend::register_memory(const virtio::DmaRegion& region) {
  MemTable table{};
  table.nregions = 1;
  table.regions[0] = MemoryRegion{region.device_base(), region.size(),
                                  reinterpret_cast<uint64_t>(region.base()), 0};
  const int fd = region.fd();
  const size_t len = offsetof(MemTable, regions) + sizeof(MemoryRegion);
  send_checked(Request::kSetMemTable,
               std::span(reinterpret_cast<const std::byte*>(&table), len), std::span(&fd, 1));
}

void Frontend::setup_queue(const virtio::QueueSetup& q) {
  if (queue_num_ && q.index >= *queue_num_)
    fail(EINVAL, "queue " + std::to_string(q.index) + " beyond the backend's " +
                     std::to_string(*queue_num_) + " queues");
  if (queues_.size() <= q.index) queues_.resize(q.index + 1);
  QueueFds& fds = queues_[q.index];
  fds.kick = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  fds.call = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fds.kick < 0 || fds.call < 0) fail(errno, "eventfd for queue notifications");

  send_checked(Request::kSetVringNum, bytes_of(VringState{q.index, q.size}));
  send_checked(Request::kSetVringBase, bytes_of(VringState{q.index, 0}));
  // SET_VRING_ADDR takes the frontend's own virtual addresses.
  VringAddr addr{q.index, 0, reinterpret_cast<uint64_t>(q.memory.desc),
                 reinterpret_cast<uint64_t>(q.memory.used),
                 reinterpret_cast<uint64_t>(q.memory.avail), 0};
  send_checked(Request::kSetVringAddr, bytes_of(addr));
  const uint64_t idx = q.index;
  send_checked(Request::kSetVringCall, bytes_of(idx), std::span(&fds.call, 1));
  send_checked(Request::kSetVringKick, bytes_of(idx), std::span(&fds.kick, 1));
}

void Frontend::start() {
  if (!(features_ & kFeatureProtocolFeatures)) return;  // rings start enabled without it
  for (uint32_t i = 0; i < queues_.size(); ++i)
    send_checked(Request::kSetVringEnable, bytes_of(VringState{i, 1}));
}

int Frontend::call_fd(unsigned index) const { return queues_.at(index).call; }

void Frontend::notify(unsigned index) {
  const uint64_t one = 1;
  // EAGAIN means the counter is saturated: the backend has a wake-up pending anyway.
  [[maybe_unused]] ssize_t n = write(queues_[index].kick, &one, sizeof(one));
}

void Frontend::stop() {
  if (stopped_) return;
  stopped_ = true;
  for (uint32_t i = 0; i < queues_.size(); ++i) {
    channel_.send(Request::kGetVringBase, 0, bytes_of(VringState{i, 0}));
    VringState state{};
    channel_.receive_reply(Request::kGetVringBase,
                           std::as_writable_bytes(std::span<VringState, 1>(&state, 1)));
  }
}

}  // namespace virtiofs::vhost_user
