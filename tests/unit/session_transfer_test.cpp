// Full-size I/O on small rings: with INDIRECT_DESC a request is one ring descriptor whatever its
// segment count (an indirect table may be longer than the ring), so a 1 MiB READ or WRITE fits
// a ring of 2, 8 or 16; without it a chain must fit the ring, and max_transfer says how much.
#include <gtest/gtest.h>

#include "unit/session_fixture.hpp"

using namespace virtiofs;
using namespace virtiofs::test;

namespace {

struct RingCase {
  uint16_t queue_size;
  bool indirect;
};

class SmallRing : public SessionLoopback, public ::testing::WithParamInterface<RingCase> {};

TEST_P(SmallRing, MaxSizeWriteAndReadCompleteAndMatch) {
  LoopbackFsOptions o;
  if (!GetParam().indirect) o.device.features &= ~virtio::feature::kRingIndirectDesc;
  fs::SessionOptions so;  // default chunks: 64 x 64 KiB per queue
  so.queue_size = GetParam().queue_size;
  start(o, so);
  const uint32_t max = session->max_transfer();
  if (GetParam().indirect) {
    EXPECT_EQ(max, 1u << 20) << "INIT negotiated 1 MiB and the ring size must not cut it";
  } else {
    EXPECT_GE(max, 4096u);
  }

  Created created;
  TestCall& create = run(fuse::make_create(kRootInode, "big", O_RDWR, 0644, 0));
  ASSERT_FALSE(create.ec);
  ASSERT_FALSE(fuse::parse(create.reply, created));
  std::string data(max, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 7 + i / 4096);

  TestCall& write = run(fuse::make_write(created.entry.inode, created.file.fh, 0, bytes_of(data)));
  ASSERT_FALSE(write.ec) << write.ec.message();
  uint64_t written = 0;
  ASSERT_FALSE(fuse::parse_count(write.reply, fuse::Count::kWritten, written));
  EXPECT_EQ(written, max);

  std::vector<std::byte> back(max);
  TestCall& read = run(fuse::make_read(created.entry.inode, created.file.fh, 0, back, false, false));
  ASSERT_FALSE(read.ec) << read.ec.message();
  EXPECT_EQ(read.reply.data_len, max);
  EXPECT_TRUE(std::equal(back.begin(), back.end(), bytes_of(data).begin(), bytes_of(data).end()));
}

INSTANTIATE_TEST_SUITE_P(Session, SmallRing,
                         ::testing::Values(RingCase{2, true}, RingCase{8, true}, RingCase{16, true},
                                           RingCase{8, false}, RingCase{16, false}),
                         [](const auto& param_info) {
                           return "Ring" + std::to_string(param_info.param.queue_size) +
                                  (param_info.param.indirect ? "Indirect" : "Chained");
                         });

// A call that needs more buffer chunks than the queue has at all would wait for ever, and every
// call parked behind it too: it is refused with EINVAL, and the queue goes on.
TEST_F(SessionLoopback, ACallNeedingMoreChunksThanTheQueueHasIsRefused) {
  fs::SessionOptions so = small_session();
  so.chunks_per_queue = 2;  // 128 KiB of chunks; max_transfer follows
  start({}, so);
  ASSERT_EQ(session->max_transfer(), 128u * 1024);
  // Within the session's size check (payload + reply data <= max_transfer + inline), but 2
  // chunks one way and 1 the other.
  const std::string in(100 * 1024, 'i');
  std::vector<std::byte> out(30 * 1024);
  fuse::Frame f = fuse::make_getxattr(kRootInode, "user.x", out);
  f.add_in(bytes_of(in));
  TestCall& big = new_call(f);
  session->submit(big);
  ASSERT_TRUE(eventually([&] { return is_done(big); })) << "parked for ever";
  EXPECT_EQ(big.ec, std::errc::invalid_argument);
  EXPECT_FALSE(run(fuse::make_getattr(kRootInode, nullptr)).ec) << "the queue goes on";
}

}  // namespace
