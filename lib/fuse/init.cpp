#include "fuse/init.hpp"

#include <algorithm>

namespace virtiofs::fuse {

Frame make_init(uint64_t flags, uint32_t max_readahead, uint32_t minor) {
  Frame f;
  f.opcode = FUSE_INIT;
  fuse_init_in in{};
  in.major = FUSE_KERNEL_VERSION;
  in.minor = minor;
  in.max_readahead = max_readahead;
  in.flags = static_cast<uint32_t>(flags);
  in.flags2 = static_cast<uint32_t>(flags >> 32);
  f.set_args(in);
  f.out_args_len = sizeof(fuse_init_out);
  return f;
}

std::error_code negotiate_init(const Reply& reply, uint64_t offered, const InitLimits& limits,
                               Negotiated& out) {
  const auto bad = std::make_error_code(std::errc::protocol_error);
  fuse_init_out init{};
  if (reply.args_len < FUSE_COMPAT_22_INIT_OUT_SIZE) return bad;
  std::memcpy(&init, reply.args.data(), std::min<size_t>(reply.args_len, sizeof(init)));
  if (init.major != FUSE_KERNEL_VERSION || init.minor < kMinMinor) return bad;
  // A device that cannot take a page per WRITE is broken, as is one claiming more pages than
  // FUSE allows.
  if (init.max_write < limits.page_size) return bad;
  uint64_t flags = init.flags;
  if (flags & FUSE_INIT_EXT) flags |= static_cast<uint64_t>(init.flags2) << 32;
  flags &= offered;
  uint32_t max_pages = 32;  // FUSE_DEFAULT_MAX_PAGES_PER_REQ
  if (flags & FUSE_MAX_PAGES) {
    if (init.max_pages == 0 || init.max_pages > kMaxMaxPages) return bad;
    max_pages = init.max_pages;
  }
  out.major = init.major;
  out.minor = std::min<uint32_t>(init.minor, FUSE_KERNEL_MINOR_VERSION);
  out.flags = flags;
  out.max_pages = max_pages;
  const uint32_t by_pages = max_pages * limits.page_size;
  out.max_write = std::min({init.max_write, by_pages, limits.max_transfer});
  out.max_read = std::min(by_pages, limits.max_transfer);
  out.time_gran = init.time_gran;
  out.max_readahead = init.max_readahead;
  out.max_background = init.max_background;
  out.congestion_threshold = init.congestion_threshold;
  return {};
}

}  // namespace virtiofs::fuse
