// virtiofs-mount's command line, in the form FUSE mount helpers use:
//   virtiofs-mount [-f] [-d] [-s] [-o OPT[,OPT...]] TAG MOUNTPOINT
// Our options (socket=, share=, queue_size=, num_queues=, poll_us=, interrupts,
// io_uring, io_uring_depth=, remote_locks, readahead_kb=, writeback) are taken out; so are the
// permission options, which we settle (default_permissions always unless
// no_default_permissions; allow_other by default for root);
// fstab-only ones are dropped; the rest is left for libfuse, which refuses what it does not know.
#pragma once

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

#include <stdexcept>
#include <string>

namespace virtiofs::mount_tool {

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Options {
  std::string tag;
  std::string mountpoint;  // absolute
  std::string socket;      // -o socket=PATH: a vhost-user backend
  std::string share;       // -o share=DIR: start virtiofsd on DIR
  std::string pci_device;  // neither: the vfio-pci-bound device with the tag
  unsigned queue_size = 128;
  unsigned num_queues = 0;  // 0: all the device offers
  unsigned poll_us = 0;
  unsigned readers = 2;  // max_threads=N, 1 with -s
  bool readers_given = false;
  bool interrupts = false;  // -o interrupts: forward FUSE_INTERRUPT to the device
  bool io_uring = false;    // -o io_uring: FUSE over io_uring when the kernel offers it
  unsigned io_uring_depth = 8;
  bool remote_locks = false;  // -o remote_locks: the device keeps locks, not the guest kernel
  // -o readahead_kb=N: the bdi's window after mounting (0: the kernel's 128 KiB). 1 MiB by
  // default: a sequential read then goes out in READs of max_pages (1 MiB), not of 128 KiB.
  unsigned readahead_kb = 1024;
  bool readahead_given = false;
  bool writeback = false;     // -o writeback: share='s virtiofsd offers FUSE_WRITEBACK_CACHE
  bool default_permissions = true;  // the kernel checks owners and modes
  bool allow_other = false;         // other users may use the mount
  bool foreground = false;
  bool debug = false;
  bool help = false;
  bool version = false;
  fuse_args fuse = FUSE_ARGS_INIT(0, nullptr);  // what libfuse gets

  Options() = default;
  Options(const Options&) = delete;
  Options& operator=(const Options&) = delete;
  ~Options() { fuse_opt_free_args(&fuse); }
};

// Throws UsageError with a one-line message (std::runtime_error for a missing mount point).
void parse(int argc, char** argv, Options& out);
// Checks what can be checked before anything starts: the sizes (UsageError), then the mount
// point, the socket or directory (std::runtime_error, std::system_error).
void validate(Options& options);
void print_usage(const char* program);
// One line for the -d log: who may use the mount and who checks permissions.
std::string permission_model(const Options& options);

}  // namespace virtiofs::mount_tool
