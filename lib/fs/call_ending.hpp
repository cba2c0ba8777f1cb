// Ending calls: running on_done for calls that are over. Every part of the session ends calls
// through here, so that callbacks never nest: a callback that blocks in Session::wait (its
// thread then reaps, ending other calls) runs only the completions that merely wake a waiting
// thread (Call::never_blocks); the others wait until the outermost callback on this thread has
// returned, and then run in order. Stack depth stays bounded and a callback never runs inside
// another that may hold a lock it needs.
#pragma once

#include <vector>

#include "fs/call.hpp"

namespace virtiofs::fs {

// Ends every call of `calls` and clears it. A callback must not throw (the process ends), and
// a callback's blocking call must not depend on another callback having run: that one may be
// deferred until it returns.
void end_calls(std::vector<Call*>& calls) noexcept;
void end_call(Call& call) noexcept;

}  // namespace virtiofs::fs
