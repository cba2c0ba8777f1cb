// FUSE_INIT: what the driver offers and how the device's answer is checked and recorded.
#pragma once

#include <system_error>

#include "fuse/frame.hpp"
#include "virtiofs/types.hpp"

namespace virtiofs::fuse {

// Oldest minor this driver speaks to (virtio-fs devices answer 7.27 or later).
inline constexpr uint32_t kMinMinor = 27;
// FUSE_MAX_MAX_PAGES of the kernel (fs/fuse/fuse_i.h): no device may claim more.
inline constexpr uint32_t kMaxMaxPages = 256;
// Capabilities the library path uses; the mount bridge negotiates its own set with the kernel.
inline constexpr uint64_t kLibraryInitFlags =
    FUSE_ASYNC_READ | FUSE_BIG_WRITES | FUSE_DO_READDIRPLUS | FUSE_MAX_PAGES | FUSE_INIT_EXT |
    FUSE_POSIX_LOCKS | FUSE_FLOCK_LOCKS | FUSE_EXPORT_SUPPORT;

struct InitLimits {
  uint32_t max_transfer;  // most payload bytes one request may carry (ring and buffer bound)
  uint32_t page_size;
};

Frame make_init(uint64_t flags, uint32_t max_readahead, uint32_t minor = FUSE_KERNEL_MINOR_VERSION);

// Validates the reply (major 7, minor >= kMinMinor, sizes in range) and settles what the session
// uses: max_write and max_read clamped to limits.max_transfer, flags intersected with `offered`.
std::error_code negotiate_init(const Reply& reply, uint64_t offered, const InitLimits& limits,
                               Negotiated& out);

}  // namespace virtiofs::fuse
