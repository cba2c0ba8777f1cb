// libFuzzer: the device's FUSE_INIT reply. Accepted or not, what the session would use must stay
// within what it offered and what the ring carries.
#include <cstdint>
#include <cstring>

#include "fuse/init.hpp"

using namespace virtiofs;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 12) return 0;
  uint64_t offered;
  uint32_t max_transfer;
  std::memcpy(&offered, data, 8);
  std::memcpy(&max_transfer, data + 8, 4);
  max_transfer = 4096 + max_transfer % (4u << 20);
  fuse::Reply r;
  r.args_len = static_cast<uint32_t>(std::min(size - 12, r.args.size()));
  std::memcpy(r.args.data(), data + 12, r.args_len);
  Negotiated n;
  if (fuse::negotiate_init(r, offered, fuse::InitLimits{max_transfer, 4096}, n)) return 0;
  if (n.major != 7 || n.minor < fuse::kMinMinor) __builtin_trap();
  if (n.max_write > max_transfer || n.max_read > max_transfer || n.max_write < 4096) __builtin_trap();
  if (n.flags & ~offered) __builtin_trap();
  return 0;
}
