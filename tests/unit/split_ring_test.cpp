// The driver ring against an in-process device model that follows the spec's device side.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>

#include "support/device_model.hpp"
#include "virtio/split_ring.hpp"

using namespace virtiofs;
using namespace virtiofs::virtio;
using virtiofs::test::DeviceModel;
using virtiofs::test::TestRingMemory;

namespace {

struct Fixture {
  Fixture(uint16_t size, bool event_idx, bool indirect)
      : mem(size), ring(size, mem.ring, event_idx, indirect), device(mem.ring, size, event_idx) {}
  TestRingMemory mem;
  SplitRing ring;
  DeviceModel device;
};

std::vector<Segment> segments(std::vector<std::byte>& buf, size_t readable, size_t writable) {
  std::vector<Segment> s;
  for (size_t i = 0; i < readable + writable; ++i)
    s.push_back(Segment{reinterpret_cast<uint64_t>(buf.data() + i * 16), 16, i >= readable});
  return s;
}

size_t collect(SplitRing& ring, std::vector<UsedElement>& out) {
  std::error_code ec;
  out.resize(64);
  size_t n = ring.collect_used(out, ec);
  EXPECT_FALSE(ec);
  out.resize(n);
  return n;
}

}  // namespace

TEST(SplitRing, DirectChainReachesDeviceInOrder) {
  Fixture f(8, false, false);
  std::vector<std::byte> buf(256);
  auto segs = segments(buf, 2, 1);
  ASSERT_FALSE(f.ring.add(segs, 42, nullptr));
  EXPECT_EQ(f.ring.num_free(), 5);
  EXPECT_FALSE(f.device.pop()) << "nothing is visible before kick_prepare publishes it";
  EXPECT_TRUE(f.ring.kick_prepare());
  auto chain = f.device.pop();
  ASSERT_TRUE(chain);
  EXPECT_FALSE(chain->indirect);
  ASSERT_EQ(chain->buffers.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(chain->buffers[i].ptr, buf.data() + i * 16);
    EXPECT_EQ(chain->buffers[i].writable, i == 2);
  }
  f.device.push(chain->head, 16);
  std::vector<UsedElement> used;
  ASSERT_EQ(collect(f.ring, used), 1u);
  EXPECT_EQ(used[0].token, 42u);
  EXPECT_EQ(used[0].len, 16u);
  EXPECT_EQ(f.ring.num_free(), 8);
}

TEST(SplitRing, IndirectTableTakesOneDescriptor) {
  Fixture f(8, false, true);
  auto table = f.mem.make_table(16);
  std::vector<std::byte> buf(512);
  // Six descriptors go to single-segment requests; two are left.
  auto one = segments(buf, 1, 0);
  for (uint32_t i = 0; i < 6; ++i) ASSERT_FALSE(f.ring.add(one, 100 + i, nullptr));
  auto segs = segments(buf, 4, 3);  // more segments than free descriptors
  ASSERT_FALSE(f.ring.add(segs, 7, &table));
  EXPECT_EQ(f.ring.num_free(), 1);
  f.ring.kick_prepare();
  for (int i = 0; i < 6; ++i) f.device.pop();
  auto chain = f.device.pop();
  ASSERT_TRUE(chain);
  EXPECT_TRUE(chain->indirect);
  ASSERT_EQ(chain->buffers.size(), 7u);
  EXPECT_EQ(chain->buffers[6].ptr, buf.data() + 6 * 16);
  EXPECT_TRUE(chain->buffers[6].writable);
  EXPECT_FALSE(chain->buffers[3].writable);
  f.device.push(chain->head, 48);
  std::vector<UsedElement> used;
  ASSERT_EQ(collect(f.ring, used), 1u);
  EXPECT_EQ(used[0].token, 7u);
  EXPECT_EQ(used[0].len, 48u);
  EXPECT_EQ(f.ring.num_free(), 2);
}

TEST(SplitRing, TooManySegmentsWithoutIndirectIsRefused) {
  Fixture f(4, false, false);
  std::vector<std::byte> buf(512);
  auto segs = segments(buf, 3, 2);
  EXPECT_EQ(f.ring.add(segs, 1, nullptr), std::errc::invalid_argument);
}

TEST(SplitRing, WritableBeforeReadableIsRefused) {
  Fixture f(8, false, false);
  std::vector<std::byte> buf(64);
  std::vector<Segment> segs = {{reinterpret_cast<uint64_t>(buf.data()), 8, true},
                               {reinterpret_cast<uint64_t>(buf.data() + 8), 8, false}};
  EXPECT_EQ(f.ring.add(segs, 1, nullptr), std::errc::invalid_argument);
  EXPECT_EQ(f.ring.num_free(), 8);
}

TEST(SplitRing, FullRingReportsNoSpaceUntilACompletion) {
  Fixture f(4, false, false);
  std::vector<std::byte> buf(256);
  auto segs = segments(buf, 1, 1);
  ASSERT_FALSE(f.ring.add(segs, 1, nullptr));
  ASSERT_FALSE(f.ring.add(segs, 2, nullptr));
  EXPECT_EQ(f.ring.add(segs, 3, nullptr), std::errc::no_buffer_space);
  f.ring.kick_prepare();
  auto c = f.device.pop();
  f.device.push(c->head, 0);
  std::vector<UsedElement> used;
  ASSERT_EQ(collect(f.ring, used), 1u);
  EXPECT_FALSE(f.ring.add(segs, 3, nullptr));
}

TEST(SplitRing, OutOfOrderCompletionsKeepTheFreeListWhole) {
  Fixture f(16, true, false);
  std::mt19937 rng(1234);
  std::vector<std::byte> buf(1024);
  std::vector<uint32_t> expected_tokens;
  uint32_t next_token = 0;
  for (int round = 0; round < 200; ++round) {
    // Fill with chains of random length, then complete them in a random order.
    std::vector<uint32_t> tokens;
    for (;;) {
      auto segs = segments(buf, 1 + rng() % 3, rng() % 3);
      if (f.ring.add(segs, next_token, nullptr)) break;
      tokens.push_back(next_token++);
    }
    f.ring.kick_prepare();
    std::vector<test::DeviceChain> chains;
    while (auto c = f.device.pop()) chains.push_back(*c);
    ASSERT_EQ(chains.size(), tokens.size());
    std::shuffle(chains.begin(), chains.end(), rng);
    for (auto& c : chains) f.device.push(c.head, 0);
    std::vector<UsedElement> used;
    collect(f.ring, used);
    ASSERT_EQ(used.size(), tokens.size());
    std::vector<uint32_t> got;
    for (auto& u : used) got.push_back(u.token);
    std::sort(got.begin(), got.end());
    EXPECT_EQ(got, tokens);
    ASSERT_EQ(f.ring.num_free(), 16);
  }
}

TEST(SplitRing, IndicesWrapAround16Bits) {
  Fixture f(4, true, true);
  auto table = f.mem.make_table(4);
  std::vector<std::byte> buf(256);
  auto segs = segments(buf, 1, 1);
  for (uint32_t i = 0; i < 70000; ++i) {
    ASSERT_FALSE(f.ring.add(segs, i, &table));
    f.ring.kick_prepare();
    auto c = f.device.pop();
    ASSERT_TRUE(c);
    f.device.push(c->head, 16);
    std::vector<UsedElement> used;
    ASSERT_EQ(collect(f.ring, used), 1u);
    ASSERT_EQ(used[0].token, i);
  }
  EXPECT_EQ(f.device.last_avail(), static_cast<uint16_t>(70000));
}

TEST(SplitRing, EventIdxSuppressesKicksUntilTheDeviceAsks) {
  Fixture f(8, true, false);
  std::vector<std::byte> buf(256);
  auto segs = segments(buf, 1, 0);
  // The device asks to be told when avail passes index 0: the first publish notifies.
  f.device.set_avail_event(0);
  ASSERT_FALSE(f.ring.add(segs, 1, nullptr));
  EXPECT_TRUE(f.ring.kick_prepare());
  // The device is busy and asks only when index 3 is passed.
  f.device.set_avail_event(3);
  ASSERT_FALSE(f.ring.add(segs, 2, nullptr));
  EXPECT_FALSE(f.ring.kick_prepare());
  ASSERT_FALSE(f.ring.add(segs, 3, nullptr));
  EXPECT_FALSE(f.ring.kick_prepare());
  ASSERT_FALSE(f.ring.add(segs, 4, nullptr));
  EXPECT_TRUE(f.ring.kick_prepare()) << "avail went from 3 to 4, crossing avail_event 3";
  EXPECT_FALSE(f.ring.kick_prepare()) << "nothing new published";
}

TEST(SplitRing, NoNotifyFlagSuppressesKicksWithoutEventIdx) {
  Fixture f(8, false, false);
  std::vector<std::byte> buf(64);
  auto segs = segments(buf, 1, 0);
  f.device.set_notify_suppressed(true);
  ASSERT_FALSE(f.ring.add(segs, 1, nullptr));
  EXPECT_FALSE(f.ring.kick_prepare());
  f.device.set_notify_suppressed(false);
  ASSERT_FALSE(f.ring.add(segs, 2, nullptr));
  EXPECT_TRUE(f.ring.kick_prepare());
}

TEST(SplitRing, EventIdxSuppressesInterruptsWhileDisabled) {
  Fixture f(8, true, false);
  std::vector<std::byte> buf(256);
  auto segs = segments(buf, 1, 0);
  for (uint32_t i = 0; i < 4; ++i) ASSERT_FALSE(f.ring.add(segs, i, nullptr));
  f.ring.kick_prepare();
  EXPECT_FALSE(f.ring.enable_interrupts());  // used_event = 0
  auto c0 = f.device.pop();
  f.device.push(c0->head, 0);
  EXPECT_TRUE(f.device.should_interrupt()) << "used crossed used_event 0";
  f.ring.disable_interrupts();
  std::vector<UsedElement> used;
  ASSERT_EQ(collect(f.ring, used), 1u);
  // While the driver polls, used_event stays behind: the device does not interrupt.
  auto c1 = f.device.pop();
  f.device.push(c1->head, 0);
  EXPECT_FALSE(f.device.should_interrupt());
  // Re-enabling finds the pending entry (no lost wake-up) and asks for the next one.
  EXPECT_TRUE(f.ring.enable_interrupts());
  ASSERT_EQ(collect(f.ring, used), 1u);
  auto c2 = f.device.pop();
  f.device.push(c2->head, 0);
  EXPECT_TRUE(f.device.should_interrupt());
}

// A driver that turns interrupts off before the device publishes (a caller starting to poll)
// must not be interrupted for what it polls: used_event has to move out of the device's reach,
// not merely stay where enable_interrupts() put it.
TEST(SplitRing, EventIdxDisabledBeforeTheDevicePublishesGetsNoInterrupt) {
  Fixture f(8, true, false);
  std::vector<std::byte> buf(256);
  auto segs = segments(buf, 1, 0);
  for (uint32_t i = 0; i < 2; ++i) ASSERT_FALSE(f.ring.add(segs, i, nullptr));
  f.ring.kick_prepare();
  EXPECT_FALSE(f.ring.enable_interrupts());  // used_event = 0: the next entry would interrupt
  EXPECT_TRUE(f.device.wants_interrupt());
  f.ring.disable_interrupts();
  EXPECT_FALSE(f.device.wants_interrupt());
  for (int i = 0; i < 2; ++i) {
    auto c = f.device.pop();
    ASSERT_TRUE(c);
    f.device.push(c->head, 0);
    EXPECT_FALSE(f.device.should_interrupt()) << "entry " << i;
  }
  std::vector<UsedElement> used;
  EXPECT_EQ(collect(f.ring, used), 2u) << "polling finds both";
}

TEST(SplitRing, UsedIdOutOfRangeBreaksTheRing) {
  Fixture f(8, false, false);
  std::vector<std::byte> buf(64);
  auto segs = segments(buf, 1, 1);
  ASSERT_FALSE(f.ring.add(segs, 1, nullptr));
  f.ring.kick_prepare();
  f.device.pop();
  f.device.push(8, 0);
  std::vector<UsedElement> used(4);
  std::error_code ec;
  EXPECT_EQ(f.ring.collect_used(used, ec), 0u);
  EXPECT_EQ(ec, std::errc::io_error);
  EXPECT_TRUE(f.ring.broken());
  EXPECT_EQ(f.ring.add(segs, 2, nullptr), std::errc::io_error) << "a broken ring takes nothing";
}

TEST(SplitRing, UsedIdNotInFlightBreaksTheRing) {
  Fixture f(8, false, false);
  std::vector<std::byte> buf(64);
  auto segs = segments(buf, 1, 1);
  ASSERT_FALSE(f.ring.add(segs, 1, nullptr));  // head 0, descriptors 0..1
  f.ring.kick_prepare();
  auto c = f.device.pop();
  f.device.push(1, 0);  // a descriptor inside the chain, not its head
  std::vector<UsedElement> used(4);
  std::error_code ec;
  f.ring.collect_used(used, ec);
  EXPECT_EQ(ec, std::errc::io_error);
}

TEST(SplitRing, DoubleCompletionBreaksTheRing) {
  Fixture f(8, false, false);
  std::vector<std::byte> buf(64);
  auto segs = segments(buf, 1, 1);
  ASSERT_FALSE(f.ring.add(segs, 1, nullptr));
  ASSERT_FALSE(f.ring.add(segs, 2, nullptr));
  f.ring.kick_prepare();
  auto c = f.device.pop();
  f.device.push(c->head, 0);
  f.device.push(c->head, 0);
  std::vector<UsedElement> used(4);
  std::error_code ec;
  EXPECT_EQ(f.ring.collect_used(used, ec), 1u);
  EXPECT_EQ(ec, std::errc::io_error);
}

TEST(SplitRing, UsedLengthBeyondWritableBytesBreaksTheRing) {
  Fixture f(8, false, false);
  std::vector<std::byte> buf(64);
  auto segs = segments(buf, 1, 1);  // 16 writable bytes
  ASSERT_FALSE(f.ring.add(segs, 1, nullptr));
  f.ring.kick_prepare();
  auto c = f.device.pop();
  f.device.push(c->head, 17);
  std::vector<UsedElement> used(4);
  std::error_code ec;
  EXPECT_EQ(f.ring.collect_used(used, ec), 0u);
  EXPECT_EQ(ec, std::errc::io_error);
}

TEST(SplitRing, UsedIndexRunningAheadBreaksTheRing) {
  Fixture f(8, false, false);
  std::vector<std::byte> buf(64);
  auto segs = segments(buf, 1, 1);
  ASSERT_FALSE(f.ring.add(segs, 1, nullptr));
  f.ring.kick_prepare();
  f.device.force_used_idx(5);  // claims five completions with one request in flight
  std::vector<UsedElement> used(8);
  std::error_code ec;
  EXPECT_EQ(f.ring.collect_used(used, ec), 0u);
  EXPECT_EQ(ec, std::errc::io_error);
}

TEST(SplitRing, QueueSizeValidation) {
  EXPECT_TRUE(is_valid_queue_size(1));
  EXPECT_TRUE(is_valid_queue_size(32768));
  EXPECT_FALSE(is_valid_queue_size(0));
  EXPECT_FALSE(is_valid_queue_size(100));
  EXPECT_FALSE(is_valid_queue_size(65536));
}

TEST(SplitRing, LargestQueueWorks) {
  Fixture f(32768, true, false);
  std::vector<std::byte> buf(64);
  auto segs = segments(buf, 1, 0);
  for (uint32_t i = 0; i < 32768; ++i) ASSERT_FALSE(f.ring.add(segs, i, nullptr));
  EXPECT_EQ(f.ring.num_free(), 0);
  f.ring.kick_prepare();
  uint32_t n = 0;
  while (auto c = f.device.pop()) {
    f.device.push(c->head, 0);
    ++n;
  }
  EXPECT_EQ(n, 32768u);
  std::vector<UsedElement> used(32768);
  std::error_code ec;
  EXPECT_EQ(f.ring.collect_used(used, ec), 32768u);
  EXPECT_FALSE(ec);
}
