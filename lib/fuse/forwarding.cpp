#include "fuse/forwarding.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iterator>

#include "fuse/init.hpp"

namespace virtiofs::fuse {

namespace {

template <class T>
bool read_args(std::span<const std::byte> args, T& out) {
  if (args.size() < sizeof(T)) return false;
  std::memcpy(&out, args.data(), sizeof(T));
  return true;
}

// A reply carrying up to `size` bytes of data after a fixed struct of `fixed` bytes. The room
// is exact: virtiofsd 7.2 fills all the room it is given on READ (4 KiB asked, 8 KiB sent),
// which the kernel then refuses; exact room makes such a reply a ring violation instead.
Forwarding sized(uint32_t size, uint32_t fixed, uint32_t max_payload) {
  if (size > max_payload) return {Route::kReply, 0, EINVAL};
  return {Route::kDevice, static_cast<uint32_t>(sizeof(fuse_out_header)) + std::max(size, fixed), 0};
}

}  // namespace

Forwarding classify(const fuse_in_header& header, std::span<const std::byte> args,
                    uint32_t max_payload) {
  switch (header.opcode) {
    case FUSE_INIT:
      return {Route::kInit, 0, 0};
    case FUSE_FORGET:
    case FUSE_BATCH_FORGET:
      return {Route::kForget, 0, 0};
    case FUSE_INTERRUPT:
      return {Route::kHiprio, sizeof(fuse_out_header), 0};
    case FUSE_NOTIFY_REPLY:
      return {Route::kDrop, 0, 0};
    case FUSE_DESTROY:
      // The bridge sends its own DESTROY when it stops; the device must not see two.
      return {Route::kReply, 0, 0};
    case FUSE_READ:
    case FUSE_READDIR:
    case FUSE_READDIRPLUS: {
      fuse_read_in in{};
      if (!read_args(args, in)) return {Route::kReply, 0, EINVAL};
      return sized(in.size, 0, max_payload);
    }
    case FUSE_GETXATTR:
    case FUSE_LISTXATTR: {
      fuse_getxattr_in in{};
      if (!read_args(args, in)) return {Route::kReply, 0, EINVAL};
      return sized(in.size, sizeof(fuse_getxattr_out), max_payload);
    }
    // Replies sized by the caller in ways the bridge does not stage (IOCTL, POLL), DAX mapping
    // requests (no shared window), and CUSE: not supported, said at once rather than guessed.
    case FUSE_IOCTL:
    case FUSE_POLL:
    case CUSE_INIT:
    case FUSE_SETUPMAPPING:
    case FUSE_REMOVEMAPPING:
      return {Route::kReply, 0, ENOSYS};
    default:
      // Fixed-size replies, and opcodes this build does not know: the device answers (ENOSYS
      // for what it does not implement) within the small reply room.
      return {Route::kDevice, kSmallReply, 0};
  }
}

std::error_code parse_kernel_init(std::span<const std::byte> args, KernelInit& out) {
  fuse_init_in in{};
  // Kernels before 7.36 send the first 16 bytes only.
  constexpr size_t kShortInit = offsetof(fuse_init_in, flags2);
  if (args.size() < kShortInit) return std::make_error_code(std::errc::protocol_error);
  std::memcpy(&in, args.data(), std::min(args.size(), sizeof(in)));
  if (args.size() < sizeof(in)) in.flags2 = 0;
  out.major = in.major;
  out.minor = in.minor;
  out.max_readahead = in.max_readahead;
  out.flags = in.flags;
  if (in.flags & FUSE_INIT_EXT) out.flags |= static_cast<uint64_t>(in.flags2) << 32;
  if (in.major != FUSE_KERNEL_VERSION || in.minor < kMinMinor)
    return std::make_error_code(std::errc::protocol_error);
  return {};
}

uint64_t device_offer(const KernelInit& kernel, bool remote_locks) {
  return kernel.flags & (kBridgeFlags | (remote_locks ? kRemoteLockFlags : 0));
}

uint32_t device_minor(const KernelInit& kernel) {
  return std::min<uint32_t>(kernel.minor, FUSE_KERNEL_MINOR_VERSION);
}

uint32_t make_kernel_init_reply(const KernelInit& kernel, const Negotiated& device,
                                uint32_t max_transfer, fuse_init_out& out, bool remote_locks) {
  out = fuse_init_out{};
  out.major = FUSE_KERNEL_VERSION;
  out.minor = std::min(device_minor(kernel), device.minor);
  const uint64_t flags = device.flags & device_offer(kernel, remote_locks);
  out.flags = static_cast<uint32_t>(flags);
  out.flags2 = static_cast<uint32_t>(flags >> 32);
  out.max_readahead = std::min(kernel.max_readahead, device.max_readahead);
  out.max_background = device.max_background;
  out.congestion_threshold = device.congestion_threshold;
  out.time_gran = device.time_gran;
  const uint32_t pages = std::max<uint32_t>(1, std::min(device.max_pages, max_transfer / 4096));
  out.max_pages = static_cast<uint16_t>(pages);
  out.max_write = std::max<uint32_t>(4096, std::min({device.max_write, max_transfer, pages * 4096}));
  return out.minor >= 23 ? sizeof(fuse_init_out) : FUSE_COMPAT_22_INIT_OUT_SIZE;
}

}  // namespace virtiofs::fuse

namespace virtiofs::fuse {

const char* opcode_name(uint32_t opcode) {
  static constexpr const char* kNames[] = {
      nullptr,       "LOOKUP",     "FORGET",       "GETATTR",     "SETATTR",     "READLINK",
      "SYMLINK",     nullptr,      "MKNOD",        "MKDIR",       "UNLINK",      "RMDIR",
      "RENAME",      "LINK",       "OPEN",         "READ",        "WRITE",       "STATFS",
      "RELEASE",     nullptr,      "FSYNC",        "SETXATTR",    "GETXATTR",    "LISTXATTR",
      "REMOVEXATTR", "FLUSH",      "INIT",         "OPENDIR",     "READDIR",     "RELEASEDIR",
      "FSYNCDIR",    "GETLK",      "SETLK",        "SETLKW",      "ACCESS",      "CREATE",
      "INTERRUPT",   "BMAP",       "DESTROY",      "IOCTL",       "POLL",        "NOTIFY_REPLY",
      "BATCH_FORGET", "FALLOCATE", "READDIRPLUS",  "RENAME2",     "LSEEK",       "COPY_FILE_RANGE",
      "SETUPMAPPING", "REMOVEMAPPING", "SYNCFS",   "TMPFILE",     "STATX"};
  if (opcode < std::size(kNames) && kNames[opcode]) return kNames[opcode];
  thread_local char buf[24];
  std::snprintf(buf, sizeof(buf), "opcode %u", opcode);
  return buf;
}

}  // namespace virtiofs::fuse
