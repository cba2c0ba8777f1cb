// Completion when the application reaps its request queues (completion.hpp has the rule): the fd
// it polls, process(), the hand-over of calls other threads reaped, and the bounded reaping that
// INIT and shutdown do for themselves.
#include <poll.h>
#include <sys/epoll.h>

#include <algorithm>
#include <cerrno>
#include <string>

#include "fs/call_ending.hpp"
#include "fs/completion.hpp"

namespace virtiofs::fs {

namespace {

// process()'s batch, reserved once per thread; a process() from inside a callback that it runs
// gets a batch of its own.
struct AppBatch {
  std::vector<Call*> calls;
  bool in_use = false;
  AppBatch() { calls.reserve(2 * RequestQueue::kReapBatch); }
};
thread_local AppBatch app_batch;

void add_to_epoll(int epoll_fd, int fd) {
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = fd;
  if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0)
    throw std::system_error(errno, std::system_category(), "epoll_ctl for a completion fd");
}

// Ends a list of handed-over calls (through next_waiting), oldest first; returns how many.
size_t end_list(Call* c) {
  size_t n = 0;
  while (c) {
    Call* next = c->next_waiting;  // read first: on_done may reuse the call at once
    end_call(*c);
    c = next;
    ++n;
  }
  return n;
}

}  // namespace

void Completion::set_up_app_sources() {
  for (auto& s : sources_) {
    // hiprio's own source stays the library's; a source hiprio shares with request queues is
    // the application's as well (its thread hands their calls over).
    const bool has_request_queue =
        std::any_of(s->queues.begin(), s->queues.end(), [](RequestQueue* q) { return q->index() > 0; });
    if (!has_request_queue) continue;
    s->ready = std::make_unique<ReadyList>();
    if (s->threaded) continue;
    s->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (s->epoll_fd < 0)
      throw std::system_error(errno, std::system_category(), "epoll_create1 for a completion fd");
    add_to_epoll(s->epoll_fd, s->fd);
    add_to_epoll(s->epoll_fd, s->ready->fd());
  }
}

int Completion::app_fd(unsigned queue) const {
  const Source& s = *source_of_.at(queue);
  return s.epoll_fd >= 0 ? s.epoll_fd : s.ready->fd();
}

void Completion::hand_over(std::vector<Call*>& calls) {
  if (!app_reaps_) return;
  size_t kept = 0;
  for (Call* c : calls) {
    Source* s = c->queue_index > 0 && c->queue_index < source_of_.size() ? source_of_[c->queue_index]
                                                                          : nullptr;
    // A SyncCall only wakes its thread: that goes at once, wherever it was reaped.
    const bool application_s = s && s->ready && !c->never_blocks;
    if (!application_s || !s->ready->push(*c)) calls[kept++] = c;
  }
  calls.resize(kept);
}

size_t Completion::process(unsigned queue) {
  Source& s = *source_of_.at(queue);
  std::vector<Call*> nested;
  const bool outer = !app_batch.in_use;
  std::vector<Call*>& done = outer ? app_batch.calls : nested;
  app_batch.in_use = true;
  size_t n = 0;
  if (!s.threaded) {
    // Read, then reap: a signal that comes after the read is for something this reaping may
    // miss, and stays set for the next poll.
    if (read_counter(s.fd)) {
      SessionCounters::add(counters_.interrupts);
      transport_.rearm_interrupt(s.queues.front()->index());
    }
    for (RequestQueue* q : s.queues) reap_all(*q, done, /*polled=*/false);
    n = done.size();
    end_calls(done);  // all on this thread: the application's own and the SyncCalls' wake-ups
  }
  // Then what other threads reaped for the application (a failure while reaping above, too).
  n += end_list(s.ready->take_all());
  if (outer) app_batch.in_use = false;
  if (n) progress_();
  return n;
}

void Completion::close_ready_lists() {
  for (auto& s : sources_)
    if (s->ready) end_list(s->ready->close_and_take());
}

bool Completion::wait_until(SyncCall& call, std::chrono::steady_clock::time_point deadline) {
  if (call.queue_index < queues_.size() && !source_of_[call.queue_index]->threaded &&
      !reap_until(deadline, [&] { return call.done.load(std::memory_order_acquire); }))
    return false;
  return call.wait_until(deadline);
}

bool Completion::reap_until(std::chrono::steady_clock::time_point deadline,
                            const std::function<bool()>& done_yet) {
  // Init and shutdown only: allocating here is fine. The sources no thread watches are polled;
  // another reader (the application, a blocking caller) may take a signal meant for what this
  // waits for, so the poll wakes each millisecond to look again.
  std::vector<Source*> mine;
  std::vector<pollfd> fds;
  for (auto& s : sources_) {
    if (s->threaded) continue;
    mine.push_back(s.get());
    fds.push_back({s->fd, POLLIN, 0});
  }
  std::vector<Call*> done;
  for (;;) {
    for (size_t i = 0; i < mine.size(); ++i) {
      // Read, then reap, each turn: a count left behind would wake the application for nothing.
      if (read_counter(mine[i]->fd)) {
        SessionCounters::add(counters_.interrupts);
        transport_.rearm_interrupt(mine[i]->queues.front()->index());
      }
      for (RequestQueue* q : mine[i]->queues) drain(*q, done, /*may_poll=*/false);
    }
    if (done_yet()) return true;
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return false;
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - now).count();
    if (mine.empty()) {
      // Every source has a thread: it reaps, this only waits for it to have done so.
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min<long long>(left, 1)));
      continue;
    }
    poll(fds.data(), fds.size(), static_cast<int>(std::min<long long>(left, 1)));
  }
}

}  // namespace virtiofs::fs
