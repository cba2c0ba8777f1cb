// Little-endian fields for memory the device reads (virtio 1.x rings are always little-endian).
#pragma once

#include <bit>
#include <cstdint>

namespace virtiofs::virtio {

template <class T>
constexpr T byteswap_if_big(T v) noexcept {
  if constexpr (std::endian::native == std::endian::little || sizeof(T) == 1) {
    return v;
  } else if constexpr (sizeof(T) == 2) {
    return static_cast<T>(__builtin_bswap16(v));
  } else if constexpr (sizeof(T) == 4) {
    return static_cast<T>(__builtin_bswap32(v));
  } else {
    return static_cast<T>(__builtin_bswap64(v));
  }
}

// A field stored little-endian. Accesses are volatile so the compiler neither caches nor
// tears them: the other side of the ring may change the value at any time.
template <class T>
struct Le {
  T raw;
  T load() const noexcept { return byteswap_if_big(*static_cast<const volatile T*>(&raw)); }
  void store(T v) noexcept { *static_cast<volatile T*>(&raw) = byteswap_if_big(v); }
};

using le16 = Le<uint16_t>;
using le32 = Le<uint32_t>;
using le64 = Le<uint64_t>;
static_assert(sizeof(le16) == 2 && sizeof(le32) == 4 && sizeof(le64) == 8);

}  // namespace virtiofs::virtio
