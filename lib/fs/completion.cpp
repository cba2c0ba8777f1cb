#include "fs/completion.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <utility>

#include "fs/call_ending.hpp"
#include "fs/caller_batch.hpp"
#include "log/log.hpp"

namespace virtiofs::fs {

thread_local const Completion* Completion::current_owner_ = nullptr;
thread_local Completion::Completer* Completion::current_ = nullptr;

using detail::BatchScope;
using detail::held_polling;
using detail::PollingRole;

namespace {

// A thread's own eventfd, for SyncCall::set_waker: made once per thread, closed with it.
struct ThreadWaker {
  int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  ~ThreadWaker() {
    if (fd >= 0) close(fd);
  }
};
thread_local ThreadWaker waker;

}  // namespace

bool Completion::read_counter(int fd) {
  uint64_t count = 0;
  return read(fd, &count, sizeof(count)) == sizeof(count) && count > 0;
}

Completion::Completion(virtio::Transport& transport, std::vector<RequestQueue*> queues,
                       const SessionOptions& options, SessionCounters& counters, FailFn fail,
                       std::function<void()> progress)
    : transport_(transport), queues_(std::move(queues)),
      adaptive_(options.poll_us == kAdaptivePolling),
      poll_us_(adaptive_ ? 0 : options.poll_us), clock_(options.spin_clock_ns),
      app_reaps_(options.app_reaps_completions), counters_(counters), fail_(std::move(fail)),
      progress_(std::move(progress)) {
  if (adaptive_) {
    const uint64_t cap_ns = std::min<uint64_t>(uint64_t{options.spin_cap_us} * 1000, UINT32_MAX);
    for (size_t i = 0; i < queues_.size(); ++i)
      learners_.push_back(std::make_unique<SpinLearner>(static_cast<uint32_t>(cap_ns)));
  }
  // Queues that share an interrupt vector share a call fd: one watch, on one thread, serves
  // them all. Every other fd gets its own thread, so each request queue is owned by one thread;
  // hiprio (light traffic) rides on the first request queue's thread.
  source_of_.resize(queues_.size());
  for (RequestQueue* q : queues_) {
    const int fd = transport_.call_fd(q->index());
    auto it = std::find_if(sources_.begin(), sources_.end(), [fd](auto& s) { return s->fd == fd; });
    if (it == sources_.end()) {
      sources_.push_back(std::make_unique<Source>());
      sources_.back()->fd = fd;
      it = sources_.end() - 1;
    }
    (*it)->queues.push_back(q);
    source_of_[q->index()] = it->get();
  }
  for (auto& s : sources_) s->alone = s->queues.size() == 1;
  const bool hiprio_alone = sources_.size() > 1 && sources_.front()->alone;
  // When the application reaps, only hiprio's source (the first) has a thread.
  if (app_reaps_) {
    for (size_t i = 1; i < sources_.size(); ++i) sources_[i]->threaded = false;
    set_up_app_sources();
  }
  completers_.resize(app_reaps_ ? 1 : sources_.size() - (hiprio_alone ? 1 : 0));
  size_t all_slots = 0;
  for (RequestQueue* q : queues_) all_slots += q->slot_count();
  for (auto& c : completers_) {
    c.reactor = std::make_unique<loop::Reactor>(64);
    c.done.reserve(all_slots);
  }
  for (size_t i = 0; i < sources_.size(); ++i) {
    if (!sources_[i]->threaded) continue;
    Completer& owner = completers_[hiprio_alone ? (i == 0 ? 0 : i - 1) : i];
    Source* source = sources_[i].get();
    owner.sources.push_back(source);
    owner.reactor->watch(source->fd, POLLIN, [this, source, &owner](int) {
      // The poll does not clear the eventfd: read it, or the next poll fires at once; unless a
      // caller sleeps on it (the leader), which must see it set. Every reader reaps after it
      // reads: a poll whose counter another thread read may wake no one (the kernel re-checks
      // the fd before it reports). A one-shot poll (no multishot in this kernel) re-fires on a
      // set counter, so then it is always read; the leader's waker still tells it of its call.
      const bool take_counter =
          !source->leader.load(std::memory_order_acquire) || !owner.reactor->multishot();
      on_interrupt(*source, take_counter, owner.done, /*may_poll=*/true);
    });
  }
}

Completion::~Completion() { stop(); }

void Completion::watch(int fd, short events, std::function<void()> handler, bool once) {
  Completer& first = completers_.front();
  first.watches.push_back(Watch{fd, events, handler, once});
  first.reactor->watch(fd, static_cast<unsigned>(events), [handler](int) { handler(); }, once);
}

void Completion::start() {
  started_ = true;
  for (auto& c : completers_) {
    c.thread = std::thread([this, &c] {
      current_owner_ = this;
      current_ = &c;
      try {
        c.reactor->run();
      } catch (const std::exception& e) {
        log::error("completion thread: %s; the session fails", e.what());
        fail_(std::make_error_code(std::errc::io_error));
      }
    });
  }
}

bool Completion::on_own_thread() const { return current_owner_ == this; }

void Completion::stop() {
  if (!started_ || stopped_) return;
  stopped_ = true;
  for (auto& c : completers_) c.reactor->stop();
  // A thread that failed to start is not joinable (start() threw part way).
  for (auto& c : completers_)
    if (c.thread.joinable()) c.thread.join();
  close_ready_lists();
}

void Completion::on_interrupt(Source& source, bool take_counter, std::vector<Call*>& done,
                              bool may_poll) {
  if (take_counter) read_counter(source.fd);
  SessionCounters::add(counters_.interrupts);
  transport_.rearm_interrupt(source.queues.front()->index());
  for (RequestQueue* q : source.queues) drain(*q, done, may_poll);
}

void Completion::complete(std::vector<Call*>& done) {
  if (done.empty()) return;
  hand_over(done);
  end_calls(done);
  progress_();
}

bool Completion::reap_and_complete(RequestQueue& q, std::vector<Call*>& done, bool polled) {
  // Callbacks run only once the ring is empty as interrupts come back on: elements the device
  // published while interrupts were off signal no one, so a callback that blocks before they
  // are reaped would leave them to no one; anything published later is signalled (or polled).
  // A thread that holds a polling role ends only wake-ups instead (end_wake_ups).
  const bool ok = reap_all(q, done, polled);
  complete(done);
  return ok;
}

bool Completion::reap_all(RequestQueue& q, std::vector<Call*>& done, bool polled) {
  // Reap until the ring is empty as interrupts come back on (a poller's count keeps them off:
  // then until it is empty).
  RequestQueue::Reaped r;
  do {
    r = q.reap(done);
    if (polled && r.n) SessionCounters::add(counters_.polled, r.n);
  } while (r.more && !r.broken);
  // A broken batch fails the session before its callbacks run: the call that carried the bad
  // reply must find it failed, and nothing its callback submits may reach the device. The
  // batch's calls are already out of their slots, so failing does not end them twice.
  if (r.broken) fail_(std::make_error_code(std::errc::io_error));
  return !r.broken;
}

void Completion::drain(RequestQueue& q, std::vector<Call*>& done, bool may_poll) {
  if (may_poll && poll_us_ > 0) {
    // A reply due soon costs no interrupt: this thread reaps and then polls a while with the
    // device's interrupts off (the poller role keeps them off), as a polling caller does.
    // Callbacks that may block wait for the role to be left (end_wake_ups).
    PollingRole role(q);
    bool polled = false;
    do {
      const bool ok = reap_all(q, done, polled);
      end_wake_ups(done);
      if (!ok || q.failure()) break;
      polled = poll_used(q);
    } while (polled);
    // Interrupts back on; what came meanwhile is reaped below.
    if (!role.leave() || q.failure()) {
      complete(done);
      return;
    }
  }
  reap_and_complete(q, done, false);
}

void Completion::before_submit(RequestQueue& q, SyncCall& call) {
  // Not for a wait nested in a callback or on a completion thread: those do not spin.
  if (on_own_thread() || held_polling) return;
  if (adaptive_) {
    call.budget_ns = learners_[q.index()]->budget();
    call.budgeted = true;
  }
  if (poll_us_ == 0 && call.budget_ns == 0) return;
  q.enter_polling();
  call.polling_queue = q.index();
}

void Completion::wait(SyncCall& call) {
  const uint32_t taken = std::exchange(call.polling_queue, 0);
  bool kept = false;  // the role taken before the kick went to this wait's spin
  if (call.queue_index < queues_.size() && !call.done.load(std::memory_order_acquire)) {
    RequestQueue& q = *queues_[call.queue_index];
    Source& source = *source_of_[call.queue_index];
    // A callback that waits from inside a batch being completed gets a batch of its own.
    BatchScope batch;
    std::vector<Call*>& done = batch.calls();
    // A callback run while its thread polls a queue (interrupts off) hands the role back for
    // the wait: the queue must wake a sleeper, and what came meanwhile is reaped here. It costs
    // nothing unless a callback really blocks. Only a role on this session's queue is lent: a
    // callback waiting on another session leaves it (that session's completion threads reap).
    RequestQueue* lent = nullptr;
    if (held_polling && std::find(queues_.begin(), queues_.end(), held_polling) != queues_.end())
      lent = std::exchange(held_polling, nullptr);
    if (lent && lent->leave_polling()) drain(*lent, done, /*may_poll=*/false);
    if (current_owner_ == this && current_) {
      wait_on_completer(*current_, source, call, done);
    } else {
      // Polling, the caller reaps its own reply while it comes soon; past poll_us it sleeps on
      // its call and the completion thread (awake and polling by then) takes the reply: a
      // leader too would only wake beside it. Without polling, the leader takes it.
      // Where no thread reaps (the application does), the caller sleeps on the source itself
      // after polling, so that its call ends whether or not the application processes.
      // Adaptive: spins for the learned time, then sleeps on the interrupt as without polling.
      kept = taken != 0 && taken == call.queue_index;
      if (poll_us_) reap_own(q, call, done, now_ns() + uint64_t{poll_us_} * 1000, 63, kept);
      if (adaptive_) {
        wait_adaptive(q, source, call, done, kept);
      } else if (!source.threaded) {
        wait_reading(source, call, done);
      } else if (!poll_us_ && source.alone) {
        wait_as_leader(source, call, done);
      }
    }
    if (lent) {
      // Its call done (or past polling), the nested wait gives the role back to the frame that
      // lent it before that frame goes on reaping.
      call.wait();
      lent->enter_polling();
      held_polling = lent;
    }
  }
  call.budgeted = false;
  if (taken && !kept) {
    // Ended at once, or never reached that queue: the role taken for the spin is given back.
    BatchScope batch;
    if (queues_[taken]->leave_polling()) drain(*queues_[taken], batch.calls(), false);
    complete(batch.calls());
  }
  // Always through the call's mutex: the completer may still hold it (SyncCall).
  call.wait();
}

void Completion::wait_as_leader(Source& source, SyncCall& call, std::vector<Call*>& done) {
  bool free = false;
  if (!source.leader.compare_exchange_strong(free, true, std::memory_order_acq_rel)) return;
  if (waker.fd >= 0 && call.set_waker(waker.fd)) {
    // Interrupts are on whenever no one is reaping (reap's last step), so the device signals
    // source.fd for this call's reply; the completion thread may take it first, and then says
    // so on the waker.
    while (!call.done.load(std::memory_order_acquire)) {
      pollfd fds[2] = {{source.fd, POLLIN, 0}, {waker.fd, POLLIN, 0}};
      if (poll(fds, 2, -1) < 0 && errno != EINTR) break;  // the condition variable still works
      if (fds[1].revents & POLLIN) read_counter(waker.fd);
      if (fds[0].revents & POLLIN) {
        on_interrupt(source, true, done, /*may_poll=*/false);
        if (call.done.load(std::memory_order_acquire))
          SessionCounters::add(counters_.callers_woken);
      }
    }
    call.clear_waker();
  }
  source.leader.store(false, std::memory_order_release);
}

void Completion::wait_reading(Source& source, SyncCall& call, std::vector<Call*>& done) {
  // Beside the application's loop and other callers: whoever reads the counter reaps after it
  // reads, and hands the application's calls over (see completion.hpp), so no signal is lost
  // whoever takes it; another reader's completion of this call writes the waker.
  const bool woken = waker.fd >= 0;
  if (woken && !call.set_waker(waker.fd)) return;
  pollfd fds[2] = {{source.fd, POLLIN, 0}, {waker.fd, POLLIN, 0}};
  for (;;) {
    for (RequestQueue* q : source.queues) drain(*q, done, /*may_poll=*/false);
    if (call.done.load(std::memory_order_acquire)) break;
    // Without a waker, another reader's completion is seen at the next turn.
    if (poll(fds, woken ? 2 : 1, woken ? -1 : 1) < 0 && errno != EINTR) continue;
    if ((fds[0].revents & POLLIN) && read_counter(source.fd)) {
      SessionCounters::add(counters_.interrupts);
      transport_.rearm_interrupt(source.queues.front()->index());
    }
    if (woken && (fds[1].revents & POLLIN)) read_counter(waker.fd);
  }
  if (woken) call.clear_waker();
}

void Completion::wait_on_completer(Completer& self, Source& source, SyncCall& call,
                                   std::vector<Call*>& done) {
  // This thread's reactor does not run while it waits here, so it watches what the reactor
  // watches itself (its sources, the session's timer and liveness), and the call's source.
  std::vector<Source*> sources = self.sources;
  if (std::find(sources.begin(), sources.end(), &source) == sources.end())
    sources.push_back(&source);
  std::vector<pollfd> fds;
  for (Source* s : sources) fds.push_back({s->fd, POLLIN, 0});
  for (const Watch& w : self.watches) fds.push_back({w.fd, w.events, 0});
  fds.push_back({waker.fd, POLLIN, 0});
  // Without a waker (no eventfd to be had) a completion by another thread is seen at the next
  // turn: poll with a short timeout instead of for ever.
  const bool woken = waker.fd >= 0;
  if (woken && !call.set_waker(waker.fd)) return;
  for (;;) {
    // Reap first, also after reading a counter below even when the call has ended meanwhile:
    // a signal whose counter was read here wakes no one else (their poll finds it zero). And
    // interrupts are then on and re-checked, so nothing is missed by the sleep.
    for (Source* s : sources)
      for (RequestQueue* q : s->queues) drain(*q, done, /*may_poll=*/false);
    if (call.done.load(std::memory_order_acquire)) break;
    if (poll(fds.data(), fds.size() - (woken ? 0 : 1), woken ? -1 : 1) < 0 && errno != EINTR)
      continue;
    size_t i = 0;
    for (Source* s : sources) {
      if (fds[i++].revents & POLLIN) {
        read_counter(s->fd);
        transport_.rearm_interrupt(s->queues.front()->index());
      }
    }
    for (size_t w = 0; w < self.watches.size(); ++w, ++i) {
      if (!fds[i].revents) continue;
      self.watches[w].handler();
      // A once-watch (liveness: a hang-up stays signalled) has said all it will say.
      if (self.watches[w].once) fds[i].fd = -1;
    }
    if (woken && (fds[i].revents & POLLIN)) read_counter(waker.fd);
  }
  if (woken) call.clear_waker();
}

}  // namespace virtiofs::fs
