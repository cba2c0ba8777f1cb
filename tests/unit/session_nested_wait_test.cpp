// A callback that makes a blocking call: the session lets on_done do it (session.hpp), in both
// interrupt and polling modes. The nested call must end with its reply, not sleep for ever
// because the callback's queue still had its interrupts off or its reaper was the callback.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "unit/session_fixture.hpp"

using namespace virtiofs;
using namespace virtiofs::test;

namespace {

struct NestedCase {
  const char* name;
  unsigned poll_us;
  bool shared_call_fd;
  bool event_idx = true;
};

// An async GETATTR whose on_done makes a blocking LOOKUP on the same session.
struct CallingBack : fs::Call {
  fs::Session* session = nullptr;
  std::atomic<bool> nested_done{false};
  std::error_code nested_ec;
  Entry nested_entry{};
  CallingBack() {
    on_done = [](fs::Call& c) {
      auto& self = static_cast<CallingBack&>(c);
      fs::SyncCall nested;
      nested.frame = fuse::make_lookup(kRootInode, "there");
      self.session->submit(nested);
      self.session->wait(nested);
      self.nested_ec = nested.ec ? nested.ec : fuse::parse(nested.reply, self.nested_entry);
      self.nested_done.store(true);
    };
  }
};

class NestedWait : public SessionLoopback, public ::testing::WithParamInterface<NestedCase> {
 protected:
  void SetUp() override {
    LoopbackFsOptions o;
    o.device.shared_call_fd = GetParam().shared_call_fd;
    if (!GetParam().event_idx) o.device.features &= ~virtio::feature::kRingEventIdx;
    // Replies slower than the polling: a polling caller gives up and must then sleep where it
    // will be woken.
    o.server.delay_us = 2 * GetParam().poll_us;
    fs::SessionOptions so = small_session();
    so.poll_us = GetParam().poll_us;
    start(o, so);
    ASSERT_FALSE(run(fuse::make_mkdir(kRootInode, "there", 0755, 0)).ec);
  }
  // Waits for the nested call; if it hangs, fails the device so that it ends, and says so.
  void expect_nested_done(CallingBack& c) {
    if (!eventually([&] { return c.nested_done.load(); })) {
      session->device_misbehaved();
      eventually([&] { return c.nested_done.load(); });
      FAIL() << "the blocking call made from a callback never returned";
    }
    EXPECT_FALSE(c.nested_ec) << c.nested_ec.message();
    EXPECT_NE(c.nested_entry.inode, 0u);
  }
};

// Nobody waits: the completion thread reaps the GETATTR and runs the callback, which blocks.
TEST_P(NestedWait, FromACallbackOnTheCompletionThread) {
  for (int round = 0; round < 20; ++round) {
    CallingBack c;
    c.session = session.get();
    c.frame = fuse::make_getattr(kRootInode, nullptr);
    session->submit(c);
    expect_nested_done(c);
    if (HasFailure()) return;
  }
}

// A caller in a blocking call may reap the GETATTR among its own batch and run its callback on
// its thread, inside wait(): the nested wait there must not reap into the batch being run.
TEST_P(NestedWait, FromACallbackRunByAWaitingCaller) {
  for (int round = 0; round < 20; ++round) {
    CallingBack c;
    c.session = session.get();
    c.frame = fuse::make_getattr(kRootInode, nullptr);
    fs::SyncCall own;
    own.frame = fuse::make_getattr(kRootInode, nullptr);
    session->submit(c);
    session->submit(own);
    session->wait(own);
    EXPECT_FALSE(own.ec);
    expect_nested_done(c);
    if (HasFailure()) return;
  }
}

INSTANTIATE_TEST_SUITE_P(Session, NestedWait,
                         ::testing::Values(NestedCase{"Interrupts", 0, false},
                                           NestedCase{"Polling", 200, false},
                                           NestedCase{"SharedCallFd", 0, true},
                                           NestedCase{"SharedCallFdPolling", 200, true},
                                           NestedCase{"NoEventIdx", 0, false, false},
                                           NestedCase{"NoEventIdxPolling", 200, false, false}),
                         [](const auto& param_info) { return std::string(param_info.param.name); });

// What happened, in order, on whichever threads: to tell whether one callback ran inside another.
struct Journal {
  std::mutex mu;
  std::vector<std::string> events;
  void add(std::string e) {
    std::lock_guard lock(mu);
    events.push_back(std::move(e));
  }
  std::vector<std::string> get() {
    std::lock_guard lock(mu);
    return events;
  }
};

// An async call whose callback blocks on a held STATFS until the device lets it go.
struct BlockingCallback : fs::Call {
  fs::Session* session = nullptr;
  Journal* journal = nullptr;
  std::atomic<bool> started{false}, finished{false};
  std::error_code nested_ec;
  BlockingCallback() {
    on_done = [](fs::Call& c) {
      auto& self = static_cast<BlockingCallback&>(c);
      self.journal->add("A begins");
      self.started = true;
      fs::SyncCall held;
      held.frame = fuse::make_statfs(kRootInode);
      self.session->submit(held);
      self.session->wait(held);
      self.nested_ec = held.ec;
      self.journal->add("A ends");
      self.finished = true;
    };
  }
};

struct JournalCall : fs::Call {
  Journal* journal = nullptr;
  std::atomic<bool> done{false};
  JournalCall() {
    on_done = [](fs::Call& c) {
      auto& self = static_cast<JournalCall&>(c);
      self.journal->add("B");
      self.done = true;
    };
  }
};

// While A's callback waits on the completion thread, that thread reaps B's reply: B's callback
// runs after A's returns, not inside it (callbacks never nest).
TEST_F(SessionLoopback, ACallbackThatBlocksDoesNotRunOthersInsideIt) {
  LoopbackFsOptions o;
  o.server.hold = FUSE_STATFS;
  o.server.hold_ms = 100;  // then answered for real
  start(o);
  Journal journal;
  BlockingCallback a;
  a.session = session.get();
  a.journal = &journal;
  a.frame = fuse::make_getattr(kRootInode, nullptr);
  JournalCall b;
  b.journal = &journal;
  b.frame = fuse::make_getattr(kRootInode, nullptr);
  session->submit(a);
  ASSERT_TRUE(eventually([&] { return a.started.load(); }));
  session->submit(b);
  const bool ended = eventually([&] { return a.finished.load() && b.done.load(); });
  if (!ended) loop->device().lose();
  ASSERT_TRUE(eventually([&] { return a.finished.load() && b.done.load(); }));
  EXPECT_TRUE(ended);
  EXPECT_FALSE(a.nested_ec) << a.nested_ec.message();
  EXPECT_EQ(journal.get(), (std::vector<std::string>{"A begins", "A ends", "B"}));
}

// A callback blocked on a held request when the session shuts down: shutdown ends it (the
// device stops, the call fails) and returns within its bound instead of joining a thread that
// waits for ever.
TEST_F(SessionLoopback, ShutdownEndsACallbackBlockedOnTheCompletionThread) {
  LoopbackFsOptions o;
  o.server.hold = FUSE_STATFS;  // for ever
  fs::SessionOptions so = small_session();
  so.device_timeout = std::chrono::milliseconds(300);
  start(o, so);
  Journal journal;
  BlockingCallback a;
  a.session = session.get();
  a.journal = &journal;
  a.frame = fuse::make_getattr(kRootInode, nullptr);
  session->submit(a);
  ASSERT_TRUE(eventually([&] { return a.started.load(); }));
  std::atomic<bool> shut{false};
  std::thread closer([&] {
    session->shutdown();
    shut = true;
  });
  const bool in_time = eventually([&] { return shut.load(); }, kBound + so.device_timeout);
  if (!in_time) loop->device().lose();
  closer.join();
  EXPECT_TRUE(in_time) << "shutdown waited for a callback blocked on its own thread";
  EXPECT_TRUE(a.finished.load());
  EXPECT_TRUE(a.nested_ec == std::errc::not_connected || a.nested_ec == std::errc::timed_out)
      << a.nested_ec.message();
}

// Shutdown from a callback would wait for its own thread: refused with EDEADLK, nothing hangs.
TEST_F(SessionLoopback, ShutdownFromACallbackIsRefused) {
  start();
  struct Closing : fs::Call {
    fs::Session* session = nullptr;
    std::atomic<bool> done{false};
    std::error_code refused;
  } c;
  c.session = session.get();
  c.frame = fuse::make_getattr(kRootInode, nullptr);
  c.on_done = [](fs::Call& base) {
    auto& self = static_cast<Closing&>(base);
    try {
      self.session->shutdown();
    } catch (const std::system_error& e) {
      self.refused = e.code();
    }
    self.done = true;
  };
  session->submit(c);
  ASSERT_TRUE(eventually([&] { return c.done.load(); }));
  EXPECT_EQ(c.refused, std::errc::resource_deadlock_would_occur);
  EXPECT_FALSE(run(fuse::make_getattr(kRootInode, nullptr)).ec) << "the session goes on";
}

}  // namespace
