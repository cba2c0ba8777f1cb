// libFuzzer: a READDIR / READDIRPLUS buffer from the device. Every record handed out must lie
// inside the buffer with a valid name; a malformed record ends the walk with an error.
#include <cstdint>
#include <cstring>

#include "fuse/dirent.hpp"

using namespace virtiofs;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const bool plus = data[0] & 1;
  const auto buf = std::as_bytes(std::span(data + 1, size - 1));
  const char* begin = reinterpret_cast<const char*>(buf.data());
  (void)fuse::parse_dirents(buf, plus, [&](const fuse::DirentView& d) {
    if (d.name.empty() || d.name.data() < begin || d.name.data() + d.name.size() > begin + buf.size())
      __builtin_trap();
    if (d.name.find('/') != std::string_view::npos || d.name.find('\0') != std::string_view::npos)
      __builtin_trap();
    if (plus != (d.entry != nullptr)) __builtin_trap();
    return true;
  });
  return 0;
}
