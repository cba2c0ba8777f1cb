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

// A backend process the test started: reaped on destruction (killed if it does not exit).
class BackendProcess {
 public:
  BackendProcess() = default;
  ~BackendProcess();
  BackendProcess(const BackendProcess&) = delete;
  BackendProcess& operator=(const BackendProcess&) = delete;
  pid_t pid() const { return pid_; }
  // Open file descriptors of the backend (virtiofsd holds one per node the driver references).
  int open_fds() const;
  void kill_now();  // SIGKILL, as a crash would
  // Waits for exit; returns true if it exited by itself within timeout_ms.
  bool wait_exit(int timeout_ms);

 protected:
  pid_t pid_ = -1;
};

class Virtiofsd : public BackendProcess {
 public:
  // Serves `shared_dir`; extra_options are appended (e.g. "-o", "xattr").
  explicit Virtiofsd(const std::string& shared_dir, std::vector<std::string> extra_options = {});
  const std::string& socket_path() const { return socket_; }

 private:
  TempDir socket_dir_;
  std::string socket_;
};

// Starts args[0] with args and waits until it listens on socket_path; throws naming `what`.
pid_t spawn_listening(std::vector<std::string> args, const std::string& socket_path,
                      const std::string& what);

// Whether a UNIX socket is bound at socket_path and listening.
bool is_listening(const std::string& socket_path);

// The path of the virtiofsd binary the build found.
const char* virtiofsd_binary();

}  // namespace virtiofs::test
