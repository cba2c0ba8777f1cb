// Test fixture support: the real virtiofsd (Debian's qemu-system-common) serving a temporary
// directory, started and stopped by the test.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace virtiofs::test {

class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& rel) const { return path_ + "/" + rel; }

 private:
  std::string path_;
};

class Virtiofsd {
 public:
  // Serves `shared_dir`; extra_options are appended (e.g. "-o", "xattr").
  explicit Virtiofsd(const std::string& shared_dir, std::vector<std::string> extra_options = {});
  ~Virtiofsd();
  const std::string& socket_path() const { return socket_; }
  pid_t pid() const { return pid_; }
  // Open file descriptors of the backend (it holds one per node the driver references).
  int open_fds() const;
  void kill_now();  // SIGKILL, as a crash would
  // Waits for exit; returns true if it exited by itself within timeout_ms.
  bool wait_exit(int timeout_ms);

 private:
  TempDir socket_dir_;
  std::string socket_;
  pid_t pid_ = -1;
};

// Whether a UNIX socket is bound at socket_path and listening.
bool is_listening(const std::string& socket_path);

// The path of the virtiofsd binary the build found.
const char* virtiofsd_binary();

}  // namespace virtiofs::test
