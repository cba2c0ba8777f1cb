// The owner polls (Session::Poller: the FUSE bridge's polled readers and io_uring queue
// threads): it holds a queue's polling role across its own loop, interrupts off, and reaps and
// completes what came on its own thread.
#include "fs/caller_batch.hpp"
#include "fs/completion.hpp"

namespace virtiofs::fs {

using detail::BatchScope;
using detail::held_polling;

void Completion::enter_owner_polling(unsigned queue) {
  held_polling = queues_[queue];  // a callback that waits lends it back (wait())
  queues_[queue]->enter_polling();
}

size_t Completion::poll_owner(unsigned queue) {
  RequestQueue& q = *queues_[queue];
  if (!q.has_used()) return 0;
  // The thread's batch, marked in use: a callback that waits gets one of its own (wait()).
  BatchScope batch;
  std::vector<Call*>& done = batch.calls();
  reap_all(q, done, /*polled=*/true);
  const size_t n = done.size();
  complete(done);
  return n;
}

void Completion::leave_owner_polling(unsigned queue) {
  held_polling = nullptr;
  RequestQueue& q = *queues_[queue];
  if (!q.leave_polling()) return;
  BatchScope batch;
  drain(q, batch.calls(), /*may_poll=*/false);
}

}  // namespace virtiofs::fs
