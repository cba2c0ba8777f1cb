#define FUSE_USE_VERSION 314
#include "mount/kernel_mount.hpp"

#include <fuse_lowlevel.h>

#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>

namespace virtiofs::mount {

namespace {

// libfuse reports through its log function: keep the last message so that errors are one line
// of ours, not libfuse's lines and ours.
std::mutex log_mu;
std::string last_log;
void capture_log(enum fuse_log_level, const char* fmt, va_list ap) {
  char buf[512];
  std::vsnprintf(buf, sizeof(buf), fmt, ap);
  std::lock_guard lock(log_mu);
  last_log += buf;
}
}  // namespace

void capture_libfuse_log() { fuse_set_log_func(capture_log); }

std::string take_libfuse_log() {
  std::lock_guard lock(log_mu);
  std::string s;
  s.swap(last_log);
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  if (s.rfind("fuse: ", 0) == 0) s.erase(0, 6);
  return s;
}

KernelMount::KernelMount(fuse_args& args) {
  capture_libfuse_log();
  take_libfuse_log();
  // No operations: libfuse never processes a request of this session.
  const fuse_lowlevel_ops ops{};
  session_ = fuse_session_new(&args, &ops, sizeof(ops), nullptr);
  if (!session_) {
    std::string why = take_libfuse_log();
    throw std::runtime_error(why.empty() ? "invalid mount options" : why);
  }
}

KernelMount::~KernelMount() {
  unmount();
  if (session_) fuse_session_destroy(session_);
}

void KernelMount::mount(const std::string& mountpoint) {
  take_libfuse_log();
  if (fuse_session_mount(session_, mountpoint.c_str()) != 0) {
    std::string why = take_libfuse_log();
    throw std::runtime_error("cannot mount on " + mountpoint + (why.empty() ? "" : ": " + why));
  }
  mounted_ = true;
}

int KernelMount::fd() const { return fuse_session_fd(session_); }

void KernelMount::unmount() {
  if (!mounted_) return;
  mounted_ = false;
  fuse_session_unmount(session_);
}

void KernelMount::set_readahead_kb(const std::string& mountpoint, unsigned kb) {
  // A FUSE bdi is named after the superblock's device number (fuseblk's carries a suffix, and is
  // not ours). AT_STATX_DONT_SYNC: the root's cached attributes do, and no GETATTR goes to a
  // device that may stall before startup is over.
  struct statx st {};
  if (statx(AT_FDCWD, mountpoint.c_str(), AT_STATX_DONT_SYNC, STATX_TYPE, &st) != 0)
    throw std::runtime_error("readahead_kb: " + mountpoint + ": " + std::strerror(errno));
  const std::string path = "/sys/class/bdi/" + std::to_string(st.stx_dev_major) + ":" +
                           std::to_string(st.stx_dev_minor) + "/read_ahead_kb";
  const std::string value = std::to_string(kb);
  const int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  const bool written =
      fd >= 0 && write(fd, value.data(), value.size()) == static_cast<ssize_t>(value.size());
  const int err = errno;
  if (fd >= 0) close(fd);
  if (!written) throw std::runtime_error("readahead_kb: writing " + path + ": " + std::strerror(err));
}

}  // namespace virtiofs::mount
