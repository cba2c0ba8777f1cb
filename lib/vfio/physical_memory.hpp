// Physical addresses of our own memory, from /proc/self/pagemap: what a device that bypasses the
// IOMMU (no VIRTIO_F_ACCESS_PLATFORM) must be given, as DPDK's iova-mode=pa does.
//
// The order matters. mlock does not stop the kernel from migrating a page (movable hugepages,
// virtio-mem, CMA), so an address read under mlock may belong to a freed page by the time the
// device writes there. A long-term pin (VFIO_IOMMU_MAP_DMA, FOLL_LONGTERM) first moves the page
// out of movable memory and then holds it: so pin, then read the addresses, then map them 1:1
// where the IOMMU translates, then read them again and refuse any change.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <utility>
#include <vector>

namespace virtiofs::vfio {

// The physical address of each `per_granule`-page run of pagemap entries; throws
// std::system_error naming the fix when a page is absent, hidden (not root) or a run is not
// physically contiguous.
std::vector<uint64_t> granule_addresses(std::span<const uint64_t> pagemap, size_t per_granule,
                                        size_t granule);

// The raw /proc/self/pagemap entries of [base, base+bytes) (page-aligned).
std::vector<uint64_t> read_pagemap(const void* base, size_t bytes);

// What pin_physical does, as a seam: VFIO and pagemap for real, recorders in tests.
struct PinSteps {
  // Pins [base, base+bytes) for as long as the device may use it (throws when it cannot).
  // Returns the IOVA range the pin itself occupies (size 0: none), which no 1:1 map may take.
  std::function<std::pair<uint64_t, size_t>(std::byte* base, size_t bytes)> pin;
  std::function<void()> unpin;
  std::function<std::vector<uint64_t>(const std::byte* base, size_t bytes)> read_pagemap;
  // Whether the IOMMU takes a 1:1 mapping of [phys, phys+bytes), and making/undoing it.
  std::function<bool(uint64_t phys, size_t bytes)> can_map;
  std::function<void(std::byte* va, uint64_t phys, size_t bytes)> map;
  std::function<void(uint64_t phys, size_t bytes)> unmap;
};

// Pins the region, reads the physical address of each granule, maps each 1:1 where the IOMMU
// takes it, and reads the addresses again; any failure undoes what was done and throws. The
// pin and the mappings stay until the caller's container goes.
std::vector<uint64_t> pin_physical(std::byte* base, size_t bytes, size_t granule, const PinSteps& steps);

}  // namespace virtiofs::vfio
