// vhost-user wire format (QEMU docs/interop/vhost-user.rst), frontend side. Host byte order, as
// the protocol says; every struct is the payload of one message.
#pragma once

#include <cstdint>

namespace virtiofs::vhost_user {

enum class Request : uint32_t {
  kGetFeatures = 1,
  kSetFeatures = 2,
  kSetOwner = 3,
  kSetMemTable = 5,
  kSetVringNum = 8,
  kSetVringAddr = 9,
  kSetVringBase = 10,
  kGetVringBase = 11,
  kSetVringKick = 12,
  kSetVringCall = 13,
  kSetVringErr = 14,
  kGetProtocolFeatures = 15,
  kSetProtocolFeatures = 16,
  kGetQueueNum = 17,
  kSetVringEnable = 18,
  kGetConfig = 24,
  kGetMaxMemSlots = 36,
  kAddMemReg = 37,
};

const char* request_name(Request r);

inline constexpr uint32_t kVersion = 0x1;
inline constexpr uint32_t kFlagVersionMask = 0x3;
inline constexpr uint32_t kFlagReply = 0x4;
inline constexpr uint32_t kFlagNeedReply = 0x8;

inline constexpr uint64_t kFeatureProtocolFeatures = uint64_t{1} << 30;

namespace protocol_feature {
inline constexpr uint64_t kMq = uint64_t{1} << 0;
inline constexpr uint64_t kReplyAck = uint64_t{1} << 3;
inline constexpr uint64_t kConfig = uint64_t{1} << 9;
inline constexpr uint64_t kConfigureMemSlots = uint64_t{1} << 15;
}  // namespace protocol_feature
inline constexpr uint64_t kFrontendProtocolFeatures =
    protocol_feature::kMq | protocol_feature::kReplyAck | protocol_feature::kConfig |
    protocol_feature::kConfigureMemSlots;

struct Header {
  uint32_t request;
  uint32_t flags;
  uint32_t size;  // payload bytes that follow
};
static_assert(sizeof(Header) == 12);

struct VringState {
  uint32_t index;
  uint32_t num;
};

struct VringAddr {
  uint32_t index;
  uint32_t flags;
  uint64_t desc_user_addr;
  uint64_t used_user_addr;
  uint64_t avail_user_addr;
  uint64_t log_guest_addr;
};
static_assert(sizeof(VringAddr) == 40);

struct MemoryRegion {
  uint64_t guest_phys_addr;
  uint64_t memory_size;
  uint64_t userspace_addr;
  uint64_t mmap_offset;
};

inline constexpr unsigned kMaxMemTableRegions = 8;
struct MemTable {
  uint32_t nregions;
  uint32_t padding;
  MemoryRegion regions[kMaxMemTableRegions];
};

struct SingleMemRegion {
  uint64_t padding;
  MemoryRegion region;
};

inline constexpr uint32_t kConfigSpaceMax = 256;
struct ConfigSpace {
  uint32_t offset;
  uint32_t size;
  uint32_t flags;
  uint8_t payload[kConfigSpaceMax];
};
inline constexpr uint32_t kConfigHeaderSize = 12;

// The u64 payload of SET_VRING_KICK/CALL: queue index, plus this bit when no fd is sent.
inline constexpr uint64_t kVringNoFd = 0x100;

inline constexpr uint32_t kMaxPayload = sizeof(MemTable) > sizeof(ConfigSpace) ? sizeof(MemTable)
                                                                               : sizeof(ConfigSpace);

}  // namespace virtiofs::vhost_user
