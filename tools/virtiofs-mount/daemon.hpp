// Daemonizing as a mount helper must: the parent stays until the mount is live or has failed,
// and its exit status says which. (libfuse's fuse_daemonize lets the parent go before that.)
#pragma once

#include <string>

namespace virtiofs::mount_tool {

class Daemon {
 public:
  // Forks unless `foreground`; the child starts a new session.
  explicit Daemon(bool foreground);
  bool is_parent() const { return parent_; }
  // Parent: waits for the child's verdict and returns the exit status to use.
  int wait_verdict();
  // Child: prints the one-line error (to the terminal the parent still holds) and returns 1.
  int failed(const std::string& message);
  // Child: the mount is live; release the parent and let go of the terminal.
  void succeeded();

 private:
  bool foreground_;
  bool parent_ = false;
  int pipe_[2] = {-1, -1};
};

}  // namespace virtiofs::mount_tool
