// The virtiofsd that `-o share=DIR` starts: its socket in a private 0700 directory, handed over
// already listening (--fd), so the mount never waits for it to come up. It serves one connection
// and exits when that ends; stop() makes sure of it.
#pragma once

#include <sys/types.h>

#include <string>

namespace virtiofs::mount_tool {

class Backend {
 public:
  // Throws std::runtime_error (no virtiofsd found, cannot start it). writeback: virtiofsd
  // offers FUSE_WRITEBACK_CACHE (-o writeback).
  Backend(const std::string& share_dir, bool debug, bool writeback = false);
  ~Backend();
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;

  const std::string& socket_path() const { return socket_; }
  // Why it died, from its log, when it is not running.
  std::string diagnosis() const;
  // Waits for it to exit after the connection closed (bounded), then terminates it.
  void stop();

 private:
  std::string dir_;
  std::string socket_;
  std::string log_;
  pid_t pid_ = -1;
};

// The virtiofsd to run: $VIRTIOFSD, then virtiofsd on PATH, then the distributions' locations.
std::string find_virtiofsd();

}  // namespace virtiofs::mount_tool
