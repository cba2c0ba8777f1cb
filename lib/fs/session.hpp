// The virtio-fs session: INIT, submission, interrupts, failure and shutdown over its parts:
// device memory (device_memory.hpp), request queues (request_queue.hpp) and the hiprio queue
// (hiprio_queue.hpp), staging (request_stager.hpp) and completion (completion.hpp).
#pragma once

#include <linux/fuse.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "fs/call.hpp"
#include "fs/completion.hpp"
#include "fs/counters.hpp"
#include "fs/device_memory.hpp"
#include "fs/hiprio_queue.hpp"
#include "fs/request_queue.hpp"
#include "fs/request_stager.hpp"
#include "fs/session_options.hpp"
#include "virtio/transport.hpp"
#include "virtiofs/types.hpp"

namespace virtiofs::fs {

// Request queues to use when `requested` (0: all the device offers, at most kMaxAutoQueues):
// checked against the device's config, else against the queues the transport counts. Throws
// std::system_error(EINVAL) naming both numbers.
inline constexpr unsigned kMaxAutoQueues = 16;
unsigned request_queue_count(unsigned requested, virtio::Transport& transport,
                             const virtio::DeviceConfig& config);

class Session {
 public:
  // Negotiates features, builds the rings in one shared region, starts the queues and the
  // completion thread. Throws std::system_error with a readable message.
  Session(std::unique_ptr<virtio::Transport> transport, const SessionOptions& options);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // FUSE_INIT with the device, offering `flags` at protocol 7.`minor`; must come before any
  // other request. The FUSE bridge calls it when the kernel's INIT arrives, so that all three
  // agree. Throws on refusal; a device that does not answer within SessionOptions::device_timeout has failed
  // (ETIMEDOUT) and init throws saying so.
  void init(uint64_t flags, uint32_t max_readahead, uint32_t minor = FUSE_KERNEL_MINOR_VERSION);

  // Queues the call on a request queue. on_done runs on a completion thread or on a thread in
  // wait() that reaped the reply, or on this thread at once when the session has already
  // failed (where the application reaps: in process_completions, see completion.hpp). on_done may make any call but shutdown, blocking ones included: it runs with its
  // queue's interrupts on and no reaping role held (completion.hpp). A callback that blocks
  // delays the callbacks its thread reaps meanwhile until it returns, so its blocking call must
  // not depend on another callback; on_done must not throw (call_ending.hpp).
  void submit(Call& call);
  // submit() for a call this thread wait()s for next (nothing in between that reaps or
  // waits): where the wait will spin, the queue's polling role is taken before the kick, so a
  // prompt reply is polled by this thread, never signalled to a completion thread.
  void submit_for_wait(SyncCall& call);
  // The same on the high-priority queue (INTERRUPT).
  void submit_hiprio(Call& call);
  // Waits for a submitted SyncCall. With poll_us (N us, or adaptive polling's learned time),
  // this thread first polls the call's queue with the device's interrupts off and completes
  // what it finds itself: at queue depth 1 the reply is taken with no eventfd and no hand-off
  // between threads. Without (or adaptive, past its spin), it sleeps on the queue's interrupt
  // itself when no other caller does. Either way it may
  // complete other calls of its queue (their on_done runs on this thread).
  void wait(SyncCall& call);
  // Asks the device to abandon a submitted call (FUSE_INTERRUPT on hiprio). The call still ends
  // through on_done: with EINTR, or with its real result when the device answered first. A
  // call still waiting for ring space ends with EINTR at once, on this thread. The caller keeps
  // `call` alive until on_done has run, as for submit.
  void interrupt(Call& call);
  // Gives up on a submitted call without telling the device (for devices that mishandle
  // FUSE_INTERRUPT): when the call is parked, or held by the device with no payload in app
  // memory, it ends at once with EINTR on this thread and the device's reply is dropped when it
  // comes. Otherwise (done, being completed, or the device reads or writes app memory for it)
  // nothing changes and the call ends with its real result.
  void abandon(Call& call);
  // Gets the reply of every abandoned call the device held (header and fixed args; errors
  // too), on the reaping thread, so the owner can give back what it handed out and knows the
  // device is done with the request. Set before the first call.
  void set_dropped_reply_handler(std::function<void(const DroppedReply&)> handler) {
    dropped_handler_ = std::move(handler);
  }
  // Drops nlookup references to inode: gathered for up to a millisecond, sent in batches on
  // hiprio, never lost while the device lives.
  void forget(Inode inode, uint64_t nlookup);
  // The owner found a reply malformed past what the session checks (e.g. directory entries):
  // the device can no longer be trusted, so everything fails with EIO from now on. Pending
  // FORGETs go first (waited for within SessionOptions::device_timeout, except on a completion
  // thread), then the device is stopped, then the calls end.
  void device_misbehaved();
  // Sends pending FORGETs, then DESTROY, waits for in-flight requests, stops the device, ends
  // what is left with ENOTCONN and stops the completion threads: all within
  // SessionOptions::device_timeout, after which the device counts as failed. Idempotent; not
  // from a callback (EDEADLK: it would wait for its own thread).
  void shutdown();
  // The same within `deadline` instead (an owner that waited for its own work first, e.g.
  // Client::close for File::close's RELEASEs, keeps to one bound for both).
  void shutdown(std::chrono::steady_clock::time_point deadline);
  // True on one of the session's completion threads (inside a callback): where shutdown throws.
  bool on_completion_thread() const;

  // ---- The application reaps (SessionOptions::app_reaps_completions; else both throw EINVAL) ----
  // request_queue: 0 .. num_request_queues() - 1. The fd to poll for POLLIN (an epoll set: do not
  // read it): readable when the queue may have completions for process_completions. Queues that
  // share an interrupt source (fewer MSI-X vectors than queues) share the fd, and processing
  // any of them processes all. Valid until the session is destroyed.
  int completion_fd(unsigned request_queue) const;
  // Never blocks: reads the fd's counter, reaps the queue (and those sharing its fd) until the
  // ring is empty with interrupts back on, takes the calls other threads reaped for it, and runs
  // their on_done on this thread, no lock held (they may make blocking calls, as any callback).
  // Returns how many calls ended (SyncCalls it woke included). A malformed reply fails the session (EIO) as anywhere else;
  // calls ended by a failure come through here (or through shutdown). Any thread may call it.
  size_t process_completions(unsigned request_queue);

  // ---- The owner polls (the FUSE bridge's polled readers; not with app_reaps_completions) ----
  // While a Poller lives, this thread holds the polling role of the request queue its submits
  // go to, the role a poll_us caller holds in wait(): the device's interrupts for that queue
  // stay off (no completion thread is woken) and poll() reaps what came and runs those
  // callbacks here. Its end turns interrupts back on and reaps what arrived meanwhile. Drop it
  // before anything that may block waiting for a completion: while it lives, nothing else is
  // woken for this queue.
  class Poller {
   public:
    explicit Poller(Session& session);
    ~Poller();
    Poller(const Poller&) = delete;
    Poller& operator=(const Poller&) = delete;
    // Returns how many calls ended (0 at once when nothing came).
    size_t poll() { return session_.completion_->poll_owner(queue_); }

   private:
    Session& session_;
    unsigned queue_;
  };

  // Runs once, on whichever thread notices, when the device is lost or breaks (not on shutdown).
  void set_failure_handler(std::function<void(std::error_code)> handler);

  const Negotiated& negotiated() const { return negotiated_; }
  // Largest payload one request may carry: what the rings and buffers allow, then INIT.
  uint32_t max_transfer() const { return max_transfer_; }
  // The owner's part of device memory (SessionOptions::staging_bytes, page aligned).
  std::span<std::byte> staging() const { return memory_.staging; }
  // The application's part of device memory (SessionOptions::app_memory_bytes).
  std::span<std::byte> app_memory() const { return memory_.app; }
  // Keeps all of device memory mapped while held, also after the session is gone: the device
  // is stopped by then, so only the holder touches it (IoBuffers outliving their Client).
  std::shared_ptr<const void> memory_keepalive() const { return memory_.region; }
  SessionStats stats() const { return counters_.snapshot(); }
  unsigned num_request_queues() const { return static_cast<unsigned>(queues_.size() - 1); }
  // Why the session failed (empty while healthy).
  std::error_code failure() const;

 private:
  void start_device(uint64_t device_features);
  RequestQueue& pick_queue();
  // submit's checks: the queue to submit to, or nullptr when the call ended here.
  RequestQueue* admit(Call& call);
  // The queue index of an application-reaped request queue; throws EINVAL naming the fix.
  unsigned app_queue(unsigned request_queue) const;
  // Stops the device (once), then marks every queue failed with ec and completes all pending
  // calls with it: whoever abandons the device (NEEDS_RESET, loss, a bad reply, a timeout,
  // shutdown) comes through here, so no call ends while the device may still write its buffers.
  void fail_all(std::error_code ec);
  // Transport::stop once, whichever thread comes first; a second caller waits until it is done.
  void stop_device();
  void notify_drained();
  // Waits for a call until the deadline; past it the device counts as failed (ETIMEDOUT) and
  // the call ends with that. False on timeout.
  bool wait_until(SyncCall& call, std::chrono::steady_clock::time_point deadline);

  SessionOptions options_;
  // Declared before the memory and the queues: destroyed after them, and stopped (in
  // shutdown, or when the constructor fails) before any of them goes, so the device never
  // touches freed memory.
  std::unique_ptr<virtio::Transport> transport_;
  QueueLimits limits_{};
  SessionMemory memory_;
  std::unique_ptr<RequestStager> stager_;
  SessionCounters counters_;
  std::vector<std::unique_ptr<RequestQueue>> queues_;  // [0] = hiprio
  HiprioQueue* hiprio_ = nullptr;
  std::unique_ptr<Completion> completion_;
  Negotiated negotiated_{};
  bool initialized_ = false;
  uint32_t max_transfer_ = 0;
  std::function<void(const DroppedReply&)> dropped_handler_;  // set before the first call
  std::mutex failure_mu_;
  std::function<void(std::error_code)> failure_handler_;  // under failure_mu_
  bool failure_reported_ = false;                         // under failure_mu_
  std::atomic<bool> shut_down_{false};
  std::mutex shutdown_mu_;              // held through shutdown(): a second caller waits
  std::atomic<bool> quiescing_{false};  // shutdown() began: completions wake its waits
  std::mutex drain_mu_;
  std::condition_variable drained_;
  std::mutex stop_mu_;
  bool device_stopped_ = false;  // under stop_mu_
};

}  // namespace virtiofs::fs
