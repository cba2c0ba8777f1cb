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
#include <vector>

#include "virtiofs/export.hpp"
#include "virtiofs/types.hpp"

namespace virtiofs {

namespace client {
class BufferPool;
struct Connector;
}

struct Options {
  // The device, one of:
  // - socket_path: a vhost-user backend socket (virtiofsd --socket-path);
  // - pci_device: the PCI address of a virtio-fs device bound to vfio-pci (see devices.hpp),
  //   owned through VFIO (inside a VM, as root).
  std::string socket_path;
  std::string pci_device;
  // Expected tag. Checked against the device's config when it reports one; otherwise it names
  // the device (vhost-user backends without CONFIG, like QEMU's vhost-user-fs).
  std::string tag;
  uint16_t queue_size = 128;           // power of two, 2..32768
  // Request queues to use, each owned by its own completion thread; a submitting thread keeps
  // to one queue. 0: all the device offers (up to 16).
  unsigned num_request_queues = 0;
  uint32_t max_transfer = 1u << 20;    // upper bound on bytes per READ/WRITE before INIT
  // Busy-poll a request queue this long after its last completion before sleeping on the
  // interrupt eventfd, and let a thread in a blocking call poll this long for its own reply
  // (taking it with no interrupt and no thread hand-off) before it sleeps (0: interrupt-driven).
  // Trades CPU for latency. With app_reaps_completions it concerns blocking calls only
  // (process_completions never spins).
  unsigned poll_us = 0;
  // Event-loop integration, as libblkio's completion fds: the application reaps the request
  // queues on its own thread (Client::completion_fd, process_completions) and asynchronous
  // callbacks run there; no library thread is made for the request queues. Blocking calls still
  // end without the application's help (they reap for themselves).
  bool app_reaps_completions = false;
  // Device memory set aside for Client::allocate_buffer: reads into and writes from such
  // buffers go to the device with no copy (0: none).
  size_t registered_memory_bytes = 0;
};

// A buffer in device memory (Client::allocate_buffer). read/write calls whose buffer lies in
// one move the payload with no copy. Moves, does not copy; returned to the client's pool when
// destroyed, which must happen before the Client is destroyed.
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
  IoBuffer(client::BufferPool* pool, std::span<std::byte> data) : pool_(pool), data_(data) {}
  client::BufferPool* pool_ = nullptr;
  std::span<std::byte> data_;
};

// Called once, on a thread that reaps the call's request queue: its completion thread, or a
// thread in a blocking call on the same queue that took the completion with its own (or at once
// on the caller's thread when the client has already failed); keep it short. With
// Options::app_reaps_completions: inside Client::process_completions on the application's thread
// instead (see there). Captures up to 16 bytes stay inline (no allocation).
template <class T>
using Callback = std::function<void(std::error_code, T)>;
using DoneCallback = std::function<void(std::error_code)>;

class File;

class VIRTIOFS_API Client {
 public:
  // Connects, negotiates and starts the queues. Throws std::system_error naming the cause
  // (missing socket, not a vhost-user backend, wrong tag, unsupported device).
  static std::unique_ptr<Client> connect(const Options& options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  const Negotiated& negotiated() const;
  const std::string& tag() const;
  // Sends FUSE_DESTROY, lets in-flight requests finish (bounded) and stops the device.
  void close();
  // Why the client stopped working (empty while healthy).
  std::error_code failure() const;
  // Requests submitted, notifications sent, FORGET entries delivered, requests that waited.
  // Completion wake-ups by interrupt, completions found by polling, INTERRUPTs sent.
  struct Stats {
    uint64_t requests, notifications, forgets, waits, interrupts, polled, interrupts_sent;
    uint64_t zero_copy_bytes;  // payload bytes moved straight from or into IoBuffers
    // Blocking calls whose thread the device's interrupt woke itself (no completion-thread
    // hand-off; interrupt-driven mode).
    uint64_t callers_woken;
  };
  // Request queues in use.
  unsigned num_request_queues() const;
  // A buffer of `bytes` in the registered memory (Options::registered_memory_bytes); throws
  // std::system_error(ENOMEM) when the memory is used up or was not asked for.
  IoBuffer allocate_buffer(size_t bytes);
  Stats stats() const;

  // ---- event-loop integration (Options::app_reaps_completions; else both throw EINVAL) ----
  // queue: 0 .. num_request_queues() - 1. Poll the fd for POLLIN (poll, epoll, io_uring, an
  // Asio descriptor; do not read it), then call process_completions(queue). Queues that share
  // an interrupt (a VFIO device with fewer MSI-X vectors than queues) return the same fd, and
  // processing one processes them all. The fd stays valid until the Client is destroyed.
  int completion_fd(unsigned queue) const;
  // Never blocks: completes what is ready on the queue and runs those async callbacks on this
  // thread; returns how many calls ended (replies of other threads' blocking calls on the
  // queue that it took, and woke them for, included). A callback may make calls, blocking ones
  // included. Callbacks run nowhere else, except: a call that fails as it is submitted (bad arguments,
  // client failed or closed) calls back at once on the submitting thread, and what is still
  // pending when the client closes calls back (ENOTCONN, or its result) on the closing thread.
  // A device failure ends pending calls through here. Any thread may call it; submissions go to
  // the queue the submitting thread keeps to, so loop over every queue (or the overload below).
  size_t process_completions(unsigned queue);
  // All queues.
  size_t process_completions();

  // ---- inode operations (synchronous) ----
  // FUSE semantics: a name passed to unlink, rmdir, rename or link must belong to a node the
  // caller holds a lookup reference to (the kernel always has one); devices such as virtiofsd
  // answer EIO otherwise. The path conveniences below take care of this.
  std::error_code lookup(Inode parent, std::string_view name, Entry& out);
  // Gives back nlookup references (batched on the high-priority queue, never lost).
  void forget(Inode inode, uint64_t nlookup);
  std::error_code getattr(Inode inode, Attr& out);
  std::error_code setattr(Inode inode, const SetAttr& attr, Attr& out);
  std::error_code readlink(Inode inode, std::string& target);
  std::error_code symlink(Inode parent, std::string_view name, std::string_view target, Entry& out);
  std::error_code mknod(Inode parent, std::string_view name, uint32_t mode, uint32_t rdev, Entry& out);
  std::error_code mkdir(Inode parent, std::string_view name, uint32_t mode, Entry& out);
  std::error_code unlink(Inode parent, std::string_view name);
  std::error_code rmdir(Inode parent, std::string_view name);
  // flags: 0 or RENAME_NOREPLACE / RENAME_EXCHANGE (sent as RENAME2).
  std::error_code rename(Inode olddir, std::string_view oldname, Inode newdir,
                         std::string_view newname, uint32_t flags = 0);
  std::error_code link(Inode inode, Inode newparent, std::string_view newname, Entry& out);
  std::error_code open(Inode inode, uint32_t flags, OpenFile& out);
  std::error_code create(Inode parent, std::string_view name, uint32_t flags, uint32_t mode,
                         Created& out);
  // At most negotiated().max_read / max_write bytes move per call; the count is returned.
  // A `stop` requested while the request is with the device sends FUSE_INTERRUPT on the
  // high-priority queue: the call ends with EINTR, or with its real result if the device
  // answered first (as with setlk below).
  std::error_code read(Inode inode, uint64_t fh, uint64_t offset, std::span<std::byte> buf,
                       size_t& done, std::stop_token stop = {});
  std::error_code write(Inode inode, uint64_t fh, uint64_t offset, std::span<const std::byte> data,
                        size_t& done, std::stop_token stop = {});
  std::error_code statfs(Inode inode, StatFs& out);
  std::error_code release(Inode inode, uint64_t fh, uint32_t flags = 0);
  std::error_code fsync(Inode inode, uint64_t fh, bool datasync = false);
  std::error_code flush(Inode inode, uint64_t fh, uint64_t lock_owner = 0);
  std::error_code setxattr(Inode inode, std::string_view name, std::span<const std::byte> value,
                           uint32_t flags = 0);
  // With an empty buffer, `size` is the value's size; otherwise the bytes copied.
  std::error_code getxattr(Inode inode, std::string_view name, std::span<std::byte> value,
                           size_t& size);
  std::error_code listxattr(Inode inode, std::span<std::byte> list, size_t& size);
  std::error_code removexattr(Inode inode, std::string_view name);
  std::error_code opendir(Inode inode, OpenFile& out);
  // Reads one buffer of entries starting at `offset` (0, then the last entry's offset).
  // An empty vector means the end of the directory.
  std::error_code readdir(Inode inode, uint64_t fh, uint64_t offset, std::vector<DirEntry>& out);
  // Like readdir; every entry with a non-zero entry.inode holds a lookup reference to forget.
  std::error_code readdirplus(Inode inode, uint64_t fh, uint64_t offset,
                              std::vector<std::pair<DirEntry, Entry>>& out);
  std::error_code releasedir(Inode inode, uint64_t fh);
  std::error_code fsyncdir(Inode inode, uint64_t fh, bool datasync = false);
  std::error_code access(Inode inode, uint32_t mask);
  std::error_code fallocate(Inode inode, uint64_t fh, uint64_t offset, uint64_t length,
                            uint32_t mode = 0);
  std::error_code lseek(Inode inode, uint64_t fh, uint64_t offset, uint32_t whence,
                        uint64_t& result);
  std::error_code copy_file_range(Inode in_inode, uint64_t in_fh, uint64_t in_off,
                                  Inode out_inode, uint64_t out_fh, uint64_t out_off,
                                  uint64_t len, uint64_t& copied);
  std::error_code getlk(Inode inode, uint64_t fh, uint64_t owner, const Lock& lock, Lock& out);
  std::error_code setlk(Inode inode, uint64_t fh, uint64_t owner, const Lock& lock, bool wait,
                        std::stop_token stop = {});

  // ---- inode operations (asynchronous) ----
  // Names are copied; data buffers must stay valid until the callback runs.
  void lookup(Inode parent, std::string_view name, Callback<Entry> done);
  void getattr(Inode inode, Callback<Attr> done);
  void open(Inode inode, uint32_t flags, Callback<OpenFile> done);
  void create(Inode parent, std::string_view name, uint32_t flags, uint32_t mode,
              Callback<Created> done);
  void read(Inode inode, uint64_t fh, uint64_t offset, std::span<std::byte> buf,
            Callback<size_t> done);
  void write(Inode inode, uint64_t fh, uint64_t offset, std::span<const std::byte> data,
             Callback<size_t> done);
  void release(Inode inode, uint64_t fh, DoneCallback done);
  void mkdir(Inode parent, std::string_view name, uint32_t mode, Callback<Entry> done);
  void unlink(Inode parent, std::string_view name, DoneCallback done);
  void rename(Inode olddir, std::string_view oldname, Inode newdir, std::string_view newname,
              DoneCallback done);
  void statfs(Inode inode, Callback<StatFs> done);
  void fsync(Inode inode, uint64_t fh, bool datasync, DoneCallback done);

  // ---- paths ("/a/b" or "a/b", relative to the root of the share) ----
  // Resolves a path to an entry holding one lookup reference (forget it when done).
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
  std::error_code split_parent(std::string_view path, Entry& parent, std::string_view& name);
  std::unique_ptr<Impl> impl_;
  friend class File;
  friend struct client::Connector;
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
  std::error_code close();

 private:
  friend class Client;
  Client* client_ = nullptr;
  Inode inode_ = 0;
  uint64_t fh_ = 0;
  uint32_t flags_ = 0;
};

}  // namespace virtiofs
