// Plain value types of the public API: what the device reports about files, in host order.
#pragma once

#include <cstdint>
#include <string>

namespace virtiofs {

// A node id the device handed out (FUSE nodeid). The root is always kRootInode.
using Inode = uint64_t;
inline constexpr Inode kRootInode = 1;

struct Timespec {
  uint64_t sec = 0;
  uint32_t nsec = 0;
};

struct Attr {
  uint64_t ino = 0;
  uint64_t size = 0;
  uint64_t blocks = 0;
  Timespec atime, mtime, ctime;
  uint32_t mode = 0;
  uint32_t nlink = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint32_t rdev = 0;
  uint32_t blksize = 0;
};

// Result of LOOKUP, MKDIR, CREATE, ...: a node id with one lookup reference the caller owns
// (give it back with Client::forget) and its attributes. entry_valid and attr_valid are the
// device's timeouts, relative to the reply: how long the name may be taken to still name this
// node, and these attributes to still hold (virtiofsd: 0 with cache=none, 1 s with auto).
struct Entry {
  Inode inode = 0;
  uint64_t generation = 0;
  Attr attr;
  Timespec entry_valid, attr_valid;
};

struct OpenFile {
  uint64_t fh = 0;
  uint32_t open_flags = 0;  // FOPEN_* bits the device returned
};

struct Created {
  Entry entry;
  OpenFile file;
};

struct StatFs {
  uint64_t blocks = 0, bfree = 0, bavail = 0, files = 0, ffree = 0;
  uint32_t bsize = 0, namelen = 0, frsize = 0;
};

// Bits of SetAttr::valid (the FATTR_* values of the FUSE protocol).
namespace set {
inline constexpr uint32_t kMode = 1u << 0;
inline constexpr uint32_t kUid = 1u << 1;
inline constexpr uint32_t kGid = 1u << 2;
inline constexpr uint32_t kSize = 1u << 3;
inline constexpr uint32_t kAtime = 1u << 4;
inline constexpr uint32_t kMtime = 1u << 5;
inline constexpr uint32_t kFh = 1u << 6;
inline constexpr uint32_t kAtimeNow = 1u << 7;
inline constexpr uint32_t kMtimeNow = 1u << 8;
}  // namespace set

// Fields of SETATTR; set the matching set::k* bit in `valid`.
struct SetAttr {
  uint32_t valid = 0;
  uint64_t fh = 0;
  uint64_t size = 0;
  Timespec atime, mtime;
  uint32_t mode = 0, uid = 0, gid = 0;
};

struct DirEntry {
  uint64_t ino = 0;
  uint64_t offset = 0;  // cookie for the next READDIR
  uint32_t type = 0;    // DT_* value
  std::string name;
};

// A POSIX record lock (struct fuse_file_lock).
struct Lock {
  uint64_t start = 0;
  uint64_t end = 0;
  uint32_t type = 0;  // F_RDLCK, F_WRLCK, F_UNLCK
  uint32_t pid = 0;
};

// What FUSE_INIT settled with the device.
struct Negotiated {
  uint32_t major = 0;
  uint32_t minor = 0;
  uint32_t max_write = 0;
  uint32_t max_read = 0;  // bytes per READ the driver will ask for
  uint32_t max_pages = 0;
  uint64_t flags = 0;  // FUSE_* capability bits both sides agreed on
  uint32_t time_gran = 0;
  uint32_t max_readahead = 0;  // as the device answered (the FUSE bridge passes them on)
  uint16_t max_background = 0;
  uint16_t congestion_threshold = 0;
};

// What a client's session counted since it started (Client::stats); every field only grows.
struct Stats {
  uint64_t requests = 0;         // requests submitted to the request queues
  uint64_t notifications = 0;    // kicks actually sent to the device
  uint64_t forgets = 0;          // FORGET entries handed to the device
  uint64_t waits = 0;            // requests that waited for ring or buffer space
  uint64_t interrupts = 0;       // completion eventfd wake-ups handled
  uint64_t polled = 0;           // completions found by busy-polling, with no interrupt
  uint64_t interrupts_sent = 0;  // FUSE_INTERRUPTs handed to the device
  uint64_t zero_copy_bytes = 0;  // payload bytes moved straight from or into IoBuffers
  uint64_t callers_woken = 0;    // blocking calls whose thread the device's interrupt woke itself
  uint64_t abandoned = 0;        // calls given up on by cancellation (Options::interrupts off)
  uint64_t replies_dropped = 0;  // late replies to those calls, taken and dropped
  uint64_t path_cache_hits = 0;    // path components and attributes the path cache answered
  uint64_t path_cache_misses = 0;  // names it did not hold fresh (asked of the device)
  // Blocking calls whose adaptive spin (Options::poll_us = kAdaptivePolling) ended without
  // the reply, so that they slept on the interrupt.
  uint64_t spin_misses = 0;
};

}  // namespace virtiofs
