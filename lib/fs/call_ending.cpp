#include "fs/call_ending.hpp"

namespace virtiofs::fs {

// noexcept: a callback that throws ends the process (std::terminate names the exception). The
// calls of its batch are out of their slots already, so nothing else could end them, and the
// thread's callback depth would stay raised for good.
namespace {
thread_local unsigned callbacks_running = 0;
thread_local std::vector<Call*> deferred;  // ended inside a callback, run after it returns

void run(Call& call) noexcept {
  if (callbacks_running > 0 && !call.never_blocks) {
    deferred.push_back(&call);
    return;
  }
  ++callbacks_running;
  call.on_done(call);
  --callbacks_running;
}

// The outermost callback on this thread returned: what its waits ended runs now (and what those
// callbacks' waits end, in turn).
void run_deferred() noexcept {
  if (callbacks_running > 0) return;
  ++callbacks_running;
  for (size_t i = 0; i < deferred.size(); ++i) {
    Call* c = deferred[i];
    c->on_done(*c);
  }
  deferred.clear();
  --callbacks_running;
}
}  // namespace

void end_calls(std::vector<Call*>& calls) noexcept {
  for (Call* c : calls) run(*c);
  calls.clear();
  run_deferred();
}

void end_call(Call& call) noexcept {
  run(call);
  run_deferred();
}

}  // namespace virtiofs::fs
