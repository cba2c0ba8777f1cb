// Memory the device can reach: one memfd-backed shared mapping, carved up at setup time, with the
// single translation from a host pointer to the address the device uses.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace virtiofs::virtio {

class DmaRegion {
 public:
  // Creates a sealed-size memfd of `bytes` (rounded up to pages) and maps it shared.
  // device_base is the address the device sees for the first byte. Throws std::system_error.
  DmaRegion(size_t bytes, uint64_t device_base, const std::string& name);
  ~DmaRegion();
  DmaRegion(const DmaRegion&) = delete;
  DmaRegion& operator=(const DmaRegion&) = delete;

  int fd() const { return fd_; }
  std::byte* base() const { return base_; }
  size_t size() const { return size_; }
  uint64_t device_base() const { return device_base_; }

  bool contains(const void* p, size_t len) const {
    auto* b = static_cast<const std::byte*>(p);
    return b >= base_ && len <= size_ && static_cast<size_t>(b - base_) <= size_ - len;
  }
  uint64_t device_addr(const void* p) const {
    return device_base_ + static_cast<uint64_t>(static_cast<const std::byte*>(p) - base_);
  }

  // Bump allocation for setup: rings, request slots, buffer chunks. Throws when exhausted.
  std::byte* carve(size_t bytes, size_t align);
  size_t carved() const { return used_; }

 private:
  int fd_ = -1;
  std::byte* base_ = nullptr;
  size_t size_ = 0;
  uint64_t device_base_ = 0;
  size_t used_ = 0;
};

}  // namespace virtiofs::virtio
