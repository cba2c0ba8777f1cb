#include "fuse/frame.hpp"

namespace virtiofs::fuse {

std::error_code validate_reply(const fuse_out_header& header, uint32_t used_len,
                               uint64_t expected_unique, bool& malformed) {
  malformed = true;
  const auto bad = std::make_error_code(std::errc::io_error);
  if (used_len < sizeof(fuse_out_header)) return bad;
  if (header.len != used_len) return bad;
  if (header.unique != expected_unique) return bad;
  if (header.error > 0 || header.error < -4095) return bad;
  if (header.error != 0 && header.len != sizeof(fuse_out_header)) return bad;
  malformed = false;
  if (header.error != 0) {
    return std::error_code(-header.error, std::system_category());
  }
  return {};
}

}  // namespace virtiofs::fuse
