// The FUSE bridge: carries the kernel's FUSE requests to the virtio-fs device and the device's
// replies back, as raw messages. Reader threads read /dev/fuse (one cloned fd each) straight into
// the session's device memory; FUSE_INIT is settled against both sides; FORGETs are batched on
// hiprio; everything else goes to the device without waiting for it. Replies are validated by
// the session and written, from device memory, to the fd their request came from.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <sys/types.h>
#include <sys/uio.h>

#include "fs/session.hpp"
#include "fuse/forwarding.hpp"
#include "mount/in_flight.hpp"
#include "mount/index_pool.hpp"
#include "mount/kernel_ring.hpp"
#include "mount/lock_waits.hpp"

namespace virtiofs::mount {

struct BridgeOptions {
  unsigned readers = 2;  // threads reading /dev/fuse; each holds one landing buffer
  bool debug = false;    // a line per request and per reply on stderr
  // Forward FUSE_INTERRUPT to the device on hiprio. Off: the bridge answers ENOSYS and the
  // kernel stops interrupting, as with the Linux virtio-fs driver. virtiofsd 7.2 cannot take
  // them: it answers a stale INTERRUPT with EAGAIN inside another request's reply and drops the
  // connection.
  bool forward_interrupts = false;
  // Take requests through FUSE over io_uring when the kernel offers it (Linux 6.14+ with the
  // fuse module's enable_uring), `io_uring_depth` entries per CPU; /dev/fuse reads otherwise.
  bool io_uring = false;
  unsigned io_uring_depth = 8;
  // The device keeps POSIX and flock locks (FUSE_POSIX_LOCKS, FUSE_FLOCK_LOCKS passed on), not
  // the guest kernel; blocking ones wait in the bridge (mount/lock_waits.hpp), and requests then
  // come through /dev/fuse reads only.
  bool remote_locks = false;
  // Polled readers (SPDK-style): after a request or a reply, a reader keeps reading /dev/fuse
  // without blocking and reaping its queue's used ring (the device's interrupts off) for this
  // long before it sleeps, so neither a request nor a reply pays a wake-up on our side. The
  // price: a CPU per reader while requests keep coming. With io_uring, the queue threads poll
  // their CQ and the used ring instead, and the readers (FORGET, INTERRUPT) sleep.
  unsigned poll_us = 0;
};

class Bridge {
 public:
  static constexpr uint32_t kHeadBytes = 8192;    // request and reply heads per record
  static constexpr uint32_t kChunkBytes = 65536;  // payload beyond the heads
  static constexpr uint32_t kLandingChunks = 16;  // a read lands in head + 1 MiB
  // Largest WRITE or READ payload the bridge stages.
  static constexpr uint32_t kMaxPayload = kLandingChunks * kChunkBytes;

  // Device memory the bridge needs in the session's staging area.
  static size_t staging_bytes(const fs::SessionOptions& session, const BridgeOptions& options);

  // `fuse_fd` is the /dev/fuse fd of a mounted file system; the bridge reads only from clones
  // of it, so the owner may close it (unmount) while replies are still being written.
  Bridge(fs::Session& session, int fuse_fd, const BridgeOptions& options);
  ~Bridge();
  Bridge(const Bridge&) = delete;
  Bridge& operator=(const Bridge&) = delete;

  // Waits until the kernel's INIT is answered. False, with the reason, on failure or timeout.
  bool wait_init(std::chrono::milliseconds timeout, std::string& error);
  // Readable (eventfd) once the kernel ended the connection (the file system was unmounted).
  int ended_fd() const { return ended_fd_; }
  // Stops the readers and waits for them. Requests already at the device still get their
  // replies until the session is shut down; the clones close when the bridge is destroyed.
  void stop();
  // Requests the kernel sent through FUSE over io_uring (0: all came through /dev/fuse reads).
  uint64_t ring_requests() const { return ring_ ? ring_->requests() : 0; }
  // poll_us: requests polled readers read without sleeping, and replies they reaped themselves.
  uint64_t spun_reads() const { return spun_reads_.load(std::memory_order_relaxed); }
  uint64_t reader_reaped() const { return reader_reaped_.load(std::memory_order_relaxed); }

 private:
  struct Request;
  struct Reader;

  void read_loop(Reader& reader);
  // A landing record and chunks for the next read; false once stopping. Lets go of the
  // reader's poller before it waits (what frees them comes through the queue it holds).
  bool ready_landing(Reader& reader);
  // poll_us: reads without blocking and reaps the queue (after every read too) until a request
  // comes, or, once nothing happened for poll_us, drops the poller and sleeps in a blocking
  // read. Returns what readv returns.
  ssize_t polled_read(Reader& reader, const iovec* iov, int count);
  ssize_t blocking_read(Reader& reader, const iovec* iov, int count);
  bool set_nonblocking(Reader& reader, bool on);
  // Handles the `n` bytes the reader just read into its landing record.
  void dispatch(Reader& reader, size_t n);
  void handle_init(Reader& reader, const fuse_in_header& header, std::span<const std::byte> args);
  // Sets up the io_uring path if asked for and offered; true if the INIT reply may claim it.
  bool prepare_ring(const fuse::KernelInit& kernel);
  void handle_forget(Reader& reader, const fuse_in_header& header, size_t n);
  void forward(Reader& reader, const fuse_in_header& header, uint32_t reply_bytes, bool hiprio,
               size_t n);
  static void on_reply(fs::Call& call);
  void finish(Request& request);
  void reply_error(int fd, uint64_t unique, int error);
  void write_reply(int fd, const iovec* iov, int count, uint64_t unique);
  void mark_ended();

  fs::Session& session_;
  BridgeOptions options_;
  std::vector<std::unique_ptr<Request>> requests_;
  IndexPool free_requests_;
  IndexPool free_chunks_;
  std::byte* chunks_ = nullptr;
  // Per chunk, the prefix that may hold an earlier request or reply (mount/reply_room.hpp);
  // touched only by the thread that holds the chunk.
  std::vector<uint32_t> chunk_dirty_;
  std::vector<std::unique_ptr<Reader>> readers_;
  int fuse_fd_ = -1;
  std::span<std::byte> ring_memory_;
  std::unique_ptr<KernelRing> ring_;
  std::unique_ptr<LockWaits> lock_waits_;  // with remote_locks
  std::atomic<uint32_t> max_payload_{kMaxPayload};
  std::atomic<bool> stopping_{false};
  // poll_us, unless INIT set up the io_uring path (its queue threads poll then).
  std::atomic<bool> readers_poll_{false};
  std::atomic<uint64_t> spun_reads_{0};
  std::atomic<uint64_t> reader_reaped_{0};
  int ended_fd_ = -1;

  std::mutex init_mu_;
  std::condition_variable init_cv_;
  bool init_done_ = false;
  std::string init_error_;

  std::mutex live_mu_;
  std::condition_variable live_cv_;
  unsigned live_readers_ = 0;
  InFlight in_flight_;  // requests handed to the session, not yet finished
};

}  // namespace virtiofs::mount
