// Memory the device can reach: one memfd-backed shared mapping, carved up at setup time, with the
// translation from a host pointer to the address the device uses.
//
// Two translations: linear (vhost-user, and VFIO with an IOMMU mapping of our choosing) where the
// device address is device_base + offset; and per-granule (VFIO without ACCESS_PLATFORM, where the
// device uses physical addresses) where each granule of `granule` bytes (a hugepage) is physically
// contiguous but granules are not. carve() never lets a piece cross a granule boundary, so every
// piece, and every aligned power-of-two sub-piece of it, is one run of device addresses.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace virtiofs::virtio {

enum class Backing { kPages, kHugePages };

class DmaRegion {
 public:
  // Creates a sealed-size memfd of `bytes` (rounded up to pages, or to 2 MiB for kHugePages),
  // mapped shared and populated. device_base is the address the device sees for the first byte.
  // Throws std::system_error.
  DmaRegion(size_t bytes, uint64_t device_base, const std::string& name,
            Backing backing = Backing::kPages);
  ~DmaRegion();
  DmaRegion(const DmaRegion&) = delete;
  DmaRegion& operator=(const DmaRegion&) = delete;

  static constexpr size_t kHugePageBytes = size_t{2} << 20;

  int fd() const { return fd_; }
  std::byte* base() const { return base_; }
  size_t size() const { return size_; }
  uint64_t device_base() const { return device_base_; }
  bool per_granule() const { return !granule_addr_.empty(); }
  size_t granule() const { return granule_; }

  // Switches to per-granule translation: granule_addr[i] is the device address of byte
  // i * granule. The region must be a whole number of granules.
  void set_granule_addresses(size_t granule, std::vector<uint64_t> granule_addr);

  bool contains(const void* p, size_t len) const {
    auto* b = static_cast<const std::byte*>(p);
    return b >= base_ && len <= size_ && static_cast<size_t>(b - base_) <= size_ - len;
  }
  // One run of device addresses: contained and not crossing a granule boundary.
  bool contiguous(const void* p, size_t len) const {
    if (!contains(p, len)) return false;
    if (granule_addr_.empty() || len == 0) return true;
    const size_t off = static_cast<size_t>(static_cast<const std::byte*>(p) - base_);
    return off / granule_ == (off + len - 1) / granule_;
  }
  uint64_t device_addr(const void* p) const {
    const size_t off = static_cast<size_t>(static_cast<const std::byte*>(p) - base_);
    if (granule_addr_.empty()) return device_base_ + off;
    return granule_addr_[off >> granule_shift_] + (off & (granule_ - 1));
  }

  // Bump allocation for setup: rings, request slots, buffer chunks. A piece no larger than a
  // granule never crosses one; a larger piece starts on a granule boundary. Throws when exhausted.
  std::byte* carve(size_t bytes, size_t align);
  size_t carved() const { return used_; }

 private:
  int fd_ = -1;
  std::byte* base_ = nullptr;
  size_t size_ = 0;
  uint64_t device_base_ = 0;
  size_t used_ = 0;
  size_t granule_ = 0;
  unsigned granule_shift_ = 0;
  std::vector<uint64_t> granule_addr_;
};

}  // namespace virtiofs::virtio
