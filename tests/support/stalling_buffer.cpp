#include "support/stalling_buffer.hpp"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace virtiofs::test {

StallingBuffer::StallingBuffer(size_t bytes) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  bytes_ = (bytes + page - 1) / page * page;
  void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    reason_ = std::string("mmap: ") + strerror(errno);
    return;
  }
  base_ = static_cast<std::byte*>(p);
  // User-mode faults only (the stalled copy is a memcpy): allowed without privilege where the
  // kernel has the flag (5.11+), else the plain form (root).
  uffd_ = static_cast<int>(syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY));
  if (uffd_ < 0) uffd_ = static_cast<int>(syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK));
  if (uffd_ < 0) {
    reason_ = std::string("userfaultfd: ") + strerror(errno);
    return;
  }
  uffdio_api api{};
  api.api = UFFD_API;
  uffdio_register reg{};
  reg.range = {reinterpret_cast<uint64_t>(base_), bytes_};
  reg.mode = UFFDIO_REGISTER_MODE_MISSING;
  if (ioctl(uffd_, UFFDIO_API, &api) != 0 || ioctl(uffd_, UFFDIO_REGISTER, &reg) != 0)
    reason_ = std::string("userfaultfd registration: ") + strerror(errno);
}

StallingBuffer::~StallingBuffer() {
  release();
  if (uffd_ >= 0) close(uffd_);
  if (base_) munmap(base_, bytes_);
}

bool StallingBuffer::wait_for_stall(std::chrono::milliseconds timeout) {
  if (!reason_.empty()) return false;
  pollfd pfd{uffd_, POLLIN, 0};
  if (poll(&pfd, 1, static_cast<int>(timeout.count())) <= 0) return false;
  uffd_msg msg{};
  return read(uffd_, &msg, sizeof(msg)) == sizeof(msg) && msg.event == UFFD_EVENT_PAGEFAULT;
}

void StallingBuffer::release() {
  if (released_ || !reason_.empty() || uffd_ < 0) return;
  released_ = true;
  uffdio_zeropage zero{};
  zero.range = {reinterpret_cast<uint64_t>(base_), bytes_};
  // Wakes every thread stalled on the range once the pages are in.
  ioctl(uffd_, UFFDIO_ZEROPAGE, &zero);
}

}  // namespace virtiofs::test
