// Blocking lock requests with -o remote_locks. A SETLKW the device held until the lock is free
// would occupy a queue slot (and, in virtiofsd, a thread) for as long as the lock is taken:
// enough waiters and the unlock that would free them finds no room, or no thread, and waits
// behind them for ever. virtiofsd 7.2 refuses SETLKW outright (EOPNOTSUPP). So the device is
// only ever asked without blocking (SETLK), and while the lock is held elsewhere the bridge asks
// again after a pause that doubles from 1 ms to kMaxPause: no waiter is at the device between
// attempts, and an unlock always has a slot. A signal (FUSE_INTERRUPT) ends the wait with EINTR.
#pragma once

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

#include "fs/call.hpp"

namespace virtiofs::mount {

class LockWaits {
 public:
  static constexpr std::chrono::milliseconds kMaxPause{32};
  // How a wait ends when the bridge stops. Not EINTR: the kernel turns that into ERESTARTSYS,
  // which with no signal pending reaches fcntl/flock as errno 512.
  static constexpr int kStopError = ENOLCK;
  // INTERRUPTs for no known wait, remembered for a SETLKW that reaches begin() later.
  static constexpr size_t kMaxEarly = 64;

  // `resubmit` sends the call to the device again; `answer` ends it with an errno (EINTR).
  LockWaits(std::function<void(fs::Call&)> resubmit, std::function<void(fs::Call&, int)> answer);
  ~LockWaits();
  LockWaits(const LockWaits&) = delete;
  LockWaits& operator=(const LockWaits&) = delete;

  // A blocking lock request goes to the device (as SETLK) for the first time.
  void begin(fs::Call& call, uint64_t unique);
  // The device said the lock is held: asks again later (true), or answers it at once: EINTR
  // if interrupted, kStopError if stopping (false; the caller must not touch it after either).
  bool again(fs::Call& call, uint64_t unique);
  // The device's answer was final: the request is no longer waited for.
  void end(uint64_t unique);
  // The kernel interrupted `unique`. True if it is a lock wait (EINTR now if parked, else when
  // the device's answer says busy); false: not (yet) ours. Two readers share the kernel's
  // queue, so the INTERRUPT may come before its SETLKW reached begin(): begin() then finds it.
  bool interrupt(uint64_t unique);
  // Ends every parked wait with kStopError, and any later one as it comes back; stops the thread.
  void stop();

 private:
  struct Wait {
    fs::Call* call = nullptr;
    bool parked = false;
    bool interrupted = false;
    std::chrono::milliseconds pause{1};
    std::chrono::steady_clock::time_point at;
  };
  void run();

  std::function<void(fs::Call&)> resubmit_;
  std::function<void(fs::Call&, int)> answer_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<uint64_t, Wait> waits_;  // by unique: every lock wait, parked or at the device
  std::deque<uint64_t> early_;      // INTERRUPTs that found no wait, oldest first (kMaxEarly)
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace virtiofs::mount
