// The vhost-user Frontend against a scripted backend: the test writes the backend's replies on a
// socketpair before each step, then reads back what the frontend sent, in order. Covers the
// handshake with and without CONFIG, the memory table, per-queue setup, REPLY_ACK and refusals.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <system_error>

#include "vhost_user/frontend.hpp"
#include "refusal.hpp"
#include "vhost_user_peer.hpp"
#include "virtio/features.hpp"

namespace virtiofs::vhost_user {
namespace {

using namespace std::chrono_literals;
using test::Message;
using test::Peer;
using virtiofs::test::mentions;
using virtiofs::test::refusal;
namespace pf = protocol_feature;

constexpr auto kTimeout = 500ms;
constexpr uint64_t kVersion1 = virtio::feature::kVersion1;
// What Debian 12's virtiofsd offers (DESIGN.md §4): MQ, LOG_SHMFD, REPLY_ACK, BACKEND_REQ,
// BACKEND_SEND_FD, HOST_NOTIFIER, CONFIGURE_MEM_SLOTS; no CONFIG.
constexpr uint64_t kVirtiofsdProtocolFeatures =
    pf::kMq | (1u << 1) | pf::kReplyAck | (1u << 5) | (1u << 10) | (1u << 11) |
    pf::kConfigureMemSlots;
constexpr uint64_t kWithProtocolFeatures = kVersion1 | kFeatureProtocolFeatures;

class VhostUserFrontend : public ::testing::Test {
 protected:
  // Writes the backend's handshake replies, then lets the frontend connect and read them.
  void connect(uint64_t features, uint64_t protocol_features = 0, uint64_t queue_num = 2) {
    peer.reply(Request::kGetFeatures, features);
    if (features & kFeatureProtocolFeatures) {
      peer.reply(Request::kGetProtocolFeatures, protocol_features);
      if (protocol_features & pf::kMq) peer.reply(Request::kGetQueueNum, queue_num);
    }
    frontend = std::make_unique<Frontend>(peer.take_frontend_end(), "test-backend", kTimeout);
  }

  // The next message the frontend sent, which must be `req`.
  Message expect(Request req) {
    auto m = peer.receive();
    if (!m) {
      ADD_FAILURE() << "nothing sent, expected " << request_name(req);
      return {};
    }
    EXPECT_EQ(m->request(), req) << "sent " << request_name(m->request()) << ", expected "
                                 << request_name(req);
    return std::move(*m);
  }
  void expect_handshake(uint64_t sent_protocol_features, bool queue_num) {
    EXPECT_EQ(expect(Request::kSetOwner).header.size, 0u);
    expect(Request::kGetFeatures);
    expect(Request::kGetProtocolFeatures);
    const Message set = expect(Request::kSetProtocolFeatures);
    EXPECT_EQ(set.header.flags, kVersion);
    EXPECT_EQ(set.header.size, sizeof(uint64_t));
    EXPECT_EQ(set.as<uint64_t>(), sent_protocol_features);
    if (queue_num) expect(Request::kGetQueueNum);
  }
  void expect_nothing_more() {
    auto m = peer.receive(0ms);
    EXPECT_FALSE(m) << "unexpected " << request_name(m->request());
  }

  // Rings for queue `index` carved from `region`.
  static virtio::QueueSetup queue(virtio::DmaRegion& region, unsigned index, uint16_t size) {
    virtio::RingMemory rm;
    rm.desc = reinterpret_cast<virtio::Desc*>(region.carve(virtio::desc_table_bytes(size), 16));
    rm.avail =
        reinterpret_cast<virtio::AvailRing*>(region.carve(virtio::avail_ring_bytes(size), 2));
    rm.used = reinterpret_cast<virtio::UsedRing*>(region.carve(virtio::used_ring_bytes(size), 4));
    rm.desc_addr = region.device_addr(rm.desc);
    rm.avail_addr = region.device_addr(rm.avail);
    rm.used_addr = region.device_addr(rm.used);
    return virtio::QueueSetup{index, size, rm};
  }

  // A gone backend makes ~Frontend's stop() fail at once instead of waiting for replies.
  void TearDown() override {
    peer.hang_up();
    frontend.reset();
  }

  Peer peer;
  std::unique_ptr<Frontend> frontend;
};

TEST_F(VhostUserFrontend, WithoutProtocolFeaturesAsksOnlyForFeatures) {
  connect(kVersion1 | virtio::feature::kRingEventIdx);
  expect(Request::kSetOwner);
  expect(Request::kGetFeatures);
  expect_nothing_more();
  EXPECT_EQ(frontend->device_features(), kVersion1 | virtio::feature::kRingEventIdx);
  EXPECT_FALSE(frontend->max_queues());
  const auto config = frontend->read_config();
  EXPECT_FALSE(config.tag);
  EXPECT_FALSE(config.num_request_queues);
  frontend->start();  // rings start enabled without protocol features: nothing to send
  expect_nothing_more();
}

// virtiofsd's offer: no CONFIG, so tag and queue count are the caller's to supply.
TEST_F(VhostUserFrontend, NegotiatesVirtiofsdsProtocolFeaturesWithoutConfig) {
  connect(kWithProtocolFeatures, kVirtiofsdProtocolFeatures, 2);
  expect_handshake(pf::kMq | pf::kReplyAck | pf::kConfigureMemSlots, true);
  expect_nothing_more();
  EXPECT_EQ(frontend->device_features(), kVersion1);
  EXPECT_EQ(frontend->protocol_features(), pf::kMq | pf::kReplyAck | pf::kConfigureMemSlots);
  EXPECT_EQ(frontend->max_queues(), 2u);
  const auto config = frontend->read_config();
  EXPECT_FALSE(config.tag);
  EXPECT_FALSE(config.num_request_queues);
  expect_nothing_more();
}

TEST_F(VhostUserFrontend, ReadsTagAndQueueCountWithConfig) {
  connect(kWithProtocolFeatures, pf::kConfig);
  expect_handshake(pf::kConfig, false);
  expect_nothing_more();
  EXPECT_FALSE(frontend->max_queues());

  struct {
    uint32_t offset = 0, size = sizeof(virtio::FsConfig), flags = 0;
    virtio::FsConfig fs{};
  } reply;
  std::strcpy(reply.fs.tag, "myfs");
  reply.fs.num_request_queues.store(3);
  peer.reply(Request::kGetConfig, reply);
  const auto config = frontend->read_config();
  EXPECT_EQ(config.tag, "myfs");
  EXPECT_EQ(config.num_request_queues, 3u);

  const Message asked = expect(Request::kGetConfig);
  ASSERT_EQ(asked.header.size, kConfigHeaderSize + sizeof(virtio::FsConfig));
  const auto head = asked.as<decltype(reply)>();
  EXPECT_EQ(head.offset, 0u);
  EXPECT_EQ(head.size, sizeof(virtio::FsConfig));
}

TEST_F(VhostUserFrontend, RefusesAConfigReplyOfAnotherSize) {
  connect(kWithProtocolFeatures, pf::kConfig);
  const uint32_t head[3] = {0, 8, 0};
  peer.reply(Request::kGetConfig, head);
  EXPECT_EQ(refusal([&] { frontend->read_config(); }).code().value(), EPROTO);
}

// A legacy (pre-1.0) backend is refused before anything is negotiated with it.
TEST_F(VhostUserFrontend, RefusesABackendWithoutVersion1) {
  const auto e = refusal([&] { connect(kFeatureProtocolFeatures, kVirtiofsdProtocolFeatures); });
  EXPECT_EQ(e.code().value(), ENOTSUP);
  EXPECT_TRUE(mentions(e, "VIRTIO_F_VERSION_1")) << e.what();
  expect(Request::kSetOwner);
  expect(Request::kGetFeatures);
  expect_nothing_more();
}

TEST_F(VhostUserFrontend, RefusesAnImplausibleQueueCount) {
  peer.reply(Request::kGetFeatures, kWithProtocolFeatures);
  peer.reply(Request::kGetProtocolFeatures, pf::kMq);
  peer.reply(Request::kGetQueueNum, uint64_t{0});
  const auto e =
      refusal([&] { Frontend f(peer.take_frontend_end(), "test-backend", kTimeout); });
  EXPECT_EQ(e.code().value(), EPROTO);
}

TEST_F(VhostUserFrontend, RefusesFeaturesTheBackendDidNotOffer) {
  connect(kVersion1);
  const uint64_t not_offered = kVersion1 | virtio::feature::kRingEventIdx;
  EXPECT_EQ(refusal([&] { frontend->set_driver_features(not_offered); }).code().value(), EINVAL);
  expect(Request::kSetOwner);
  expect(Request::kGetFeatures);
  expect_nothing_more();
}

TEST_F(VhostUserFrontend, SetMemTableCarriesTheRegionsMemfd) {
  connect(kVersion1);
  auto region = frontend->allocate_memory(64 * 1024, "vhost-user-test");
  std::memcpy(region->base(), "shared", 6);
  frontend->register_memory(*region);
  expect(Request::kSetOwner);
  expect(Request::kGetFeatures);

  const Message m = expect(Request::kSetMemTable);
  EXPECT_EQ(m.header.flags, kVersion);
  ASSERT_EQ(m.header.size, offsetof(MemTable, regions) + sizeof(MemoryRegion));
  const auto table = m.as<MemTable>();
  EXPECT_EQ(table.nregions, 1u);
  EXPECT_EQ(table.regions[0].guest_phys_addr, region->device_base());
  EXPECT_EQ(table.regions[0].memory_size, region->size());
  EXPECT_EQ(table.regions[0].userspace_addr, reinterpret_cast<uint64_t>(region->base()));
  EXPECT_EQ(table.regions[0].mmap_offset, 0u);

  ASSERT_EQ(m.fds.size(), 1u);
  struct stat got {}, ours {};
  ASSERT_EQ(fstat(m.fds[0].get(), &got), 0);
  ASSERT_EQ(fstat(region->fd(), &ours), 0);
  EXPECT_EQ(got.st_ino, ours.st_ino);
  EXPECT_EQ(got.st_dev, ours.st_dev);
  char seen[6] = {};
  ASSERT_EQ(pread(m.fds[0].get(), seen, sizeof(seen), 0), 6);
  EXPECT_EQ(std::memcmp(seen, "shared", 6), 0);
  expect_nothing_more();
}

// virtiofsd's offer, so every SET_* waits for a REPLY_ACK: the whole setup in order.
TEST_F(VhostUserFrontend, SetsUpEachQueueInOrderWithReplyAck) {
  connect(kWithProtocolFeatures, kVirtiofsdProtocolFeatures, 2);
  expect_handshake(pf::kMq | pf::kReplyAck | pf::kConfigureMemSlots, true);

  constexpr uint16_t kSize = 16;
  const Request per_queue[] = {Request::kSetVringNum, Request::kSetVringBase,
                               Request::kSetVringAddr, Request::kSetVringCall,
                               Request::kSetVringKick};
  peer.ack(Request::kSetFeatures);
  peer.ack(Request::kSetMemTable);
  for (int q = 0; q < 2; ++q)
    for (Request r : per_queue) peer.ack(r);
  for (int q = 0; q < 2; ++q) peer.ack(Request::kSetVringEnable);

  frontend->set_driver_features(kVersion1);
  auto region = frontend->allocate_memory(64 * 1024, "vhost-user-test");
  frontend->register_memory(*region);
  const virtio::QueueSetup queues[] = {queue(*region, 0, kSize), queue(*region, 1, kSize)};
  for (const auto& q : queues) frontend->setup_queue(q);
  frontend->start();

  const Message features = expect(Request::kSetFeatures);
  EXPECT_EQ(features.header.flags, kVersion | kFlagNeedReply);
  EXPECT_EQ(features.as<uint64_t>(), kWithProtocolFeatures);
  EXPECT_EQ(expect(Request::kSetMemTable).header.flags, kVersion | kFlagNeedReply);
  for (const auto& q : queues) {
    SCOPED_TRACE("queue " + std::to_string(q.index));
    const Message num = expect(Request::kSetVringNum);
    EXPECT_EQ(num.as<VringState>().index, q.index);
    EXPECT_EQ(num.as<VringState>().num, kSize);
    const Message base = expect(Request::kSetVringBase);
    EXPECT_EQ(base.as<VringState>().index, q.index);
    EXPECT_EQ(base.as<VringState>().num, 0u);
    const Message addr = expect(Request::kSetVringAddr);
    ASSERT_EQ(addr.header.size, sizeof(VringAddr));
    const auto a = addr.as<VringAddr>();
    EXPECT_EQ(a.index, q.index);
    // The frontend's own virtual addresses, which the backend maps through the memory table.
    EXPECT_EQ(a.desc_user_addr, reinterpret_cast<uint64_t>(q.memory.desc));
    EXPECT_EQ(a.avail_user_addr, reinterpret_cast<uint64_t>(q.memory.avail));
    EXPECT_EQ(a.used_user_addr, reinterpret_cast<uint64_t>(q.memory.used));

    const Message call = expect(Request::kSetVringCall);
    EXPECT_EQ(call.as<uint64_t>(), q.index);  // an fd comes, so no kVringNoFd bit
    ASSERT_EQ(call.fds.size(), 1u);
    const uint64_t one = 1;
    ASSERT_EQ(write(call.fds[0].get(), &one, sizeof(one)), 8);
    uint64_t signalled = 0;
    EXPECT_EQ(read(frontend->call_fd(q.index), &signalled, sizeof(signalled)), 8);
    EXPECT_EQ(signalled, 1u);

    const Message kick = expect(Request::kSetVringKick);
    EXPECT_EQ(kick.as<uint64_t>(), q.index);
    ASSERT_EQ(kick.fds.size(), 1u);
    frontend->notify(q.index);
    uint64_t kicked = 0;
    EXPECT_EQ(read(kick.fds[0].get(), &kicked, sizeof(kicked)), 8);
    EXPECT_EQ(kicked, 1u);
    for (const Message* m : {&num, &base, &addr, &call, &kick})
      EXPECT_EQ(m->header.flags, kVersion | kFlagNeedReply);
  }
  for (uint32_t i = 0; i < 2; ++i) {
    const Message enable = expect(Request::kSetVringEnable);
    EXPECT_EQ(enable.as<VringState>().index, i);
    EXPECT_EQ(enable.as<VringState>().num, 1u);
  }
  expect_nothing_more();

  for (uint32_t i = 0; i < 2; ++i) peer.reply(Request::kGetVringBase, VringState{i, 0});
  frontend->stop();
  for (uint32_t i = 0; i < 2; ++i)
    EXPECT_EQ(expect(Request::kGetVringBase).as<VringState>().index, i);
  expect_nothing_more();
}

TEST_F(VhostUserFrontend, RefusesAQueueBeyondTheBackendsCount) {
  connect(kWithProtocolFeatures, pf::kMq, 2);
  auto region = frontend->allocate_memory(64 * 1024, "vhost-user-test");
  EXPECT_EQ(refusal([&] { frontend->setup_queue(queue(*region, 2, 16)); }).code().value(), EINVAL);
}

// A backend that falls silent mid-setup costs one timeout: ~Frontend must not then ask it for
// each queue's base and wait again.
TEST_F(VhostUserFrontend, AfterATimeoutNothingMoreIsAskedOrAwaited) {
  connect(kWithProtocolFeatures, kVirtiofsdProtocolFeatures, 2);
  expect_handshake(pf::kMq | pf::kReplyAck | pf::kConfigureMemSlots, true);
  for (Request r : {Request::kSetVringNum, Request::kSetVringBase, Request::kSetVringAddr,
                    Request::kSetVringCall, Request::kSetVringKick})
    peer.ack(r);
  auto region = frontend->allocate_memory(64 * 1024, "vhost-user-test");
  frontend->setup_queue(queue(*region, 0, 16));
  EXPECT_EQ(refusal([&] { frontend->start(); }).code().value(), ETIMEDOUT);

  const auto start = std::chrono::steady_clock::now();
  frontend.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - start, kTimeout);
  for (Request r : {Request::kSetVringNum, Request::kSetVringBase, Request::kSetVringAddr,
                    Request::kSetVringCall, Request::kSetVringKick, Request::kSetVringEnable})
    expect(r);
  expect_nothing_more();
}

TEST_F(VhostUserFrontend, ANonZeroReplyAckStatusFailsTheCall) {
  connect(kWithProtocolFeatures, kVirtiofsdProtocolFeatures, 2);
  peer.ack(Request::kSetFeatures, 1);
  const auto e = refusal([&] { frontend->set_driver_features(kVersion1); });
  EXPECT_EQ(e.code().value(), EPROTO);
  EXPECT_TRUE(mentions(e, "SET_FEATURES: backend refused (status 1)")) << e.what();
}

}  // namespace
}  // namespace virtiofs::vhost_user
