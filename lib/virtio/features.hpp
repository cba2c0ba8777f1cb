// Virtio feature bits this driver knows (virtio 1.x spec §6) and the virtio-fs config layout.
#pragma once

#include <cstdint>

#include "virtio/le.hpp"

namespace virtiofs::virtio {

inline constexpr uint64_t bit(unsigned n) { return uint64_t{1} << n; }

namespace feature {
inline constexpr uint64_t kRingIndirectDesc = bit(28);
inline constexpr uint64_t kRingEventIdx = bit(29);
inline constexpr uint64_t kVersion1 = bit(32);
inline constexpr uint64_t kAccessPlatform = bit(33);
inline constexpr uint64_t kRingPacked = bit(34);
inline constexpr uint64_t kInOrder = bit(35);
}  // namespace feature

// Features the split-ring driver implements; anything else offered is declined.
inline constexpr uint64_t kDriverFeatures =
    feature::kRingIndirectDesc | feature::kRingEventIdx | feature::kVersion1;

// struct virtio_fs_config (virtio spec §5.11.4).
inline constexpr unsigned kTagSize = 36;
struct FsConfig {
  char tag[kTagSize];
  le32 num_request_queues;
  le32 notify_buf_size;
};
static_assert(sizeof(FsConfig) == 44);

}  // namespace virtiofs::virtio
