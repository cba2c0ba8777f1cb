// Test fixture for the session over the in-process loopback device (MemFs behind FsServer):
// calls that record where and in which order they ended, bounded waits, and a fixture that
// starts a session and, when a test fails, loses the device so that nothing is left waiting.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "fs/session.hpp"
#include "fuse/init.hpp"
#include "fuse/ops.hpp"
#include "support/chain_bytes.hpp"
#include "support/loopback_fs.hpp"

namespace virtiofs::test {

using namespace std::chrono_literals;

inline constexpr auto kBound = 2s;  // no step of these tests comes near it unless the session hangs

// Completion order of the calls a test made, recorded by on_done on whichever thread ran it.
struct Recorder {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<size_t> order;

  bool wait_count(size_t n, std::chrono::milliseconds timeout = kBound) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, timeout, [&] { return order.size() >= n; });
  }
  size_t count() {
    std::lock_guard lock(mu);
    return order.size();
  }
};

struct TestCall : fs::Call {
  Recorder* recorder = nullptr;
  size_t index = 0;
  bool done = false;         // under recorder->mu
  std::thread::id ran_on;    // under recorder->mu: the thread that ran on_done
  // Runs first in on_done, on the completing thread (e.g. to hold it there). It lives as long
  // as the call, which outlives the session, so it may still run while a failed test unwinds.
  std::function<void()> before_done;
  TestCall() {
    on_done = [](fs::Call& c) {
      auto& t = static_cast<TestCall&>(c);
      if (t.before_done) t.before_done();
      std::lock_guard lock(t.recorder->mu);
      t.done = true;
      t.ran_on = std::this_thread::get_id();
      t.recorder->order.push_back(t.index);
      t.recorder->cv.notify_all();
    };
  }
};

// Waits until pred() holds (a condition another thread makes true), at most `timeout`.
template <class Pred>
inline bool eventually(Pred pred, std::chrono::milliseconds timeout = kBound) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

inline fs::SessionOptions small_session(uint16_t queue_size = 8, unsigned request_queues = 1) {
  fs::SessionOptions o;
  o.queue_size = queue_size;
  o.num_request_queues = request_queues;
  o.chunks_per_queue = 4;
  return o;
}

class SessionLoopback : public ::testing::Test {
 protected:
  // Builds the device and the session and settles INIT with the device threaded.
  void start(const LoopbackFsOptions& device = {}, const fs::SessionOptions& options = small_session()) {
    loop = std::make_unique<LoopbackFs>(device);
    session = std::make_unique<fs::Session>(loop->transport(), options);
    session->init(fuse::kLibraryInitFlags, 0);
  }

  void TearDown() override {
    if (!session) return;
    // A failed test may have left calls with a stepped or silent device: losing it ends them
    // at once, so shutdown cannot wait; otherwise shutdown runs as usual (DESTROY answered).
    if (HasFailure()) loop->device().lose();
    for (unsigned q = 0; q < loop->device().num_queues(); ++q) loop->device().set_silent(q, false);
    loop->device().set_all_stepped(false);
    session.reset();
  }

  TestCall& new_call(fuse::Frame frame) {
    TestCall& c = calls.emplace_back();
    c.recorder = &recorder;
    c.index = calls.size() - 1;
    c.frame = frame;
    return c;
  }

  // Submits and waits (bounded). On timeout the device is lost so that the call ends before
  // its buffers go away, and the test fails.
  TestCall& run(fuse::Frame frame) {
    TestCall& c = new_call(frame);
    const size_t before = recorder.count();
    session->submit(c);
    if (!recorder.wait_count(before + 1) || !is_done(c)) {
      ADD_FAILURE() << "opcode " << frame.opcode << " not answered within the bound";
      loop->device().lose();
      eventually([&] { return is_done(c); });
    }
    return c;
  }

  bool is_done(TestCall& c) {
    std::lock_guard lock(recorder.mu);
    return c.done;
  }

  Recorder recorder;
  std::deque<TestCall> calls;  // stable addresses; outlive the session (declared before it)
  std::unique_ptr<LoopbackFs> loop;
  std::unique_ptr<fs::Session> session;
};

// The next chain the driver publishes on a stepped queue, taken; nullopt when none comes.
inline std::optional<DeviceChain> take_one(LoopbackDevice& dev, unsigned queue) {
  if (!dev.wait_available(queue, 1, kBound)) return std::nullopt;
  std::vector<DeviceChain> chains = dev.take(queue, 1);
  if (chains.size() != 1) return std::nullopt;
  return std::move(chains.front());
}

inline std::span<const std::byte> bytes_of(const std::string& s) { return std::as_bytes(std::span(s)); }

// A thread that a failing test still joins: when the body has not finished, `unblock` (losing
// the device, say) ends whatever it waits for, so nothing outlives the buffers it points at.
class JoinedThread {
 public:
  JoinedThread(std::function<void()> unblock, std::function<void()> body)
      : unblock_(std::move(unblock)), thread_([this, body = std::move(body)] {
          body();
          finished_ = true;
        }) {}
  ~JoinedThread() {
    if (!finished_) unblock_();
    thread_.join();
  }
  JoinedThread(const JoinedThread&) = delete;
  JoinedThread& operator=(const JoinedThread&) = delete;
  bool finished_within(std::chrono::milliseconds timeout = kBound) {
    return eventually([this] { return finished_.load(); }, timeout);
  }
  std::thread::id id() const { return thread_.get_id(); }

 private:
  std::function<void()> unblock_;
  std::atomic<bool> finished_{false};
  std::thread thread_;
};

}  // namespace virtiofs::test
