// A VFIO container with the type1 IOMMU and the one group that holds our device: opens the group,
// checks it is viable, maps DMA memory and hands out the device fd. Throws std::system_error with
// the fix in the message (not root, no IOMMU group, group held by another process, ...).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace virtiofs::vfio {

struct IovaRange {
  uint64_t first;
  uint64_t last;  // inclusive
};

// Highest IOVA, aligned to `align`, where `bytes` fit inside one of `ranges` and end at or below
// `ceiling`; throws ENOSPC when none does. Pure: unit-tested.
uint64_t highest_iova(const std::vector<IovaRange>& ranges, size_t bytes, size_t align, uint64_t ceiling);

class Container {
 public:
  // Opens /dev/vfio/vfio and /dev/vfio/<group of pci_address>, attaches and sets the IOMMU.
  explicit Container(const std::string& pci_address);
  ~Container();
  Container(const Container&) = delete;
  Container& operator=(const Container&) = delete;

  // The device fd (VFIO_GROUP_GET_DEVICE_FD); EBUSY names the process holding it.
  int open_device();

  const std::vector<IovaRange>& iova_ranges() const { return iova_ranges_; }
  // Lowest IOVA at or above `at_least` where `bytes` fit in a valid range, aligned to `align`.
  uint64_t find_iova(size_t bytes, size_t align, uint64_t at_least = 0) const;
  // Highest IOVA where `bytes` fit in a valid range and end at or below `ceiling`, aligned to
  // `align`: scratch space above any physical address, for pinning (see physical_memory.hpp).
  uint64_t find_iova_top(size_t bytes, size_t align, uint64_t ceiling) const;
  bool iova_valid(uint64_t iova, size_t bytes) const;
  void map_dma(void* vaddr, uint64_t iova, size_t bytes);
  void unmap_dma(uint64_t iova, size_t bytes);

  int group_number() const { return group_number_; }

 private:
  std::string pci_address_;
  int container_fd_ = -1;
  int group_fd_ = -1;
  int group_number_ = -1;
  std::vector<IovaRange> iova_ranges_;
  std::vector<std::pair<uint64_t, size_t>> mappings_;
};

}  // namespace virtiofs::vfio
