// Physical addresses of our own memory, from /proc/self/pagemap: what a device that bypasses the
// IOMMU (no VIRTIO_F_ACCESS_PLATFORM) must be given, as DPDK's iova-mode=pa does.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace virtiofs::vfio {

// Locks [base, base+bytes) in memory and returns the physical address of each `granule`-sized
// piece, checking that every piece is physically contiguous. Throws std::system_error naming
// the fix (not root: pagemap hides frame numbers; pages not present; not contiguous).
std::vector<uint64_t> physical_granules(const void* base, size_t bytes, size_t granule);

}  // namespace virtiofs::vfio
