// Completion: which thread reaps which queue, and how a blocking caller waits.
//
// Each distinct call eventfd (an interrupt source: one queue's, or several sharing an MSI-X
// vector) is watched by one completion thread with its own io_uring reactor; hiprio and the
// session's other watches (FORGET timer, liveness) ride on the first thread. A blocking caller
// may reap for itself: by polling its queue (poll_us), by sleeping on the queue's call eventfd
// itself (one "leader" per source, where the fd is the queue's alone), or, on a completion
// thread (a callback that blocks), by watching that thread's fds itself, since its reactor does
// not run meanwhile. A callback that makes a blocking call first hands back any polling role its
// thread holds (interrupts back on, what came meanwhile reaped), so a callback may make
// blocking calls on any queue; callbacks never nest (call_ending.hpp).
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <system_error>
#include <thread>
#include <vector>

#include "fs/counters.hpp"
#include "fs/request_queue.hpp"
#include "loop/reactor.hpp"
#include "virtio/transport.hpp"

namespace virtiofs::fs {

class Completion {
 public:
  using FailFn = std::function<void(std::error_code)>;
  // fail: the device broke the protocol (EIO for everything). progress: calls were completed.
  Completion(virtio::Transport& transport, std::vector<RequestQueue*> queues, unsigned poll_us,
             SessionCounters& counters, FailFn fail, std::function<void()> progress);
  ~Completion();
  Completion(const Completion&) = delete;
  Completion& operator=(const Completion&) = delete;

  // Watches fd on the first completion thread (before start()): a timer, a liveness fd.
  void watch(int fd, short events, std::function<void()> handler, bool once);
  void start();
  // Stops and joins the threads (bounded: each finishes its current batch). Idempotent.
  void stop();
  // Waits until `call` (submitted to a queue of this session) is done.
  void wait(SyncCall& call);
  // This thread is one of this completion's threads (a callback runs on it).
  bool on_own_thread() const;

 private:
  struct Source {
    int fd = -1;
    std::vector<RequestQueue*> queues;
    bool alone = false;               // the fd is one queue's (not a shared vector or INTx)
    std::atomic<bool> leader{false};  // a caller sleeps on fd and reads its counter
  };
  struct Watch {
    int fd;
    short events;
    std::function<void()> handler;
    bool once;
  };
  struct Completer {
    std::unique_ptr<loop::Reactor> reactor;
    std::thread thread;
    std::vector<Call*> done;  // its batch, reserved up front
    std::vector<Source*> sources;
    std::vector<Watch> watches;
  };

  void on_interrupt(Source& source, bool read_counter, std::vector<Call*>& done, bool may_poll);
  // Reaps q until nothing is pending and its interrupts are on (with may_poll, after polling
  // poll_us for more: the completion thread's way, not a waiting caller's).
  void drain(RequestQueue& q, std::vector<Call*>& done, bool may_poll);
  // Reaps q until it is empty, then completes what it took (false: the device broke the
  // protocol, and the session failed before the callbacks ran).
  bool reap_and_complete(RequestQueue& q, std::vector<Call*>& done, bool polled);
  class PollingRole;
  void complete(std::vector<Call*>& done);
  bool poll_used(RequestQueue& q);
  void reap_own(RequestQueue& q, SyncCall& call, std::vector<Call*>& done);
  void wait_as_leader(Source& source, SyncCall& call, std::vector<Call*>& done);
  void wait_on_completer(Completer& self, Source& source, SyncCall& call, std::vector<Call*>& done);

  // The completer whose thread this is, and of which Completion (a callback may wait on
  // another session's call).
  static thread_local const Completion* current_owner_;
  static thread_local Completer* current_;

  virtio::Transport& transport_;
  std::vector<RequestQueue*> queues_;
  unsigned poll_us_;
  SessionCounters& counters_;
  FailFn fail_;
  std::function<void()> progress_;
  std::vector<std::unique_ptr<Source>> sources_;
  std::vector<Source*> source_of_;  // by queue index
  std::vector<Completer> completers_;
  bool started_ = false;
  bool stopped_ = false;
};

}  // namespace virtiofs::fs
