#include "support/test_backend/vhost_user_device.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <stdexcept>

#include "vhost_user/protocol.hpp"
#include "virtio/features.hpp"

namespace virtiofs::test {

using namespace vhost_user;

namespace {

constexpr uint64_t kDeviceFeatures = virtio::feature::kVersion1 | virtio::feature::kRingEventIdx |
                                     virtio::feature::kRingIndirectDesc | kFeatureProtocolFeatures;

struct Message {
  Header header{};
  std::byte payload[kMaxPayload]{};
  std::vector<int> fds;
};

// Reads one whole message; false on hang-up.
bool receive(int fd, Message& m) {
  iovec iov{&m.header, sizeof(m.header)};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxMemTableRegions)];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | MSG_WAITALL);
  if (n <= 0) return false;
  if (n != sizeof(m.header)) throw std::runtime_error("short vhost-user header");
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int f;
      std::memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      m.fds.push_back(f);
    }
  }
  if (m.header.size > kMaxPayload) throw std::runtime_error("vhost-user payload too large");
  if (m.header.size > 0 && recv(fd, m.payload, m.header.size, MSG_WAITALL) != m.header.size)
    throw std::runtime_error("short vhost-user payload");
  return true;
}

void reply(int fd, const Header& request, const void* payload, uint32_t size) {
  Header h{request.request, kVersion | kFlagReply, size};
  std::byte buf[sizeof(Header) + kMaxPayload];
  std::memcpy(buf, &h, sizeof(h));
  std::memcpy(buf + sizeof(h), payload, size);
  if (send(fd, buf, sizeof(h) + size, MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof(h) + size))
    throw std::runtime_error("vhost-user reply failed");
}

void reply_u64(int fd, const Header& request, uint64_t v) { reply(fd, request, &v, sizeof(v)); }

// The payload as a T; messages with a variable tail may be shorter (at least `min` bytes).
template <class T>
T payload_as(const Message& m, size_t min = sizeof(T)) {
  if (m.header.size < min) throw std::runtime_error("vhost-user payload too short");
  T v{};
  std::memcpy(&v, m.payload, std::min<size_t>(m.header.size, sizeof(T)));
  return v;
}

}  // namespace

VhostUserDevice::VhostUserDevice(const DeviceConfig& config, ChainHandler& handler)
    : config_(config), handler_(handler) {
  for (unsigned i = 0; i < num_queues(); ++i) vrings_.push_back(std::make_unique<Vring>());
}

VhostUserDevice::~VhostUserDevice() {
  for (unsigned i = 0; i < vrings_.size(); ++i) stop_vring(i);
  for (auto& v : vrings_) {
    if (v->kick >= 0) close(v->kick);
    if (v->call >= 0) close(v->call);
  }
  unmap_all();
}

void VhostUserDevice::unmap_all() {
  for (auto& r : regions_) munmap(r.map - (r.map_len - r.size), r.map_len);
  regions_.clear();
}

std::byte* VhostUserDevice::from_guest(uint64_t addr, uint64_t len) const {
  for (const auto& r : regions_)
    if (addr >= r.guest_addr && len <= r.size && addr - r.guest_addr <= r.size - len)
      return r.map + (addr - r.guest_addr);
  return nullptr;
}

std::byte* VhostUserDevice::from_user(uint64_t addr, uint64_t len) const {
  for (const auto& r : regions_)
    if (addr >= r.user_addr && len <= r.size && addr - r.user_addr <= r.size - len)
      return r.map + (addr - r.user_addr);
  return nullptr;
}

void VhostUserDevice::serve(int fd) {
  try {
    while (handle_message(fd)) {
    }
  } catch (const std::exception&) {
    // A frontend that breaks the protocol loses its device, as with virtiofsd.
  }
  for (unsigned i = 0; i < vrings_.size(); ++i) stop_vring(i);
}

bool VhostUserDevice::handle_message(int fd) {
  Message m;
  if (!receive(fd, m)) return false;
  auto close_fds = [&] {
    for (int f : m.fds) close(f);
    m.fds.clear();
  };
  const Header& h = m.header;
  auto vring_index = [&](uint64_t raw) {
    const unsigned i = static_cast<unsigned>(raw & 0xff);
    if (i >= vrings_.size()) throw std::runtime_error("vring index out of range");
    return i;
  };
  switch (static_cast<Request>(h.request)) {
    case Request::kGetFeatures:
      reply_u64(fd, h, kDeviceFeatures);
      return true;
    case Request::kSetFeatures:
      features_ = payload_as<uint64_t>(m);
      break;
    case Request::kSetOwner:
      break;
    case Request::kGetProtocolFeatures:
      reply_u64(fd, h, protocol_feature::kMq | protocol_feature::kReplyAck |
                           (config_.offer_config ? protocol_feature::kConfig : 0));
      return true;
    case Request::kSetProtocolFeatures:
      protocol_features_ = payload_as<uint64_t>(m);
      break;
    case Request::kGetQueueNum:
      reply_u64(fd, h, num_queues());
      return true;
    case Request::kGetConfig: {
      ConfigSpace c = payload_as<ConfigSpace>(m, kConfigHeaderSize);
      virtio::FsConfig fs{};
      std::memcpy(fs.tag, config_.tag.data(), std::min<size_t>(config_.tag.size(), sizeof(fs.tag)));
      fs.num_request_queues.store(config_.request_queues);
      c.size = std::min<uint32_t>(c.size, sizeof(fs));
      std::memcpy(c.payload, &fs, c.size);
      reply(fd, h, &c, kConfigHeaderSize + c.size);
      return true;
    }
    case Request::kSetMemTable: {
      const MemTable t = payload_as<MemTable>(m, offsetof(MemTable, regions));
      if (t.nregions > kMaxMemTableRegions || t.nregions != m.fds.size() ||
          m.header.size < offsetof(MemTable, regions) + t.nregions * sizeof(MemoryRegion))
        throw std::runtime_error("memory table and fds disagree");
      unmap_all();
      for (uint32_t i = 0; i < t.nregions; ++i) {
        const MemoryRegion& r = t.regions[i];
        const size_t len = r.memory_size + r.mmap_offset;
        void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, m.fds[i], 0);
        if (p == MAP_FAILED) throw std::runtime_error("mmap of frontend memory failed");
        regions_.push_back(Region{r.guest_phys_addr, r.memory_size, r.userspace_addr,
                                  static_cast<std::byte*>(p) + r.mmap_offset, len});
      }
      close_fds();
      break;
    }
    case Request::kSetVringNum: {
      auto s = payload_as<VringState>(m);
      if (!virtio::is_valid_queue_size(s.num)) throw std::runtime_error("bad vring size");
      vrings_.at(vring_index(s.index))->size = static_cast<uint16_t>(s.num);
      break;
    }
    case Request::kSetVringBase: {
      auto s = payload_as<VringState>(m);
      vrings_.at(vring_index(s.index))->base = static_cast<uint16_t>(s.num);
      break;
    }
    case Request::kSetVringAddr: {
      auto a = payload_as<VringAddr>(m);
      Vring& v = *vrings_.at(vring_index(a.index));
      v.desc = a.desc_user_addr;
      v.avail = a.avail_user_addr;
      v.used = a.used_user_addr;
      break;
    }
    case Request::kSetVringKick:
    case Request::kSetVringCall:
    case Request::kSetVringErr: {
      const uint64_t raw = payload_as<uint64_t>(m);
      Vring& v = *vrings_.at(vring_index(raw));
      int f = -1;
      if (!(raw & kVringNoFd) && !m.fds.empty()) {
        f = m.fds.front();
        m.fds.erase(m.fds.begin());
      }
      const auto req = static_cast<Request>(h.request);
      int* slot = req == Request::kSetVringKick ? &v.kick
                  : req == Request::kSetVringCall ? &v.call
                                                   : nullptr;  // errors are not reported
      if (slot && *slot >= 0) close(*slot);
      if (slot)
        *slot = f;
      else if (f >= 0)
        close(f);
      break;
    }
    case Request::kSetVringEnable: {
      auto s = payload_as<VringState>(m);
      const unsigned i = vring_index(s.index);
      if (s.num)
        start_vring(i);
      else
        stop_vring(i);
      break;
    }
    case Request::kGetVringBase: {
      auto s = payload_as<VringState>(m);
      const unsigned i = vring_index(s.index);
      stop_vring(i);
      Vring& v = *vrings_[i];
      s.num = v.model ? v.model->last_avail() : v.base;
      reply(fd, h, &s, sizeof(s));
      return true;
    }
    default:
      close_fds();
      throw std::runtime_error("unsupported vhost-user request " + std::to_string(h.request));
  }
  close_fds();
  if (h.flags & kFlagNeedReply) reply_u64(fd, h, 0);
  return true;
}

void VhostUserDevice::start_vring(unsigned index) {
  Vring& v = *vrings_[index];
  if (v.running.load()) return;
  if (v.size == 0 || v.kick < 0) throw std::runtime_error("vring started before it was set up");
  virtio::RingMemory rm;
  rm.desc = reinterpret_cast<virtio::Desc*>(from_user(v.desc, virtio::desc_table_bytes(v.size)));
  rm.avail = reinterpret_cast<virtio::AvailRing*>(from_user(v.avail, virtio::avail_ring_bytes(v.size)));
  rm.used = reinterpret_cast<virtio::UsedRing*>(from_user(v.used, virtio::used_ring_bytes(v.size)));
  if (!rm.desc || !rm.avail || !rm.used) throw std::runtime_error("vring outside the memory table");
  const bool event_idx = features_ & virtio::feature::kRingEventIdx;
  {
    // Other queues' threads complete onto this one (held requests): publish under its lock.
    std::lock_guard lock(v.used_mu);
    v.model = std::make_unique<DeviceModel>(
        rm, v.size, event_idx, [this](uint64_t addr, uint64_t len) { return from_guest(addr, len); });
  }
  v.running.store(true);
  v.thread = std::thread([this, index] { run_vring(index); });
}

void VhostUserDevice::stop_vring(unsigned index) {
  Vring& v = *vrings_[index];
  if (!v.running.exchange(false)) return;
  const uint64_t one = 1;
  // Wake the thread so it sees the stop at once.
  [[maybe_unused]] ssize_t n = write(v.kick, &one, sizeof(one));
  v.thread.join();
}

void VhostUserDevice::run_vring(unsigned index) {
  Vring& v = *vrings_[index];
  std::vector<DeviceChain> chains;
  try {
    while (v.running.load()) {
      chains.clear();
      while (chains.size() < v.size) {
        std::optional<DeviceChain> c;
        {
          std::lock_guard lock(v.used_mu);
          c = v.model->pop();
          if (!c) {
            // Ask for a kick past what we took, then look again: no lost wake-up.
            v.model->set_avail_event(v.model->last_avail());
            std::atomic_thread_fence(std::memory_order_seq_cst);
            c = v.model->pop();
          }
        }
        if (!c) break;
        chains.push_back(std::move(*c));
      }
      if (!chains.empty()) {
        handler_.on_chains(index, chains);
        continue;
      }
      pollfd p{v.kick, POLLIN, 0};
      if (poll(&p, 1, 100) > 0) {
        uint64_t count;
        [[maybe_unused]] ssize_t n = read(v.kick, &count, sizeof(count));
      }
    }
  } catch (const std::exception&) {
    // The driver published something a device must refuse: this queue stops, as virtiofsd's would.
    v.running.store(false);
  }
}

void VhostUserDevice::complete(unsigned queue, uint32_t id, uint32_t len) {
  complete_all(queue, {{id, len}});
}

void VhostUserDevice::complete_all(unsigned queue, const Used& used) {
  Vring& v = *vrings_.at(queue);
  bool interrupt;
  {
    std::lock_guard lock(v.used_mu);
    if (!v.model) return;
    for (auto [id, len] : used) v.model->push(id, len);
    interrupt = v.model->should_interrupt();
  }
  signal(queue, interrupt);
}

void VhostUserDevice::jump_used_idx(unsigned queue, uint16_t by) {
  Vring& v = *vrings_.at(queue);
  {
    std::lock_guard lock(v.used_mu);
    if (!v.model) return;
    v.model->force_used_idx(static_cast<uint16_t>(v.model->used_idx() + by));
  }
  signal(queue, true);
}

void VhostUserDevice::lose() {
  // TSan would sleep a second in an exit handler; a crash has none.
  kill(getpid(), SIGKILL);
}

void VhostUserDevice::signal(unsigned queue, bool interrupt) {
  const int call = vrings_[queue]->call;
  if (!interrupt || call < 0) return;
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t n = write(call, &one, sizeof(one));
}

}  // namespace virtiofs::test
