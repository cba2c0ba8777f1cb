#include "vfio/physical_memory.hpp"

#include "virtio/setup_error.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <system_error>

namespace virtiofs::vfio {

namespace {

constexpr size_t kPage = 4096;
constexpr uint64_t kPresent = uint64_t{1} << 63;
constexpr uint64_t kPfnMask = (uint64_t{1} << 55) - 1;

}  // namespace

std::vector<uint64_t> physical_granules(const void* base, size_t bytes, size_t granule) {
  if (granule < kPage || granule % kPage || bytes % granule)
    fail(EINVAL, "physical memory granules must be whole pages");
  // Locked pages are neither swapped out nor moved by the kernel while the device uses them.
  if (mlock(base, bytes) != 0)
    fail(errno, "locking device memory (raise RLIMIT_MEMLOCK or run as root)");
  const int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(errno, "opening /proc/self/pagemap");
  const size_t pages = bytes / kPage;
  std::vector<uint64_t> entries(pages);
  const off_t at = static_cast<off_t>(reinterpret_cast<uintptr_t>(base) / kPage * sizeof(uint64_t));
  const ssize_t n = pread(fd, entries.data(), pages * sizeof(uint64_t), at);
  const int err = errno;
  close(fd);
  if (n != static_cast<ssize_t>(pages * sizeof(uint64_t))) fail(n < 0 ? err : EIO, "reading /proc/self/pagemap");

  std::vector<uint64_t> out;
  const size_t per_granule = granule / kPage;
  for (size_t g = 0; g < pages / per_granule; ++g) {
    uint64_t first = 0;
    for (size_t i = 0; i < per_granule; ++i) {
      const uint64_t e = entries[g * per_granule + i];
      if (!(e & kPresent)) fail(EFAULT, "device memory page not present after locking");
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

}  // namespace virtiofs::vfio
