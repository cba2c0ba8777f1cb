// The session over its public API against the in-process loopback device (MemFs behind
// FsServer): one behaviour per test, every wait bounded, no backend process.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <chrono>
#include <cstring>
#include <deque>
#include <string>
#include <thread>
#include <vector>

#include "fuse/ops.hpp"
#include "support/chain_bytes.hpp"
#include "unit/session_fixture.hpp"

using namespace virtiofs;
using namespace virtiofs::test;

namespace {

TEST_F(SessionLoopback, InitNegotiatesWhatTheDeviceAnswered) {
  start();
  const Negotiated& n = session->negotiated();
  EXPECT_EQ(n.minor, 36u) << "MemFs answers minor 36 at most";
  EXPECT_GT(session->max_transfer(), 0u);
  EXPECT_LE(session->max_transfer(), n.max_write);
  EXPECT_EQ(loop->stat("opcode init"), 1u);
  EXPECT_EQ(loop->device().driver_features(), loop->device().config().features)
      << "the driver accepts every ring feature the loopback offers by default";
}

// One round trip per opcode family, checked against what MemFs holds, over each ring feature
// set and over one interrupt vector for all queues.
struct RingVariant {
  const char* name;
  uint64_t features;
  bool shared_call_fd;
};

class SessionLoopbackRoundTrip : public SessionLoopback,
                                 public ::testing::WithParamInterface<RingVariant> {};

TEST_P(SessionLoopbackRoundTrip, CreateWriteReadGetattrLookupMatchMemFs) {
  LoopbackFsOptions o;
  o.device.features = GetParam().features;
  o.device.shared_call_fd = GetParam().shared_call_fd;
  start(o);

  Created created;
  TestCall& create = run(fuse::make_create(kRootInode, "file", O_RDWR, 0644, 0));
  ASSERT_FALSE(create.ec) << create.ec.message();
  ASSERT_FALSE(fuse::parse(create.reply, created));
  const Inode ino = created.entry.inode;
  EXPECT_EQ(loop->fs().lookups(ino), 1u);

  const std::string data(20000, 'x');  // beyond the slot's inline area: chunks on both ways
  TestCall& write = run(fuse::make_write(ino, created.file.fh, 0, bytes_of(data)));
  ASSERT_FALSE(write.ec) << write.ec.message();
  uint64_t written = 0;
  ASSERT_FALSE(fuse::parse_count(write.reply, fuse::Count::kWritten, written));
  EXPECT_EQ(written, data.size());
  const auto stored = loop->fs().contents(ino);
  ASSERT_TRUE(stored);
  EXPECT_TRUE(std::equal(stored->begin(), stored->end(), bytes_of(data).begin(), bytes_of(data).end()));

  std::vector<std::byte> back(data.size());
  TestCall& read = run(fuse::make_read(ino, created.file.fh, 0, back, false, false));
  ASSERT_FALSE(read.ec) << read.ec.message();
  EXPECT_EQ(read.reply.data_len, data.size());
  EXPECT_TRUE(std::equal(back.begin(), back.end(), bytes_of(data).begin(), bytes_of(data).end()));

  Attr attr;
  TestCall& getattr = run(fuse::make_getattr(ino, nullptr));
  ASSERT_FALSE(getattr.ec);
  ASSERT_FALSE(fuse::parse(getattr.reply, attr));
  EXPECT_EQ(attr.ino, ino);
  EXPECT_EQ(attr.size, data.size());
  EXPECT_TRUE(S_ISREG(attr.mode));

  Entry entry;
  TestCall& lookup = run(fuse::make_lookup(kRootInode, "file"));
  ASSERT_FALSE(lookup.ec);
  ASSERT_FALSE(fuse::parse(lookup.reply, entry));
  EXPECT_EQ(entry.inode, ino);
  EXPECT_EQ(loop->fs().lookups(ino), 2u);

  TestCall& missing = run(fuse::make_lookup(kRootInode, "nothing"));
  EXPECT_EQ(missing.ec, std::errc::no_such_file_or_directory);

  // FORGETs gathered before DESTROY reach the device: MemFs drops both references.
  session->forget(ino, 2);
  session->shutdown();
  EXPECT_EQ(loop->fs().lookups(ino), 0u);
  EXPECT_EQ(loop->stat("opcode destroy"), 1u);
}

INSTANTIATE_TEST_SUITE_P(
    SessionLoopback, SessionLoopbackRoundTrip,
    ::testing::Values(
        RingVariant{"AllFeatures",
                    virtio::feature::kVersion1 | virtio::feature::kRingEventIdx |
                        virtio::feature::kRingIndirectDesc,
                    false},
        RingVariant{"NoEventIdx", virtio::feature::kVersion1 | virtio::feature::kRingIndirectDesc, false},
        RingVariant{"NoIndirect", virtio::feature::kVersion1 | virtio::feature::kRingEventIdx, false},
        RingVariant{"SharedCallFd",
                    virtio::feature::kVersion1 | virtio::feature::kRingEventIdx |
                        virtio::feature::kRingIndirectDesc,
                    true}),
    [](const auto& variant) { return std::string(variant.param.name); });

TEST_F(SessionLoopback, EveryRequestQueueCarriesRequests) {
  constexpr unsigned kQueues = 4;
  LoopbackFsOptions o;
  o.device.request_queues = kQueues;
  start(o, small_session(8, kQueues));
  ASSERT_EQ(session->num_request_queues(), kQueues);
  // The session deals threads out to queues in turn: as many fresh threads, one after the
  // other, cover them all.
  for (unsigned t = 0; t < kQueues; ++t) {
    std::thread([&] {
      TestCall& c = run(fuse::make_getattr(kRootInode, nullptr));
      EXPECT_FALSE(c.ec) << c.ec.message();
    }).join();
  }
  for (unsigned q = 1; q <= kQueues; ++q)
    EXPECT_GE(loop->stat("queue " + std::to_string(q) + " requests"), 1u) << "queue " << q;
}

// With the device stepped, a full ring parks the rest of the calls: nothing beyond the ring's
// room reaches the device, and each completion lets exactly the next parked call in, FIFO.
TEST_F(SessionLoopback, FullRingParksCallsUntilCompletionsFreeRoomInOrder) {
  constexpr size_t kCalls = 20;
  constexpr size_t kRoom = 8;  // queue_size 8, indirect: one descriptor and one slot per call
  start();
  // Distinct files, so each reply says which call it answers.
  std::vector<Inode> inodes;
  for (size_t i = 0; i < kCalls; ++i) {
    Entry e;
    TestCall& c = run(fuse::make_mkdir(kRootInode, "d" + std::to_string(i), 0755, 0));
    ASSERT_FALSE(c.ec);
    ASSERT_FALSE(fuse::parse(c.reply, e));
    inodes.push_back(e.inode);
  }
  auto& dev = loop->device();
  dev.set_stepped(1, true);
  const size_t first = calls.size();
  const uint64_t waits_before = session->stats().waits;

  // submit() must return for every call even though nothing completes: parking, not blocking.
  std::atomic<bool> submitted{false};
  std::thread submitter([&] {
    for (size_t i = 0; i < kCalls; ++i) session->submit(new_call(fuse::make_getattr(inodes[i], nullptr)));
    submitted = true;
  });
  const bool returned = eventually([&] { return submitted.load(); });
  if (!returned) dev.lose();  // unblocks a submitter that sleeps instead of parking
  submitter.join();
  ASSERT_TRUE(returned) << "submit() blocked on a full ring instead of parking the call";

  EXPECT_EQ(dev.available(1), kRoom);
  EXPECT_EQ(session->stats().waits - waits_before, kCalls - kRoom);
  EXPECT_EQ(recorder.count(), first) << "nothing completes while the device is stepped";

  std::vector<test::DeviceChain> held = dev.take(1);
  ASSERT_EQ(held.size(), kRoom);
  std::deque<test::DeviceChain> in_device(held.begin(), held.end());
  size_t next_to_reach_device = kRoom;
  for (size_t done = 0; done < kCalls; ++done) {
    // The oldest chain the device holds is the oldest call still unanswered.
    test::DeviceChain chain = std::move(in_device.front());
    in_device.pop_front();
    auto header = test::request_header(chain);
    ASSERT_TRUE(header);
    EXPECT_EQ(header->nodeid, inodes[done]);
    dev.answer(1, {std::move(chain)});
    ASSERT_TRUE(recorder.wait_count(first + done + 1)) << "completion " << done;
    if (next_to_reach_device < kCalls) {
      // The freed room goes to exactly one parked call: the next in FIFO order.
      ASSERT_TRUE(dev.wait_available(1, 1, kBound)) << "parked call " << next_to_reach_device;
      std::vector<test::DeviceChain> admitted = dev.take(1);
      ASSERT_EQ(admitted.size(), 1u);
      auto h = test::request_header(admitted.front());
      ASSERT_TRUE(h);
      EXPECT_EQ(h->nodeid, inodes[next_to_reach_device]);
      in_device.push_back(std::move(admitted.front()));
      ++next_to_reach_device;
    }
    EXPECT_EQ(dev.available(1), 0u);
  }
  std::lock_guard lock(recorder.mu);
  for (size_t i = 0; i < kCalls; ++i) {
    TestCall& c = calls[first + i];
    EXPECT_EQ(recorder.order[first + i], first + i) << "completions in FIFO order";
    Attr attr;
    ASSERT_FALSE(c.ec) << c.ec.message();
    ASSERT_FALSE(fuse::parse(c.reply, attr));
    EXPECT_EQ(attr.ino, inodes[i]);
  }
}

// FORGETs that find hiprio full stay queued and go when room frees: the device sees them all.
TEST_F(SessionLoopback, ForgetsWaitingForAFullHiprioAreNotLost) {
  constexpr size_t kRoom = 8;  // hiprio slots at queue_size 8 (one descriptor per BATCH_FORGET)
  start();
  auto& dev = loop->device();
  dev.set_stepped(0, true);
  uint64_t sent_nlookup = 0;
  // Each FORGET waits for its gathering to end (1 ms) and then takes a hiprio slot.
  for (size_t i = 0; i < kRoom; ++i) {
    session->forget(100 + i, i + 1);
    sent_nlookup += i + 1;
    ASSERT_TRUE(dev.wait_available(0, i + 1, kBound)) << "batch " << i;
  }
  // Hiprio is full: these have nowhere to go until the device hands slots back.
  for (size_t i = 0; i < 5; ++i) {
    session->forget(200 + i, 10 * (i + 1));
    sent_nlookup += 10 * (i + 1);
  }
  const uint64_t forgets_sent = session->stats().forgets;
  EXPECT_EQ(forgets_sent, kRoom) << "only the batches that fit went to the device";
  EXPECT_EQ(dev.available(0), kRoom);
  EXPECT_EQ(dev.serve(0), kRoom);
  // The completions free hiprio slots; the queued FORGETs follow as a batch.
  ASSERT_TRUE(dev.wait_available(0, 1, kBound)) << "the queued FORGETs were dropped";
  dev.serve(0);
  EXPECT_EQ(loop->stat("forget_nlookup"), sent_nlookup);
  EXPECT_EQ(loop->stat("forget_entries"), kRoom + 5);
  EXPECT_EQ(session->stats().forgets, kRoom + 5);
}

TEST_F(SessionLoopback, LostDeviceFailsPendingCallsWithEnotconn) {
  start();
  auto& dev = loop->device();
  dev.set_silent(1, true);
  const size_t first = calls.size();
  for (int i = 0; i < 3; ++i) session->submit(new_call(fuse::make_getattr(kRootInode, nullptr)));
  ASSERT_TRUE(eventually([&] { return dev.chains_taken(1) >= 1 + 3; }))  // INIT was the first
      << "the silent device did not take the calls";
  EXPECT_EQ(recorder.count(), first);

  const auto lost_at = std::chrono::steady_clock::now();
  dev.lose();
  ASSERT_TRUE(recorder.wait_count(first + 3, 1000ms)) << "pending calls outlived the device";
  EXPECT_LT(std::chrono::steady_clock::now() - lost_at, 1000ms);
  for (size_t i = first; i < first + 3; ++i) EXPECT_EQ(calls[i].ec, std::errc::not_connected);
  EXPECT_EQ(session->failure(), std::errc::not_connected);

  TestCall& later = new_call(fuse::make_getattr(kRootInode, nullptr));
  session->submit(later);
  EXPECT_TRUE(is_done(later)) << "a call after the loss fails at once, on the caller's thread";
  EXPECT_EQ(later.ec, std::errc::not_connected);
}

// A used element that names a head the driver did not hand over: the device is broken, and
// every call fails with EIO, the one held by the device included.
TEST_F(SessionLoopback, BadUsedElementFailsEverythingWithEio) {
  LoopbackFsOptions o;
  o.server.hold = FUSE_STATFS;  // held until interrupted (hold_ms 0: for ever)
  o.faults = {"used-id-not-in-flight@getattr"};
  start(o);
  const size_t first = calls.size();
  session->submit(new_call(fuse::make_statfs(kRootInode)));
  ASSERT_TRUE(eventually([&] { return loop->stat("opcode statfs") == 1; }));
  session->submit(new_call(fuse::make_getattr(kRootInode, nullptr)));
  ASSERT_TRUE(recorder.wait_count(first + 2)) << "a broken device left calls pending";
  EXPECT_EQ(calls[first].ec, std::errc::io_error) << "the held STATFS";
  EXPECT_EQ(calls[first + 1].ec, std::errc::io_error) << "the GETATTR answered badly";
  EXPECT_EQ(session->failure(), std::errc::io_error);
}

// The fault plan strikes chains a stepped device serves too: a used index moved past what the
// ring holds breaks the device.
TEST_F(SessionLoopback, SteppedServingAppliesTheFaultPlan) {
  LoopbackFsOptions o;
  o.faults = {"used-idx-jump@getattr"};
  start(o);
  auto& dev = loop->device();
  dev.set_stepped(1, true);
  const size_t first = calls.size();
  session->submit(new_call(fuse::make_getattr(kRootInode, nullptr)));
  ASSERT_TRUE(dev.wait_available(1, 1, kBound));
  EXPECT_EQ(recorder.count(), first) << "nothing is answered before the test serves it";
  EXPECT_EQ(dev.serve(1), 1u);
  // The element before the jump is well formed: the session may deliver it before it sees the
  // jump, so the call ends either way; the session must then be failed.
  ASSERT_TRUE(recorder.wait_count(first + 1));
  ASSERT_TRUE(eventually([&] { return session->failure() == std::errc::io_error; }))
      << "a used index beyond the ring went unnoticed";
  TestCall& later = new_call(fuse::make_getattr(kRootInode, nullptr));
  session->submit(later);
  EXPECT_TRUE(is_done(later));
  EXPECT_EQ(later.ec, std::errc::io_error);
}

// The same through the stepped device's raw completion: an id beyond the ring.
TEST_F(SessionLoopback, UsedIdBeyondTheRingFailsWithEio) {
  start();
  auto& dev = loop->device();
  dev.set_stepped(1, true);
  const size_t first = calls.size();
  session->submit(new_call(fuse::make_getattr(kRootInode, nullptr)));
  ASSERT_TRUE(dev.wait_available(1, 1, kBound));
  std::vector<test::DeviceChain> chains = dev.take(1);
  ASSERT_EQ(chains.size(), 1u);
  auto header = test::request_header(chains.front());
  ASSERT_TRUE(header);
  const uint32_t len = test::scatter(chains.front(), test::make_reply(header->unique, 0));
  dev.complete(1, dev.queue_size(1) + 3u, len);
  ASSERT_TRUE(recorder.wait_count(first + 1));
  EXPECT_EQ(calls[first].ec, std::errc::io_error);
  EXPECT_EQ(session->failure(), std::errc::io_error);
}

}  // namespace
