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

DmaRegion::DmaRegion(size_t bytes, uint64_t device_base, const std::string& name)
    : size_((bytes + kPage - 1) & ~(kPage - 1)), device_base_(device_base) {
  fd_ = memfd_create(name.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd_ < 0) fail("memfd_create for device memory");
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
    throw std::system_error(e, std::system_category(), "mapping device memory");
  }
  base_ = static_cast<std::byte*>(p);
}

DmaRegion::~DmaRegion() {
  if (base_) munmap(base_, size_);
  if (fd_ >= 0) close(fd_);
}

std::byte* DmaRegion::carve(size_t bytes, size_t align) {
  size_t start = (used_ + align - 1) & ~(align - 1);
  if (start > size_ || bytes > size_ - start)
    throw std::system_error(ENOMEM, std::system_category(), "device memory region too small");
  used_ = start + bytes;
  return base_ + start;
}

}  // namespace virtiofs::virtio
