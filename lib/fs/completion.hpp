// Completion: which thread reaps which queue, and how a blocking caller waits.
//
// Each distinct call eventfd (an interrupt source: one queue's, or several sharing an MSI-X
// vector) is watched by one completion thread with its own io_uring reactor; hiprio and the
// session's other watches (FORGET timer, liveness) ride on the first thread. A blocking caller
// may reap for itself: by polling its queue (poll_us: fixed, or adaptive, spin_learner.hpp), by sleeping on the queue's call eventfd
// itself (one "leader" per source, where the fd is the queue's alone), or, on a completion
// thread (a callback that blocks), by watching that thread's fds itself, since its reactor does
// not run meanwhile. A callback that makes a blocking call first hands back any polling role its
// thread holds (interrupts back on, what came meanwhile reaped), so a callback may make
// blocking calls on any queue; callbacks never nest (call_ending.hpp).
//
// The application reaps (SessionOptions::app_reaps_completions): no thread watches a source of
// request queues only; hiprio's source keeps its thread (with the timer and liveness), and so
// does a source hiprio shares with request queues (one vector for all, INTx). Per source:
// - the application polls app_fd(): an epoll set over the call eventfd and the source's
//   ReadyList eventfd (only the latter where a thread watches the source), and calls process(),
//   which reads the counter, reaps every queue of the source until its ring is empty with
//   interrupts back on (reap's disable, collect, enable, re-check), takes the ReadyList, and
//   runs all those callbacks on its thread;
// - a blocking caller does not need the application: after poll_us (if any) it sleeps on the
//   call eventfd and its waker and reaps what the device signals (wait_reading); any number of
//   callers and the application may read one counter, since
// - the rule that makes that lossless: whoever reads a call eventfd's counter then reaps all the
//   queues of its source until they are empty with interrupts on; what it reaped it ends at
//   once only when that merely wakes a thread (Call::never_blocks: SyncCalls), and hands every
//   other call of the application's queues over to the source's ReadyList, whose eventfd is in
//   the application's epoll set. The same hand-over serves failures (Session::fail_all), the
//   library's thread on a shared source, and shutdown's own reaping. So an asynchronous call's
//   callback runs inside process() on the application's thread, except: a call that fails as
//   it is submitted, or is interrupted while parked, or is given up (Session::abandon), ends at
//   once on that thread (as without the mode); and what the application has not taken by shutdown ends on the thread that
//   shuts down (stop()).
#pragma once

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <system_error>
#include <thread>
#include <vector>

#include "fs/counters.hpp"
#include "fs/ready_list.hpp"
#include "fs/request_queue.hpp"
#include "fs/session_options.hpp"
#include "fs/spin_learner.hpp"
#include "loop/reactor.hpp"
#include "virtio/transport.hpp"

namespace virtiofs::fs {

class Completion {
 public:
  using FailFn = std::function<void(std::error_code)>;
  // fail: the device broke the protocol (EIO for everything). progress: calls were completed.
  // app_reaps: SessionOptions::app_reaps_completions (see above).
  // options: poll_us (adaptive, fixed or none), spin_cap_us, spin_clock_ns and
  // app_reaps_completions.
  Completion(virtio::Transport& transport, std::vector<RequestQueue*> queues,
             const SessionOptions& options, SessionCounters& counters, FailFn fail,
             std::function<void()> progress);
  ~Completion();
  Completion(const Completion&) = delete;
  Completion& operator=(const Completion&) = delete;

  // Watches fd on the first completion thread (before start()): a timer, a liveness fd.
  void watch(int fd, short events, std::function<void()> handler, bool once);
  void start();
  // Stops and joins the threads (bounded: each finishes its current batch), then ends on this
  // thread what was handed over to the application and not taken; later hand-overs end where
  // they are made. Idempotent.
  void stop();
  // A caller about to submit `call` to q and then wait() for it: when that wait will spin, takes
  // q's polling role now (interrupts off before the kick), and wait() keeps it.
  void before_submit(RequestQueue& q, SyncCall& call);
  // Waits until `call` (submitted to a queue of this session) is done.
  void wait(SyncCall& call);
  // The same with a deadline (false when it passed first); reaps for itself where no thread
  // does (the application reaps), so INIT and shutdown need no help from the application.
  bool wait_until(SyncCall& call, std::chrono::steady_clock::time_point deadline);
  // Reaps, where no thread does, until done() or the deadline (shutdown's drain; false at the
  // deadline). The application reaps only.
  bool reap_until(std::chrono::steady_clock::time_point deadline, const std::function<bool()>& done);

  // ---- The application reaps (completion_app.cpp; queue: a request queue's index, 1..) ----
  // The fd to poll for POLLIN; queues that share an interrupt source share it.
  int app_fd(unsigned queue) const;
  // Completes what is there for the queue's source (all its queues) on this thread; never
  // blocks. Returns how many calls ended.
  size_t process(unsigned queue);
  // Moves the application's asynchronous calls out of `calls` onto their source's ReadyList;
  // the caller ends what is left. Does nothing unless the application reaps.
  void hand_over(std::vector<Call*>& calls);
  // This thread is one of this completion's threads (a callback runs on it).
  bool on_own_thread() const;

  // ---- The owner polls a queue from its own loop (Session::Poller; queue: 1..) ----
  // Takes the queue's polling role, as a polling caller in wait() does: interrupts stay off.
  void enter_owner_polling(unsigned queue);
  // Reaps what the device put in the used ring and runs those callbacks on this thread; returns
  // how many calls ended (0 at once when the ring holds nothing new).
  size_t poll_owner(unsigned queue);
  // Gives the role back: interrupts on, and what came meanwhile reaped and completed here.
  void leave_owner_polling(unsigned queue);

 private:
  struct Source {
    int fd = -1;
    std::vector<RequestQueue*> queues;
    bool alone = false;               // the fd is one queue's (not a shared vector or INTx)
    bool threaded = true;             // a completion thread watches fd
    std::atomic<bool> leader{false};  // a caller sleeps on fd and reads its counter
    // The application reaps: its calls that other threads reaped, and (no thread watches fd)
    // the epoll set over fd and ready's fd that the application polls (owned).
    std::unique_ptr<ReadyList> ready;
    int epoll_fd = -1;
    ~Source() {
      if (epoll_fd >= 0) ::close(epoll_fd);
    }
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

  // Reads an eventfd's counter (non-blocking); true when it was set.
  static bool read_counter(int fd);
  void on_interrupt(Source& source, bool take_counter, std::vector<Call*>& done, bool may_poll);
  // Reaps q until nothing is pending and its interrupts are on (with may_poll, after polling
  // poll_us for more: the completion thread's way, not a waiting caller's).
  void drain(RequestQueue& q, std::vector<Call*>& done, bool may_poll);
  // Reaps q until it is empty, then completes what it took (false: the device broke the
  // protocol, and the session failed before the callbacks ran).
  bool reap_and_complete(RequestQueue& q, std::vector<Call*>& done, bool polled);
  // The reaping part of that: to `done`, failing the session on a broken batch.
  bool reap_all(RequestQueue& q, std::vector<Call*>& done, bool polled);
  void complete(std::vector<Call*>& done);
  // Polling role held: ends the calls of `done` that merely wake a thread (Call::never_blocks),
  // hands the application's over, and keeps the rest, in order, for after the role is left.
  void end_wake_ups(std::vector<Call*>& done);
  // ---- Spinning (completion_spin.cpp) ----
  // A completion thread's fixed poll_us spin for more used elements; true when some came.
  bool poll_used(RequestQueue& q);
  // A waiting caller polls q for its call, interrupts off, until it is done or the clock
  // (now_ns) passes deadline_ns, read every check_mask + 1 turns; true when the call was done
  // before the deadline passed.
  // taken: the role was taken before the kick (before_submit). kHit only when this thread
  // reaped the call's reply; kOther: another thread did, or the session failed.
  enum class Spin { kHit, kMiss, kOther };
  Spin reap_own(RequestQueue& q, SyncCall& call, std::vector<Call*>& done, uint64_t deadline_ns,
                unsigned check_mask, bool taken);
  // Adaptive polling: spins for the queue's learned budget, then sleeps on the interrupt itself
  // (leader, or reading where no thread reaps) and records the round trip.
  void wait_adaptive(RequestQueue& q, Source& source, SyncCall& call, std::vector<Call*>& done,
                     bool taken);
  uint64_t now_ns() const;
  void wait_as_leader(Source& source, SyncCall& call, std::vector<Call*>& done);
  void wait_on_completer(Completer& self, Source& source, SyncCall& call, std::vector<Call*>& done);
  // No thread watches the source (the application reaps): sleeps on its fd and the thread's
  // waker, reaping after every read of the counter, until the call is done.
  void wait_reading(Source& source, SyncCall& call, std::vector<Call*>& done);
  // Sets up ready lists and epoll sets (the application reaps).
  void set_up_app_sources();
  // stop(): what the application never took ends here.
  void close_ready_lists();

  // The completer whose thread this is, and of which Completion (a callback may wait on
  // another session's call).
  static thread_local const Completion* current_owner_;
  static thread_local Completer* current_;

  virtio::Transport& transport_;
  std::vector<RequestQueue*> queues_;
  const bool adaptive_;  // poll_us = kAdaptivePolling
  const unsigned poll_us_;  // a fixed spin (0: none, and in adaptive mode)
  uint64_t (*const clock_)();  // SessionOptions::spin_clock_ns
  // Adaptive: one learner per queue (by index), shared by its waiters (spin_learner.hpp).
  std::vector<std::unique_ptr<SpinLearner>> learners_;
  bool app_reaps_;
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
