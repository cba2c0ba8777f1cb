#include "virtio/dma_region.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

namespace virtiofs::virtio {

namespace {
constexpr size_t kPage = 4096;
[[noreturn]] void fail(const char* what) { throw std::system_error(errno, std::system_category(), what); }
}  // namespace

DmaRegion::DmaRegion(size_t bytes, uint64_t device_base, const std::string& name, Backing backing)
    : device_base_(device_base) {
  const bool huge = backing == Backing::kHugePages;
  const size_t unit = huge ? kHugePageBytes : kPage;
  size_ = (bytes + unit - 1) & ~(unit - 1);
  fd_ = memfd_create(name.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING | (huge ? MFD_HUGETLB : 0));
  if (fd_ < 0) fail(huge ? "memfd_create of hugepage memory" : "memfd_create for device memory");
  if (ftruncate(fd_, static_cast<off_t>(size_)) != 0) {
    int e = errno;
    close(fd_);
    throw std::system_error(e, std::system_category(), "sizing device memory");
  }
  // The backend maps the same fd: it must not be able to shrink it under us (SIGBUS otherwise).
  fcntl(fd_, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
  void* p = mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd_, 0);
  if (p == MAP_FAILED) {
    int e = errno;
    close(fd_);
    throw std::system_error(e, std::system_category(),
                            huge ? "mapping hugepage memory (are enough hugepages free?)"
                                 : "mapping device memory");
  }
  base_ = static_cast<std::byte*>(p);
  // MAP_POPULATE does not fail when hugepages run out; touching them would SIGBUS later.
  if (huge && madvise(base_, size_, MADV_POPULATE_WRITE) != 0) {
    int e = errno;
    munmap(base_, size_);
    close(fd_);
    base_ = nullptr;
    throw std::system_error(e == EFAULT ? ENOMEM : e, std::system_category(),
                            "not enough free hugepages for " + std::to_string(size_ >> 20) +
                                " MiB of device memory (raise /proc/sys/vm/nr_hugepages)");
  }
}

void DmaRegion::set_granule_addresses(size_t granule, std::vector<uint64_t> granule_addr) {
  if (granule < kPage || (granule & (granule - 1)) || size_ % granule ||
      granule_addr.size() != size_ / granule || used_ != 0)
    throw std::system_error(EINVAL, std::system_category(), "device memory granules do not fit");
  granule_ = granule;
  granule_shift_ = static_cast<unsigned>(__builtin_ctzll(granule));
  granule_addr_ = std::move(granule_addr);
}

DmaRegion::~DmaRegion() {
  if (base_) munmap(base_, size_);
  if (fd_ >= 0) close(fd_);
}

std::byte* DmaRegion::carve(size_t bytes, size_t align) {
  size_t start = (used_ + align - 1) & ~(align - 1);
  if (!granule_addr_.empty() && bytes > 0) {
    const bool crosses = start / granule_ != (start + bytes - 1) / granule_;
    if (crosses || bytes > granule_) start = (start + granule_ - 1) & ~(granule_ - 1);
  }
  if (start > size_ || bytes > size_ - start)
    throw std::system_error(ENOMEM, std::system_category(), "device memory region too small");
  used_ = start + bytes;
  return base_ + start;
}

}  // namespace virtiofs::virtio
