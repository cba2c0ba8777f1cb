#include "vfio/physical_memory.hpp"

#include "virtio/setup_error.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <string>
#include <system_error>
#include <utility>

namespace virtiofs::vfio {

namespace {

constexpr size_t kPage = 4096;
constexpr uint64_t kPresent = uint64_t{1} << 63;
constexpr uint64_t kPfnMask = (uint64_t{1} << 55) - 1;

std::string hex(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace

std::vector<uint64_t> granule_addresses(std::span<const uint64_t> pagemap, size_t per_granule,
                                        size_t granule) {
  if (per_granule == 0 || pagemap.size() % per_granule)
    fail(EINVAL, "physical memory granules must be whole pages");
  std::vector<uint64_t> out;
  for (size_t g = 0; g < pagemap.size() / per_granule; ++g) {
    uint64_t first = 0;
    for (size_t i = 0; i < per_granule; ++i) {
      const uint64_t e = pagemap[g * per_granule + i];
      if (!(e & kPresent)) fail(EFAULT, "device memory page not present after pinning");
      const uint64_t pfn = e & kPfnMask;
      if (pfn == 0)
        fail(EPERM, "/proc/self/pagemap hides physical addresses: the physical-address mode needs "
                    "root (CAP_SYS_ADMIN)");
      if (i == 0) first = pfn;
      else if (pfn != first + i)
        fail(EINVAL, "device memory is not physically contiguous within " +
                         std::to_string(granule >> 10) + " KiB (hugepages needed)");
    }
    out.push_back(first * kPage);
  }
  return out;
}

std::vector<uint64_t> read_pagemap(const void* base, size_t bytes) {
  const int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(errno, "opening /proc/self/pagemap");
  const size_t pages = bytes / kPage;
  std::vector<uint64_t> entries(pages);
  const off_t at = static_cast<off_t>(reinterpret_cast<uintptr_t>(base) / kPage * sizeof(uint64_t));
  const ssize_t n = pread(fd, entries.data(), pages * sizeof(uint64_t), at);
  const int err = errno;
  close(fd);
  if (n != static_cast<ssize_t>(pages * sizeof(uint64_t))) fail(n < 0 ? err : EIO, "reading /proc/self/pagemap");
  return entries;
}

std::vector<uint64_t> pin_physical(std::byte* base, size_t bytes, size_t granule, const PinSteps& steps) {
  if (granule < kPage || granule % kPage || bytes % granule || bytes == 0)
    fail(EINVAL, "physical memory granules must be whole pages");
  const auto [scratch, scratch_bytes] = steps.pin(base, bytes);
  // From here every exit undoes the 1:1 mappings made so far and the pin.
  std::vector<std::pair<uint64_t, size_t>> mapped;
  struct Undo {
    const PinSteps& steps;
    std::vector<std::pair<uint64_t, size_t>>& mapped;
    bool armed = true;
    ~Undo() {
      if (!armed) return;
      for (auto it = mapped.rbegin(); it != mapped.rend(); ++it) {
        try {
          steps.unmap(it->first, it->second);
        } catch (...) {  // the container goes with the transport and unmaps what is left
        }
      }
      try {
        steps.unpin();
      } catch (...) {
      }
    }
  } undo{steps, mapped};

  const size_t per_granule = granule / kPage;
  auto addresses = granule_addresses(steps.read_pagemap(base, bytes), per_granule, granule);
  for (uint64_t phys : addresses)
    // The IOMMU would take it (can_map) yet refuse the map (EEXIST): say why instead.
    if (scratch_bytes && phys < scratch + scratch_bytes && scratch < phys + granule)
      fail(EEXIST, "device memory at physical address 0x" + hex(phys) +
                       " lies in the IOVA range its pin took (0x" + hex(scratch) +
                       "): it cannot be mapped 1:1 there");
  for (size_t i = 0; i < addresses.size(); ++i) {
    // 1:1, for platforms where the device's DMA does go through the IOMMU.
    if (!steps.can_map(addresses[i], granule)) continue;
    steps.map(base + i * granule, addresses[i], granule);
    mapped.emplace_back(addresses[i], granule);
  }
  // Pinned pages do not move; a change means the pin did not hold them and the device would
  // write into memory that is no longer ours.
  if (granule_addresses(steps.read_pagemap(base, bytes), per_granule, granule) != addresses)
    fail(EIO, "device memory moved while it was pinned: reserve hugepages outside movable memory "
              "(hugepages= on the kernel command line, not movable_node or virtio-mem)");
  undo.armed = false;
  return addresses;
}

}  // namespace virtiofs::vfio
