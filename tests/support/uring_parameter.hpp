// The fuse module's enable_uring parameter (FUSE over io_uring, Linux 6.14+), for mount tests.
#pragma once

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace virtiofs::test {

// The fuse module's enable_uring, set for one test and restored after it. Tests in other
// processes (ctest -j) that set it take the same lock, so none sees another's setting.
class UringParameter {
 public:
  static constexpr const char* kPath = "/sys/module/fuse/parameters/enable_uring";
  static bool exists() { return access(kPath, F_OK) == 0; }

  explicit UringParameter(bool on) {
    fd_ = open(kPath, O_RDWR | O_CLOEXEC);
    if (fd_ < 0 || flock(fd_, LOCK_EX) != 0) throw std::runtime_error(std::string(kPath) + ": " + std::strerror(errno));
    char was = 'N';
    if (pread(fd_, &was, 1, 0) == 1) old_ = was;
    set(on ? 'Y' : 'N');
  }
  ~UringParameter() {
    [[maybe_unused]] ssize_t n = pwrite(fd_, &old_, 1, 0);  // restore; a destructor cannot throw
    flock(fd_, LOCK_UN);
    close(fd_);
  }

 private:
  void set(char value) {
    if (pwrite(fd_, &value, 1, 0) != 1) throw std::runtime_error(std::string("writing ") + kPath);
  }
  int fd_ = -1;
  char old_ = 'N';
};

}  // namespace virtiofs::test
