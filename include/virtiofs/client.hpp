// libvirtiofs public API: a virtio-fs device reached from userspace, with no kernel file system in
// the way.
//
//   auto fs = virtiofs::Client::connect({.socket_path = "/run/vfsd.sock"});
//   std::string text;
//   fs->read_file("/hello.txt", text);
//
// Three layers, all thread-safe:
//  - inode operations, one per FUSE request, synchronous (return std::error_code) and
//    asynchronous (callback on a library thread: see Callback);
//  - path conveniences (stat, mkdir, read_file, write_file, list_dir, ...);
//  - File, an open file with RAII release.
// Errors are std::error_code in std::system_category: the device's errno (ENOENT, EEXIST, ...),
// EINVAL for bad arguments, EIO when the device broke the protocol (the session then refuses
// everything), ENOTCONN when the device was lost or the client closed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <stop_token>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "virtiofs/export.hpp"
#include "virtiofs/types.hpp"

namespace virtiofs {

namespace client {
class BufferPool;
struct Connector;
class PathWalk;
}

// Whether Client::forget checks its count against the lookup references this client received
// (Options::lookup_accounting).
enum class LookupAccounting : uint8_t {
  kDefault,  // on when libvirtiofs itself was built without NDEBUG (a debug build), else off
  kOn,
  kOff,
};

// Options::poll_us: spin for a time learned from recent round trips, then sleep (the default).
inline constexpr unsigned kAdaptivePolling = ~0u;

struct Options {
  // The device, one of:
  // - socket_path: a vhost-user backend socket (virtiofsd --socket-path);
  // - pci_device: the PCI address of a virtio-fs device bound to vfio-pci (see devices.hpp),
  //   owned through VFIO (inside a VM, as root);
  // - neither: the vfio-pci-bound virtio-fs device whose tag is `tag`.
  std::string socket_path;
  std::string pci_device;
  // The tag, at most 36 bytes. A device that reports its tag (PCI devices, vhost-user backends
  // offering CONFIG) must report this one; left empty, the device's tag is taken. A device that
  // reports none (vhost-user backends without CONFIG, like QEMU's C virtiofsd) is known by this
  // one, which may be empty. Client::tag() is the result.
  std::string tag;
  uint16_t queue_size = 128;           // power of two, 2..32768
  // Request queues to use, each owned by its own completion thread; a submitting thread keeps
  // to one queue. 0: all the device offers (up to 16).
  unsigned num_request_queues = 0;
  uint32_t max_transfer = 1u << 20;    // upper bound on bytes per READ/WRITE before INIT
  // How a thread in a blocking call waits for its reply:
  // - kAdaptivePolling (the default): it polls its request queue (the device's interrupts off,
  //   yielding the CPU between looks) for a time learned from the queue's recent round trips,
  //   at most twice their median and at most 200 us, and takes its reply with no interrupt and
  //   no thread hand-off; when that spin misses it sleeps on the queue's interrupt itself. Spins
  //   that keep missing (a slow device) back off: calls then sleep at once, with an occasional
  //   probe to see whether the device got fast again. Asynchronous calls stay
  //   interrupt-driven (completion threads never spin). Stats::polled and spin_misses show it.
  // - 0: interrupt-driven only.
  // - N: a fixed spin: a completion thread busy-polls a request queue N us after its last
  //   completion before sleeping on the interrupt eventfd, and a blocking caller polls N us for
  //   its own reply before it sleeps. Trades CPU for latency.
  // With app_reaps_completions it concerns blocking calls only (process_completions never
  // spins).
  unsigned poll_us = kAdaptivePolling;
  // Event-loop integration, as libblkio's completion fds: the application reaps the request
  // queues on its own thread (Client::completion_fd, process_completions) and asynchronous
  // callbacks run there; no library thread is made for the request queues. Blocking calls still
  // end without the application's help (they reap for themselves).
  bool app_reaps_completions = false;
  // Device memory set aside for Client::allocate_buffer: reads into and writes from such
  // buffers go to the device with no copy (0: none).
  size_t registered_memory_bytes = 0;
  // What a stop_token stopping a call the device holds does (see the inode operations): send
  // FUSE_INTERRUPT (true), or drop the call at once and its reply when it comes (false, as
  // virtiofs-mount's default: virtiofsd 7.2 crashes on an INTERRUPT for a request it has
  // already answered).
  bool interrupts = false;
  // Counts, per inode, the lookup references replies handed this client (LOOKUP, MKDIR, MKNOD,
  // SYMLINK, LINK, CREATE, READDIRPLUS entries with a non-zero inode) minus those forgotten, and
  // refuses a forget beyond them with EINVAL instead of sending it: a device such as virtiofsd
  // aborts on one, long after the mistake. kDefault follows the library's build, not the
  // application's NDEBUG. Costs a locked hash-map update per reference and per forget.
  LookupAccounting lookup_accounting = LookupAccounting::kDefault;
  // The path conveniences' cache of names and attributes, as the kernel's dcache and FUSE
  // attribute cache: each (directory, name) a path walk looked up is kept, holding its lookup
  // reference, for the device's entry_valid, and its node's attributes for attr_valid (a device
  // answering with 0, as virtiofsd's cache=none, caches nothing). This client's own changes
  // (create, unlink, rename, setattr, write, ...) update it at once; a change made elsewhere is
  // seen once the device's timeout passes. At most this many names, least recently used first
  // out (their references forgotten); 0 turns it off. The inode operations are never cached.
  size_t path_cache_entries = 4096;
};

// A buffer in device memory (Client::allocate_buffer). read/write calls whose buffer lies in
// one move the payload with no copy. Moves, does not copy; returned to the client's pool when
// destroyed. It may outlive its Client: the memory then stays mapped (span() stays valid) until
// the last such buffer goes, but no device reads or writes it any more. One caveat: when the
// client fails while calls are in flight (failure() set: a broken reply, a timeout), those
// calls end at once but the device is only stopped by close(); until then a device that broke
// the protocol might still write a buffer it was given. Close a failed client before reusing
// the buffers of its failed calls.
class VIRTIOFS_API IoBuffer {
 public:
  IoBuffer() = default;
  ~IoBuffer();
  IoBuffer(IoBuffer&& other) noexcept;
  IoBuffer& operator=(IoBuffer&& other) noexcept;
  std::span<std::byte> span() const { return data_; }
  std::byte* data() const { return data_.data(); }
  size_t size() const { return data_.size(); }

 private:
  friend class Client;
  IoBuffer(std::shared_ptr<client::BufferPool> pool, std::span<std::byte> data)
      : pool_(std::move(pool)), data_(data) {}
  std::shared_ptr<client::BufferPool> pool_;  // keeps the pool and the memory mapping alive
  std::span<std::byte> data_;
};

// Called once, on a thread that reaps the call's request queue: its completion thread, or a
// thread in a blocking call on the same queue that took the completion with its own (or at once
// on the caller's thread when the call fails before it is sent, or on the stopping thread when a
// stop gives the call up); keep it short. It must not throw (std::terminate) and must not close
// or destroy the Client. With Options::app_reaps_completions: inside
// Client::process_completions on the application's thread instead (see there). Captures up to
// 16 bytes stay inline (no allocation).
template <class T>
using Callback = std::function<void(std::error_code, T)>;
using DoneCallback = std::function<void(std::error_code)>;

class File;

class VIRTIOFS_API Client {
 public:
  // Connects, negotiates and starts the queues. Throws std::system_error naming the cause and
  // the fix (missing socket, a path that is no socket, not a vhost-user backend, wrong tag,
  // unsupported device).
  static std::unique_ptr<Client> connect(const Options& options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  const Negotiated& negotiated() const;
  const std::string& tag() const;
  // Waits for the RELEASEs File::close left pending (and the FORGETs their replies send), gives
  // back the path cache's references, sends FUSE_DESTROY, lets in-flight requests finish and
  // stops the device: all within one device timeout. Close every File first: a File::close
  // running concurrently may send a RELEASE that DESTROY overtakes (its FORGET is then dropped),
  // and a File must not outlive its Client. Not from a completion callback: throws EDEADLK at
  // once (it would wait for its own thread). Idempotent; the destructor calls it.
  void close();
  // Why the client stopped working (empty while healthy).
  std::error_code failure() const;
  using Stats = virtiofs::Stats;
  // Request queues in use.
  unsigned num_request_queues() const;
  // A buffer of `bytes` in the registered memory (Options::registered_memory_bytes); throws
  // std::system_error(ENOMEM) when the memory is used up or was not asked for.
  IoBuffer allocate_buffer(size_t bytes);
  Stats stats() const;
  // Empties the path cache (Options::path_cache_entries): every cached reference goes back to
  // the device with FORGET, and the next path call asks the device again (as writing 2 to
  // /proc/sys/vm/drop_caches does for a kernel mount).
  void drop_caches();

  // ---- event-loop integration (Options::app_reaps_completions; else both throw EINVAL) ----
  // queue: 0 .. num_request_queues() - 1. Poll the fd for POLLIN (poll, epoll, io_uring, an
  // Asio descriptor; do not read it), then call process_completions(queue). Queues that share
  // an interrupt (a VFIO device with fewer MSI-X vectors than queues) return the same fd, and
  // processing one processes them all. The fd stays valid until the Client is destroyed.
  int completion_fd(unsigned queue) const;
  // Never blocks: completes what is ready on the queue and runs those async callbacks on this
  // thread; returns how many calls ended (replies of other threads' blocking calls on the
  // queue that it took, and woke them for, included). A callback may make calls, blocking ones
  // included. Callbacks run nowhere else, except: a call that fails as it is submitted (bad
  // arguments, a stopped token, client failed or closed) calls back at once on the submitting
  // thread; a stop that gives a call up (Options::interrupts off) calls back on the stopping
  // thread; and what is still pending when the client closes calls back (ENOTCONN, or its
  // result) on the closing thread.
  // A device failure ends pending calls through here. Any thread may call it; submissions go to
  // the queue the submitting thread keeps to, so loop over every queue (or the overload below).
  size_t process_completions(unsigned queue);
  // All queues.
  size_t process_completions();

  // ---- inode operations ----
  // Every FUSE operation comes in two forms with the same parameters: synchronous (returns the
  // error, fills the result) and asynchronous (the result goes to `done`, see Callback; names
  // are copied, data buffers must stay valid until `done` runs). Both take a stop_token:
  //  - already stopped: the call fails with EINTR before anything is sent;
  //  - stopped while the device holds the request: with Options::interrupts, FUSE_INTERRUPT
  //    goes to the device and the call ends with EINTR or its real result, whichever the device
  //    gives; without (the default), the call ends with EINTR at once and the device's reply is
  //    dropped when it comes (what it gave out, a lookup reference or an open handle, is given
  //    back). Three kinds of call wait for the device's answer instead: one whose payload lies
  //    in an IoBuffer (the device reads or writes it in place), readdirplus (its entries each
  //    carry a reference) and setlk with wait (a lock granted later would be held by nobody).
  //    A request the device never answers keeps its place in the queue until close(), which
  //    then waits for it up to the device timeout.
  // FUSE semantics: a name passed to unlink, rmdir, rename or link must belong to a node the
  // caller holds a lookup reference to (the kernel always has one); devices such as virtiofsd
  // answer EIO otherwise. The path conveniences below take care of this.
  using Stop = std::stop_token;

  std::error_code lookup(Inode parent, std::string_view name, Entry& out, Stop stop = {});
  void lookup(Inode parent, std::string_view name, Callback<Entry> done, Stop stop = {});
  // Gives back nlookup references (batched on the high-priority queue, never lost). FORGET has
  // no reply, so there is nothing to wait for and no asynchronous form. With
  // Options::lookup_accounting, more than this client holds is EINVAL and nothing is sent.
  // The root is never forgotten (no-op), nor are 0 references.
  std::error_code forget(Inode inode, uint64_t nlookup);
  std::error_code getattr(Inode inode, Attr& out, Stop stop = {});
  void getattr(Inode inode, Callback<Attr> done, Stop stop = {});
  std::error_code setattr(Inode inode, const SetAttr& attr, Attr& out, Stop stop = {});
  void setattr(Inode inode, const SetAttr& attr, Callback<Attr> done, Stop stop = {});
  std::error_code readlink(Inode inode, std::string& target, Stop stop = {});
  void readlink(Inode inode, Callback<std::string> done, Stop stop = {});
  std::error_code symlink(Inode parent, std::string_view name, std::string_view target, Entry& out,
                          Stop stop = {});
  void symlink(Inode parent, std::string_view name, std::string_view target, Callback<Entry> done,
               Stop stop = {});
  std::error_code mknod(Inode parent, std::string_view name, uint32_t mode, uint32_t rdev,
                        Entry& out, Stop stop = {});
  void mknod(Inode parent, std::string_view name, uint32_t mode, uint32_t rdev,
             Callback<Entry> done, Stop stop = {});
  std::error_code mkdir(Inode parent, std::string_view name, uint32_t mode, Entry& out,
                        Stop stop = {});
  void mkdir(Inode parent, std::string_view name, uint32_t mode, Callback<Entry> done,
             Stop stop = {});
  std::error_code unlink(Inode parent, std::string_view name, Stop stop = {});
  void unlink(Inode parent, std::string_view name, DoneCallback done, Stop stop = {});
  std::error_code rmdir(Inode parent, std::string_view name, Stop stop = {});
  void rmdir(Inode parent, std::string_view name, DoneCallback done, Stop stop = {});
  // flags: 0 or RENAME_NOREPLACE / RENAME_EXCHANGE (sent as RENAME2).
  std::error_code rename(Inode olddir, std::string_view oldname, Inode newdir,
                         std::string_view newname, uint32_t flags = 0, Stop stop = {});
  void rename(Inode olddir, std::string_view oldname, Inode newdir, std::string_view newname,
              uint32_t flags, DoneCallback done, Stop stop = {});
  std::error_code link(Inode inode, Inode newparent, std::string_view newname, Entry& out,
                       Stop stop = {});
  void link(Inode inode, Inode newparent, std::string_view newname, Callback<Entry> done,
            Stop stop = {});
  std::error_code open(Inode inode, uint32_t flags, OpenFile& out, Stop stop = {});
  void open(Inode inode, uint32_t flags, Callback<OpenFile> done, Stop stop = {});
  std::error_code create(Inode parent, std::string_view name, uint32_t flags, uint32_t mode,
                         Created& out, Stop stop = {});
  void create(Inode parent, std::string_view name, uint32_t flags, uint32_t mode,
              Callback<Created> done, Stop stop = {});
  // At most negotiated().max_read / max_write bytes move per call; the count is the result.
  std::error_code read(Inode inode, uint64_t fh, uint64_t offset, std::span<std::byte> buf,
                       size_t& done, Stop stop = {});
  void read(Inode inode, uint64_t fh, uint64_t offset, std::span<std::byte> buf,
            Callback<size_t> done, Stop stop = {});
  std::error_code write(Inode inode, uint64_t fh, uint64_t offset, std::span<const std::byte> data,
                        size_t& done, Stop stop = {});
  void write(Inode inode, uint64_t fh, uint64_t offset, std::span<const std::byte> data,
             Callback<size_t> done, Stop stop = {});
  std::error_code statfs(Inode inode, StatFs& out, Stop stop = {});
  void statfs(Inode inode, Callback<StatFs> done, Stop stop = {});
  std::error_code release(Inode inode, uint64_t fh, uint32_t flags = 0, Stop stop = {});
  void release(Inode inode, uint64_t fh, uint32_t flags, DoneCallback done, Stop stop = {});
  std::error_code fsync(Inode inode, uint64_t fh, bool datasync = false, Stop stop = {});
  void fsync(Inode inode, uint64_t fh, bool datasync, DoneCallback done, Stop stop = {});
  std::error_code flush(Inode inode, uint64_t fh, uint64_t lock_owner = 0, Stop stop = {});
  void flush(Inode inode, uint64_t fh, uint64_t lock_owner, DoneCallback done, Stop stop = {});
  std::error_code setxattr(Inode inode, std::string_view name, std::span<const std::byte> value,
                           uint32_t flags = 0, Stop stop = {});
  void setxattr(Inode inode, std::string_view name, std::span<const std::byte> value,
                uint32_t flags, DoneCallback done, Stop stop = {});
  // With an empty buffer, the result is the value's size; otherwise the bytes copied.
  std::error_code getxattr(Inode inode, std::string_view name, std::span<std::byte> value,
                           size_t& size, Stop stop = {});
  void getxattr(Inode inode, std::string_view name, std::span<std::byte> value,
                Callback<size_t> done, Stop stop = {});
  std::error_code listxattr(Inode inode, std::span<std::byte> list, size_t& size, Stop stop = {});
  void listxattr(Inode inode, std::span<std::byte> list, Callback<size_t> done, Stop stop = {});
  std::error_code removexattr(Inode inode, std::string_view name, Stop stop = {});
  void removexattr(Inode inode, std::string_view name, DoneCallback done, Stop stop = {});
  std::error_code opendir(Inode inode, OpenFile& out, Stop stop = {});
  void opendir(Inode inode, Callback<OpenFile> done, Stop stop = {});
  // Reads one buffer of entries starting at `offset` (0, then the last entry's offset).
  // An empty result means the end of the directory.
  std::error_code readdir(Inode inode, uint64_t fh, uint64_t offset, std::vector<DirEntry>& out,
                          Stop stop = {});
  void readdir(Inode inode, uint64_t fh, uint64_t offset, Callback<std::vector<DirEntry>> done,
               Stop stop = {});
  // Like readdir; every entry with a non-zero entry.inode holds a lookup reference to forget.
  std::error_code readdirplus(Inode inode, uint64_t fh, uint64_t offset,
                              std::vector<std::pair<DirEntry, Entry>>& out, Stop stop = {});
  void readdirplus(Inode inode, uint64_t fh, uint64_t offset,
                   Callback<std::vector<std::pair<DirEntry, Entry>>> done, Stop stop = {});
  std::error_code releasedir(Inode inode, uint64_t fh, Stop stop = {});
  void releasedir(Inode inode, uint64_t fh, DoneCallback done, Stop stop = {});
  std::error_code fsyncdir(Inode inode, uint64_t fh, bool datasync = false, Stop stop = {});
  void fsyncdir(Inode inode, uint64_t fh, bool datasync, DoneCallback done, Stop stop = {});
  std::error_code access(Inode inode, uint32_t mask, Stop stop = {});
  void access(Inode inode, uint32_t mask, DoneCallback done, Stop stop = {});
  std::error_code fallocate(Inode inode, uint64_t fh, uint64_t offset, uint64_t length,
                            uint32_t mode = 0, Stop stop = {});
  void fallocate(Inode inode, uint64_t fh, uint64_t offset, uint64_t length, uint32_t mode,
                 DoneCallback done, Stop stop = {});
  std::error_code lseek(Inode inode, uint64_t fh, uint64_t offset, uint32_t whence,
                        uint64_t& result, Stop stop = {});
  void lseek(Inode inode, uint64_t fh, uint64_t offset, uint32_t whence, Callback<uint64_t> done,
             Stop stop = {});
  std::error_code copy_file_range(Inode in_inode, uint64_t in_fh, uint64_t in_off,
                                  Inode out_inode, uint64_t out_fh, uint64_t out_off,
                                  uint64_t len, uint64_t& copied, Stop stop = {});
  void copy_file_range(Inode in_inode, uint64_t in_fh, uint64_t in_off, Inode out_inode,
                       uint64_t out_fh, uint64_t out_off, uint64_t len, Callback<uint64_t> done,
                       Stop stop = {});
  std::error_code getlk(Inode inode, uint64_t fh, uint64_t owner, const Lock& lock, Lock& out,
                        Stop stop = {});
  void getlk(Inode inode, uint64_t fh, uint64_t owner, const Lock& lock, Callback<Lock> done,
             Stop stop = {});
  // With wait, the device may hold the request until the lock is free; a stop ends the wait
  // only with Options::interrupts (see above).
  std::error_code setlk(Inode inode, uint64_t fh, uint64_t owner, const Lock& lock, bool wait,
                        Stop stop = {});
  void setlk(Inode inode, uint64_t fh, uint64_t owner, const Lock& lock, bool wait,
             DoneCallback done, Stop stop = {});

  // ---- paths ("/a/b" or "a/b", relative to the root of the share) ----
  // Normalised first: repeated '/' count as one, "." components are dropped, and "", "/" and
  // "." name the root. ".." goes back to the directory the walk came from, and stays at the
  // root, so no path leaves the share. The walk never follows symlinks (a symlink before the
  // last name is ENOTDIR, "link/.." too), so that is the parent POSIX would find; a lexical
  // "a/link/.." -> "a" would not be. A path ending in '/', "/." or "/.." must name a directory:
  // ENOTDIR where the entry is not one or a symlink or link would be created (mkdir("x/")
  // works; open_file with O_CREAT is EISDIR, as open(2)). A name over 255 bytes or a path of 4096 bytes or more: ENAMETOOLONG; a NUL byte:
  // EINVAL. Where a call needs an entry's name (mkdir, rmdir, unlink, rename, symlink, link's
  // new path, open_file with O_CREAT), a path naming the root is EEXIST when creating and EBUSY
  // otherwise (the root is the share's mount point), and one ending in "." or ".." is EINVAL.
  // With the path cache on (Options::path_cache_entries), names and attributes are answered
  // from it within the device's timeouts (Entry::entry_valid/attr_valid); this client's own
  // changes, through these calls or the inode API, are seen at once.
  // Resolves a path to an entry holding one lookup reference (forget it when done): the
  // directories on the way may come from the cache, the last name is always looked up.
  std::error_code resolve(std::string_view path, Entry& out);
  std::error_code stat(std::string_view path, Attr& out);
  std::error_code mkdir(std::string_view path, uint32_t mode = 0755);
  std::error_code rmdir(std::string_view path);
  std::error_code unlink(std::string_view path);
  std::error_code rename(std::string_view from, std::string_view to);
  std::error_code symlink(std::string_view target, std::string_view linkpath);
  std::error_code link(std::string_view existing, std::string_view newpath);
  std::error_code readlink(std::string_view path, std::string& target);
  std::error_code list_dir(std::string_view path, std::vector<DirEntry>& out);
  std::error_code read_file(std::string_view path, std::string& out);
  // Creates or truncates, then writes all of data.
  std::error_code write_file(std::string_view path, std::span<const std::byte> data,
                             uint32_t mode = 0644);
  // Opens (O_CREAT creates with mode); the File releases the handle when destroyed.
  std::error_code open_file(std::string_view path, uint32_t flags, File& out, uint32_t mode = 0644);

 private:
  struct Impl;
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  friend class File;
  friend struct client::Connector;
  friend class client::PathWalk;
};

// An open regular file. Moves, does not copy; release and forget happen on close or destruction.
class VIRTIOFS_API File {
 public:
  File() = default;
  ~File();
  File(File&& other) noexcept;
  File& operator=(File&& other) noexcept;

  bool is_open() const { return client_ != nullptr; }
  Inode inode() const { return inode_; }
  uint64_t handle() const { return fh_; }
  // Loops over max_read/max_write sized requests; short only at end of file.
  std::error_code pread(uint64_t offset, std::span<std::byte> buf, size_t& done);
  std::error_code pwrite(uint64_t offset, std::span<const std::byte> data, size_t& done);
  std::error_code stat(Attr& out);
  // Sends FLUSH (only for a file opened for writing) and waits for it: its error is returned.
  // RELEASE is sent but not waited for (as the kernel's FUSE does for /dev/fuse mounts; the
  // in-kernel virtio-fs driver waits), and its error is not reported. So what is tied to the
  // server's open file ends only when RELEASE reaches the device, after close returns: locks
  // taken with Client::setlk/flock on this handle, and the server's own fd (e.g. a backend that
  // refuses to unlink open files, or NFS's silly rename). Where that matters, unlock before
  // closing. The node is forgotten after RELEASE's reply. Client::close waits for the RELEASEs
  // still pending; with Options::app_reaps_completions close waits for RELEASE itself.
  std::error_code close();

 private:
  friend class Client;
  Client* client_ = nullptr;
  Inode inode_ = 0;
  uint64_t fh_ = 0;
  uint32_t flags_ = 0;
  // The node is kept by a pin in the path cache (as an open file keeps its dentry) instead of a
  // lookup reference of the File's own: opening a cached name costs no LOOKUP.
  bool pinned_ = false;
};

}  // namespace virtiofs
