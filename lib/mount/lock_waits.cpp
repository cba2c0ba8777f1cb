#include "mount/lock_waits.hpp"

#include <algorithm>
#include <cerrno>
#include <vector>

namespace virtiofs::mount {

LockWaits::LockWaits(std::function<void(fs::Call&)> resubmit, std::function<void(fs::Call&, int)> answer)
    : resubmit_(std::move(resubmit)), answer_(std::move(answer)), thread_([this] { run(); }) {}

LockWaits::~LockWaits() { stop(); }

void LockWaits::begin(fs::Call& call, uint64_t unique) {
  std::lock_guard lock(mu_);
  Wait& w = waits_[unique] = Wait{&call};
  // Its INTERRUPT may have come first (another reader took it): the kernel sends it only once.
  if (auto it = std::find(early_.begin(), early_.end(), unique); it != early_.end()) {
    early_.erase(it);
    w.interrupted = true;
  }
}

bool LockWaits::again(fs::Call& call, uint64_t unique) {
  int error = kStopError;
  {
    std::lock_guard lock(mu_);
    auto it = waits_.find(unique);
    if (it != waits_.end() && it->second.interrupted) error = EINTR;
    if (it != waits_.end() && !it->second.interrupted && !stopping_) {
      Wait& w = it->second;
      w.parked = true;
      w.at = std::chrono::steady_clock::now() + w.pause;
      w.pause = std::min(w.pause * 2, kMaxPause);
      cv_.notify_all();
      return true;
    }
    waits_.erase(unique);
  }
  answer_(call, error);
  return false;
}

void LockWaits::end(uint64_t unique) {
  std::lock_guard lock(mu_);
  waits_.erase(unique);
}

bool LockWaits::interrupt(uint64_t unique) {
  fs::Call* parked = nullptr;
  {
    std::lock_guard lock(mu_);
    auto it = waits_.find(unique);
    if (it == waits_.end()) {
      // Not (yet) a wait: kept in case its request is a SETLKW still on its way to begin().
      // Uniques never repeat, so the oldest can go when the set is full.
      if (early_.size() == kMaxEarly) early_.pop_front();
      early_.push_back(unique);
      return false;
    }
    if (!it->second.parked) {
      it->second.interrupted = true;  // at the device: EINTR when it says busy
      return true;
    }
    parked = it->second.call;
    waits_.erase(it);
  }
  answer_(*parked, EINTR);
  return true;
}

void LockWaits::stop() {
  std::vector<fs::Call*> parked;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
    for (auto it = waits_.begin(); it != waits_.end();) {
      if (it->second.parked) {
        parked.push_back(it->second.call);
        it = waits_.erase(it);
      } else {
        ++it;
      }
    }
    cv_.notify_all();
  }
  thread_.join();
  for (fs::Call* c : parked) answer_(*c, kStopError);
}

void LockWaits::run() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    const auto now = std::chrono::steady_clock::now();
    auto next = now + std::chrono::hours(1);
    std::vector<fs::Call*> due;
    for (auto& [unique, w] : waits_) {
      if (!w.parked) continue;
      if (w.at <= now) {
        w.parked = false;
        due.push_back(w.call);
      } else {
        next = std::min(next, w.at);
      }
    }
    if (!due.empty()) {
      lock.unlock();
      for (fs::Call* c : due) resubmit_(*c);
      lock.lock();
      continue;
    }
    cv_.wait_until(lock, next);
  }
}

}  // namespace virtiofs::mount
