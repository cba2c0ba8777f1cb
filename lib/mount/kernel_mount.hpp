// The kernel side of a mount, left to libfuse3: mount options (allow_other, default_permissions,
// ro, auto_unmount, fsname=, ...), the mount itself (directly as root, through fusermount3
// otherwise) and the unmount. Requests on the fd are the bridge's business, not libfuse's: so
// options libfuse enforces in its request loop (allow_root) do nothing here; the caller settles
// which permission options to pass.
#pragma once

#include <string>

struct fuse_args;
struct fuse_session;

namespace virtiofs::mount {

// Routes libfuse's messages into a buffer so that errors are reported as one line of ours;
// take_libfuse_log() returns (and clears) what libfuse said since.
void capture_libfuse_log();
std::string take_libfuse_log();

class KernelMount {
 public:
  // Takes the libfuse options left in `args`; refuses unknown ones (std::runtime_error carrying
  // libfuse's own message).
  explicit KernelMount(fuse_args& args);
  ~KernelMount();
  KernelMount(const KernelMount&) = delete;
  KernelMount& operator=(const KernelMount&) = delete;

  void mount(const std::string& mountpoint);  // throws std::runtime_error
  int fd() const;
  // Sets the mount's readahead window (/sys/class/bdi/MAJOR:MINOR/read_ahead_kb, the FUSE
  // bdi's, which the kernel caps at 128 KiB and lowers to the INIT reply's max_readahead): once
  // INIT is answered, since the reply would lower it again. Throws std::runtime_error.
  void set_readahead_kb(const std::string& mountpoint, unsigned kb);
  // Detaches the mount (lazily: files still open keep it until the connection ends) and closes
  // the session fd. Idempotent.
  void unmount();

 private:
  fuse_session* session_ = nullptr;
  bool mounted_ = false;
};

}  // namespace virtiofs::mount
