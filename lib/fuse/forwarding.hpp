// What the FUSE bridge needs to know about each request the kernel sends: where it goes, how much
// room its reply needs, and how the kernel's FUSE_INIT is settled against the device's. Pure
// protocol knowledge, no I/O, so it is unit-tested on its own.
#pragma once

#include <linux/fuse.h>

#include <cerrno>
#include <cstdint>
#include <span>
#include <system_error>

#include "virtiofs/types.hpp"

namespace virtiofs::fuse {

enum class Route {
  kDevice,   // forward as is on a request queue
  kHiprio,   // forward as is on the high-priority queue (INTERRUPT)
  kForget,   // FORGET / BATCH_FORGET: batched by the session on hiprio, no reply
  kInit,     // negotiated by the bridge against the kernel and the device
  kReply,    // answered by the bridge with `error` (0 for DESTROY), never sent to the device
  kDrop,     // expects no reply and means nothing to the device (NOTIFY_REPLY)
};

struct Forwarding {
  Route route = Route::kDevice;
  uint32_t reply_bytes = 0;  // room for the whole reply, fuse_out_header included
  int error = 0;             // kReply: the errno to answer with
};

// Bytes of device reply room every forwarded request gets at least (fixed-size replies,
// READLINK's page, STATX).
inline constexpr uint32_t kSmallReply = 8192;

// `args` holds the bytes after the in header (at least the fixed argument struct when the kernel
// sent one). `max_payload` is the most data one reply may carry (READ, READDIR, GETXATTR).
Forwarding classify(const fuse_in_header& header, std::span<const std::byte> args,
                    uint32_t max_payload);

// The errno the kernel is told for a reply with error `error` (0: success). FUSE headers allow
// -4095..-1, but the kernel takes -511..-1 only (fs/fuse/dev.c fuse_dev_do_write refuses a lower
// one with EINVAL before it looks the request up, which then is never answered; the io_uring
// commit fails the request with EINVAL). Anything it would not take becomes EIO.
inline constexpr int kKernelMaxErrno = 511;
constexpr int kernel_errno(int error) {
  return error >= 0 && error <= kKernelMaxErrno ? error : EIO;
}

// Flags the bridge passes between kernel and device untouched: they change what is in the
// messages or how each side behaves, never how messages travel. Transport flags (splice, DAX,
// passthrough, io_uring, resend) are not among them, nor, by default, the lock flags.
inline constexpr uint64_t kBridgeFlags =
    FUSE_ASYNC_READ | FUSE_FILE_OPS | FUSE_ATOMIC_O_TRUNC |
    FUSE_EXPORT_SUPPORT | FUSE_BIG_WRITES | FUSE_DONT_MASK |
    FUSE_HAS_IOCTL_DIR | FUSE_AUTO_INVAL_DATA | FUSE_DO_READDIRPLUS | FUSE_READDIRPLUS_AUTO |
    FUSE_ASYNC_DIO | FUSE_WRITEBACK_CACHE | FUSE_NO_OPEN_SUPPORT | FUSE_PARALLEL_DIROPS |
    FUSE_HANDLE_KILLPRIV | FUSE_POSIX_ACL | FUSE_ABORT_ERROR | FUSE_MAX_PAGES |
    FUSE_CACHE_SYMLINKS | FUSE_NO_OPENDIR_SUPPORT | FUSE_EXPLICIT_INVAL_DATA | FUSE_INIT_EXT |
    FUSE_HANDLE_KILLPRIV_V2 | FUSE_SETXATTR_EXT;

// Who locks. Without these flags the guest kernel keeps POSIX and flock locks itself, local to
// this mount (as the Linux virtio-fs driver does when the device offers none), and a waiter
// never ties up the device. With them (-o remote_locks) the device locks, visible to its other
// clients; a blocking request then waits in the bridge, not at the device (mount/lock_waits.hpp).
inline constexpr uint64_t kRemoteLockFlags = FUSE_POSIX_LOCKS | FUSE_FLOCK_LOCKS;

// The kernel's INIT request as the bridge reads it (shorter from kernels before 7.36).
struct KernelInit {
  uint32_t major = 0, minor = 0, max_readahead = 0;
  uint64_t flags = 0;  // flags | flags2 << 32 when FUSE_INIT_EXT is set
};
std::error_code parse_kernel_init(std::span<const std::byte> args, KernelInit& out);

// What the device is offered on the kernel's behalf: the kernel's flags the bridge can pass on,
// at the lower of the two minors.
uint64_t device_offer(const KernelInit& kernel, bool remote_locks = false);
uint32_t device_minor(const KernelInit& kernel);

// The reply to the kernel once the device settled `device`: the lowest minor of the three,
// flags all three agree on, sizes no larger than the device allows and the bridge can stage
// (max_transfer). Returns the number of bytes of `out` the kernel's minor expects.
uint32_t make_kernel_init_reply(const KernelInit& kernel, const Negotiated& device,
                                uint32_t max_transfer, fuse_init_out& out, bool remote_locks = false);

}  // namespace virtiofs::fuse

namespace virtiofs::fuse {
// "LOOKUP", "READ", ... for logs; "opcode N" for unknown ones (thread-local buffer).
const char* opcode_name(uint32_t opcode);
}  // namespace virtiofs::fuse
