// libFuzzer: a FUSE reply as the device wrote it (out header, then whatever follows), checked by
// validate_reply and then handed to every opcode's parser, as the session and client do.
#include <cstdint>
#include <cstring>

#include "fuse/ops.hpp"

using namespace virtiofs;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < sizeof(fuse_out_header) + 4) return 0;
  uint32_t used_len;
  std::memcpy(&used_len, data, 4);
  fuse::Reply r;
  std::memcpy(&r.header, data + 4, sizeof(fuse_out_header));
  const size_t rest = size - 4 - sizeof(fuse_out_header);
  r.args_len = static_cast<uint32_t>(std::min(rest, r.args.size()));
  std::memcpy(r.args.data(), data + 4 + sizeof(fuse_out_header), r.args_len);
  r.data_len = static_cast<uint32_t>(rest - r.args_len);

  bool malformed = false;
  const std::error_code ec = fuse::validate_reply(r.header, used_len, r.header.unique, malformed);
  if (malformed && !ec) __builtin_trap();
  if (ec) return 0;
  Entry e;
  Attr a;
  OpenFile o;
  Created c;
  StatFs s;
  Lock l;
  (void)fuse::parse(r, e);
  (void)fuse::parse(r, a);
  (void)fuse::parse(r, o);
  (void)fuse::parse(r, c);
  (void)fuse::parse(r, s);
  (void)fuse::parse(r, l);
  for (auto kind : {fuse::Count::kWritten, fuse::Count::kXattrSize, fuse::Count::kData, fuse::Count::kSeekOffset}) {
    uint64_t n = 0;
    (void)fuse::parse_count(r, kind, n);
  }
  return 0;
}
