// Session::Poller: the owner's own thread polls a request queue (the FUSE bridge's polled
// readers). While it holds the poller the device is told not to interrupt, replies are taken and
// their callbacks run on the polling thread, and letting go turns interrupts back on and ends
// what came in between, on that thread too.
#include <gtest/gtest.h>

#include <thread>

#include "fuse/ops.hpp"
#include "unit/session_fixture.hpp"

using namespace virtiofs;
using namespace virtiofs::test;

namespace {

class SessionOwnerPoll : public SessionLoopback {};

TEST_F(SessionOwnerPoll, RepliesAreTakenOnThePollingThreadWithNoInterrupt) {
  start();
  auto& dev = loop->device();
  dev.set_stepped(1, true);
  std::optional<fs::Session::Poller> poller;
  poller.emplace(*session);
  EXPECT_FALSE(dev.wants_interrupt(1)) << "interrupts stayed on while the owner polls";

  TestCall& call = new_call(fuse::make_getattr(kRootInode, nullptr));
  session->submit(call);
  ASSERT_TRUE(dev.wait_available(1, 1, kBound));
  const uint64_t signalled = dev.interrupts_signalled(1);
  EXPECT_EQ(poller->poll(), 0u) << "a reply before the device served it";
  EXPECT_EQ(dev.serve(1), 1u);
  size_t ended = 0;
  ASSERT_TRUE(eventually([&] { return (ended += poller->poll()) > 0; }));
  EXPECT_EQ(ended, 1u);
  {
    std::lock_guard lock(recorder.mu);
    EXPECT_TRUE(call.done);
    EXPECT_EQ(call.ran_on, std::this_thread::get_id()) << "on_done ran elsewhere";
  }
  EXPECT_FALSE(call.ec) << call.ec.message();
  EXPECT_EQ(dev.interrupts_signalled(1), signalled) << "the device interrupted a polling owner";

  // A reply that comes after the last poll ends when the poller goes, on this thread.
  TestCall& late = new_call(fuse::make_getattr(kRootInode, nullptr));
  session->submit(late);
  ASSERT_TRUE(dev.wait_available(1, 1, kBound));
  EXPECT_EQ(dev.serve(1), 1u);
  poller.reset();
  {
    std::lock_guard lock(recorder.mu);
    EXPECT_TRUE(late.done) << "letting go left a reply behind";
    EXPECT_EQ(late.ran_on, std::this_thread::get_id());
  }
  EXPECT_TRUE(dev.wants_interrupt(1)) << "interrupts stayed off after the owner let go";
}

TEST_F(SessionOwnerPoll, RefusedWhenTheApplicationReaps) {
  fs::SessionOptions so = small_session();
  so.app_reaps_completions = true;
  start({}, so);
  EXPECT_THROW(fs::Session::Poller p(*session), std::system_error);
}

}  // namespace
