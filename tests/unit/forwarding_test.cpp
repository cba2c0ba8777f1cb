// The FUSE bridge's protocol decisions: routes and reply room per opcode, and FUSE_INIT settled
// between kernel and device.
#include <gtest/gtest.h>

#include <cstring>

#include "fuse/forwarding.hpp"

namespace virtiofs::fuse {
namespace {

fuse_in_header header(uint32_t opcode) {
  fuse_in_header h{};
  h.opcode = opcode;
  h.unique = 42;
  return h;
}

template <class T>
std::span<const std::byte> bytes(const T& v) {
  return std::as_bytes(std::span(&v, 1));
}

TEST(Forwarding, RoutesByOpcode) {
  EXPECT_EQ(classify(header(FUSE_INIT), {}, 1 << 20).route, Route::kInit);
  EXPECT_EQ(classify(header(FUSE_FORGET), {}, 1 << 20).route, Route::kForget);
  EXPECT_EQ(classify(header(FUSE_BATCH_FORGET), {}, 1 << 20).route, Route::kForget);
  EXPECT_EQ(classify(header(FUSE_INTERRUPT), {}, 1 << 20).route, Route::kHiprio);
  EXPECT_EQ(classify(header(FUSE_NOTIFY_REPLY), {}, 1 << 20).route, Route::kDrop);
  auto destroy = classify(header(FUSE_DESTROY), {}, 1 << 20);
  EXPECT_EQ(destroy.route, Route::kReply);
  EXPECT_EQ(destroy.error, 0);
  for (uint32_t op : {uint32_t{FUSE_IOCTL}, uint32_t{FUSE_POLL}, uint32_t{FUSE_SETUPMAPPING},
                      uint32_t{CUSE_INIT}}) {
    auto f = classify(header(op), {}, 1 << 20);
    EXPECT_EQ(f.route, Route::kReply) << op;
    EXPECT_EQ(f.error, ENOSYS) << op;
  }
  // Fixed-size replies and opcodes this build does not know go to the device with small room.
  for (uint32_t op : {uint32_t{FUSE_LOOKUP}, uint32_t{FUSE_GETATTR}, uint32_t{FUSE_WRITE}, 52u, 999u}) {
    auto f = classify(header(op), {}, 1 << 20);
    EXPECT_EQ(f.route, Route::kDevice) << op;
    EXPECT_EQ(f.reply_bytes, kSmallReply) << op;
  }
}

TEST(Forwarding, SizedRepliesGetRoomForTheirPayload) {
  fuse_read_in read{};
  read.size = 1 << 20;
  auto f = classify(header(FUSE_READ), bytes(read), 1 << 20);
  EXPECT_EQ(f.route, Route::kDevice);
  EXPECT_EQ(f.reply_bytes, sizeof(fuse_out_header) + (1 << 20));
  read.size = 100;  // exact room: a device that writes more breaks the ring's length check
  EXPECT_EQ(classify(header(FUSE_READDIRPLUS), bytes(read), 1 << 20).reply_bytes,
            sizeof(fuse_out_header) + 100);
  fuse_getxattr_in xattr{};
  xattr.size = 65536;
  EXPECT_EQ(classify(header(FUSE_GETXATTR), bytes(xattr), 1 << 20).reply_bytes,
            sizeof(fuse_out_header) + 65536);
}

// What /dev/fuse takes (fuse_dev_do_write: error <= -512 is EINVAL), not what FUSE allows.
TEST(Forwarding, ErrorsTheKernelRefusesBecomeEIO) {
  EXPECT_EQ(kernel_errno(0), 0);
  EXPECT_EQ(kernel_errno(ENOENT), ENOENT);
  EXPECT_EQ(kernel_errno(511), 511);
  EXPECT_EQ(kernel_errno(512), EIO);
  EXPECT_EQ(kernel_errno(600), EIO);
  EXPECT_EQ(kernel_errno(4095), EIO);
  EXPECT_EQ(kernel_errno(-5), EIO);
}

TEST(Forwarding, OversizedOrTruncatedRequestsAreRefused) {
  fuse_read_in read{};
  read.size = (1 << 20) + 1;
  auto f = classify(header(FUSE_READ), bytes(read), 1 << 20);
  EXPECT_EQ(f.route, Route::kReply);
  EXPECT_EQ(f.error, EINVAL);
  std::byte few[4]{};
  EXPECT_EQ(classify(header(FUSE_READ), few, 1 << 20).error, EINVAL);
  EXPECT_EQ(classify(header(FUSE_LISTXATTR), few, 1 << 20).error, EINVAL);
}

KernelInit kernel_init(uint32_t minor, uint64_t flags, uint32_t readahead = 1 << 17) {
  fuse_init_in in{};
  in.major = 7;
  in.minor = minor;
  in.max_readahead = readahead;
  in.flags = static_cast<uint32_t>(flags) | FUSE_INIT_EXT;
  in.flags2 = static_cast<uint32_t>(flags >> 32);
  KernelInit k;
  EXPECT_FALSE(parse_kernel_init(bytes(in), k));
  return k;
}

TEST(Forwarding, KernelInitParsing) {
  KernelInit k;
  fuse_init_in in{};
  in.major = 7;
  in.minor = 31;
  in.flags = FUSE_ASYNC_READ;
  // Kernels before 7.36 send 16 bytes.
  EXPECT_FALSE(parse_kernel_init(std::as_bytes(std::span(&in, 1)).first(16), k));
  EXPECT_EQ(k.flags, uint64_t{FUSE_ASYNC_READ});
  EXPECT_TRUE(parse_kernel_init(std::as_bytes(std::span(&in, 1)).first(8), k));
  in.major = 6;
  EXPECT_TRUE(parse_kernel_init(bytes(in), k));
}

TEST(Forwarding, OfferToTheDeviceKeepsOnlyPassThroughFlags) {
  const uint64_t splice = FUSE_SPLICE_WRITE | FUSE_SPLICE_MOVE | FUSE_SPLICE_READ;
  const uint64_t dax = FUSE_MAP_ALIGNMENT | FUSE_HAS_INODE_DAX;
  auto k = kernel_init(45, FUSE_ASYNC_READ | FUSE_MAX_PAGES | FUSE_WRITEBACK_CACHE | splice | dax);
  const uint64_t offer = device_offer(k);
  EXPECT_EQ(offer & (splice | dax), 0u);
  EXPECT_EQ(offer & (FUSE_ASYNC_READ | FUSE_MAX_PAGES | FUSE_WRITEBACK_CACHE),
            uint64_t{FUSE_ASYNC_READ | FUSE_MAX_PAGES | FUSE_WRITEBACK_CACHE});
  EXPECT_EQ(device_minor(k), uint32_t{FUSE_KERNEL_MINOR_VERSION});
  EXPECT_EQ(device_minor(kernel_init(31, 0)), 31u);
}

// Locks stay with the guest kernel unless the mount asks for the device's (-o remote_locks).
TEST(Forwarding, LockFlagsOnlyWithRemoteLocks) {
  const uint64_t locks = FUSE_POSIX_LOCKS | FUSE_FLOCK_LOCKS;
  auto k = kernel_init(45, FUSE_ASYNC_READ | locks);
  EXPECT_EQ(device_offer(k) & locks, 0u);
  EXPECT_EQ(device_offer(k, true) & locks, locks);
  Negotiated device;
  device.major = 7;
  device.minor = 36;
  device.flags = FUSE_ASYNC_READ | locks;  // a device that would lock (virtiofsd -o posix_lock,flock)
  device.max_write = 1 << 20;
  device.max_pages = 256;
  fuse_init_out out{};
  make_kernel_init_reply(k, device, 1 << 20, out);
  EXPECT_EQ(out.flags & locks, 0u) << "the kernel must keep its locks";
  make_kernel_init_reply(k, device, 1 << 20, out, true);
  EXPECT_EQ(out.flags & locks, locks);
}

TEST(Forwarding, KernelReplyIsTheIntersectionAndTheSmallest) {
  auto k = kernel_init(45, FUSE_ASYNC_READ | FUSE_MAX_PAGES | FUSE_POSIX_LOCKS, 1 << 17);
  Negotiated device;
  device.major = 7;
  device.minor = 36;
  device.flags = FUSE_ASYNC_READ | FUSE_MAX_PAGES | FUSE_FLOCK_LOCKS;  // FLOCK not asked for
  device.max_write = 1 << 20;
  device.max_pages = 256;
  device.max_readahead = 1 << 20;
  device.max_background = 64;
  device.congestion_threshold = 48;
  device.time_gran = 1;
  fuse_init_out out{};
  const uint32_t len = make_kernel_init_reply(k, device, 512 * 1024, out);
  EXPECT_EQ(len, sizeof(fuse_init_out));
  EXPECT_EQ(out.major, 7u);
  EXPECT_EQ(out.minor, 36u);
  EXPECT_EQ(out.flags, uint32_t{FUSE_ASYNC_READ | FUSE_MAX_PAGES});
  EXPECT_EQ(out.max_write, 512u * 1024);  // the bridge's staging limit wins
  EXPECT_EQ(out.max_pages, 128u);
  EXPECT_EQ(out.max_readahead, 1u << 17);  // the kernel's wins
  EXPECT_EQ(out.max_background, 64u);
  EXPECT_EQ(out.congestion_threshold, 48u);
  EXPECT_EQ(out.time_gran, 1u);
}

TEST(Forwarding, OpcodeNames) {
  EXPECT_STREQ(opcode_name(FUSE_LOOKUP), "LOOKUP");
  EXPECT_STREQ(opcode_name(FUSE_COPY_FILE_RANGE), "COPY_FILE_RANGE");
  EXPECT_STREQ(opcode_name(7), "opcode 7");
  EXPECT_STREQ(opcode_name(100000), "opcode 100000");
}

}  // namespace
}  // namespace virtiofs::fuse
