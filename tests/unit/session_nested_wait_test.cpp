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
                                           NestedCase{"SharedCallFdPolling", 200, true}),
                         [](const auto& param_info) { return std::string(param_info.param.name); });

}  // namespace
