// Smallest repros of session defects the stress test led to, each disabled until lib/fs is
// fixed (run with --gtest_also_run_disabled_tests). Every wait here is bounded: a watchdog
// loses the device so that a defect shows as a failure, not a hang.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

#include "fs/session.hpp"
#include "fuse/init.hpp"
#include "fuse/ops.hpp"
#include "support/loopback_fs.hpp"

using namespace virtiofs;
using namespace std::chrono_literals;

namespace {

// Waits until pred() holds, at most `timeout`.
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout = 2000ms) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

// An async call whose callback makes a blocking call (documented as allowed).
struct BlockingCallback : fs::Call {
  fs::Session* session = nullptr;
  fs::SyncCall inner;
  std::atomic<bool> entered{false}, returned{false};
  BlockingCallback() {
    on_done = [](fs::Call& c) {
      auto& self = static_cast<BlockingCallback&>(c);
      self.entered = true;
      self.session->submit(self.inner);
      self.session->wait(self.inner);
      self.returned = true;
    };
  }
};

// DEFECT (lib/fs/session.cpp, Session::shutdown): shutdown stops and joins the completion
// threads (completion_->stop()) before it fails what is still pending (fail_all). A callback
// that blocks on a request the device never answers keeps its completion thread in
// Completion::wait_on_completer, so the join waits for a call only the later fail_all would
// end: ~Session hangs past device_timeout (here until the watchdog loses the device).
TEST(SessionDefectRepro, DISABLED_ShutdownIsBoundedWhileACallbackBlocksOnAnUnansweredCall) {
  test::LoopbackFsOptions o;
  o.server.hold = FUSE_STATFS;  // hold_ms 0: held until interrupted, i.e. never here
  BlockingCallback outer;       // outlives the session
  test::LoopbackFs loop(o);
  fs::SessionOptions so;
  so.queue_size = 8;
  so.chunks_per_queue = 4;
  so.device_timeout = 200ms;
  auto session = std::make_unique<fs::Session>(loop.transport(), so);
  session->init(fuse::kLibraryInitFlags, 0);

  outer.session = session.get();
  outer.frame = fuse::make_getattr(kRootInode, nullptr);
  outer.inner.frame = fuse::make_statfs(kRootInode);
  session->submit(outer);
  ASSERT_TRUE(eventually([&] { return outer.entered.load() && loop.stat("opcode statfs") == 1; }))
      << "the callback did not block on the held STATFS";

  std::mutex mu;
  std::condition_variable cv;
  bool destroyed = false;
  std::thread watchdog([&] {
    std::unique_lock lock(mu);
    if (!cv.wait_for(lock, 3s, [&] { return destroyed; })) loop.device().lose();
  });
  const auto start = std::chrono::steady_clock::now();
  session.reset();
  const auto took = std::chrono::steady_clock::now() - start;
  {
    std::lock_guard lock(mu);
    destroyed = true;
  }
  cv.notify_all();
  watchdog.join();
  EXPECT_LT(took, 2s) << "~Session took "
                      << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                      << " ms with device_timeout 200 ms";
  EXPECT_TRUE(outer.returned.load());
  EXPECT_TRUE(outer.inner.ec) << "the held STATFS can only end with the session's error";
}

}  // namespace
