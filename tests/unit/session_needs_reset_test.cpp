// DEVICE_NEEDS_RESET, announced by the config interrupt: the device serves nothing more, so every
// request still with it fails with EIO at once and the session reports the device broken, once,
// also when completions arrive at the same moment. A config change without the status bit is
// harmless.
#include <gtest/gtest.h>

#include <mutex>

#include "unit/session_fixture.hpp"

using namespace virtiofs;
using namespace virtiofs::test;

namespace {

class NeedsReset : public SessionLoopback {
 protected:
  void SetUp() override {
    start();
    session->set_failure_handler([this](std::error_code ec) {
      std::lock_guard lock(mu);
      reported.push_back(ec);
    });
  }
  LoopbackDevice& device() { return loop->device(); }

  // Each call ended exactly once, with its reply or with EIO.
  void expect_each_ended_once(size_t from) {
    std::lock_guard lock(recorder.mu);
    for (size_t i = from; i < calls.size(); ++i) {
      EXPECT_EQ(std::count(recorder.order.begin(), recorder.order.end(), calls[i].index), 1) << "call " << i;
      EXPECT_TRUE(!calls[i].ec || calls[i].ec == std::errc::io_error) << calls[i].ec.message();
    }
  }
  void expect_reported_once_as_eio() {
    std::lock_guard lock(mu);
    ASSERT_EQ(reported.size(), 1u);
    EXPECT_EQ(reported[0], std::errc::io_error);
  }

  std::mutex mu;
  std::vector<std::error_code> reported;
};

TEST_F(NeedsReset, EveryRequestWithTheDeviceFailsWithEio) {
  device().set_all_stepped(true);
  const size_t first = calls.size();
  for (int i = 0; i < 4; ++i) session->submit(new_call(fuse::make_getattr(kRootInode, nullptr)));
  ASSERT_TRUE(device().wait_available(1, 4, kBound));
  device().take(1);  // the device holds them and will never answer
  device().set_needs_reset();
  ASSERT_TRUE(recorder.wait_count(first + 4)) << "requests still wait for a device that needs a reset";
  for (size_t i = first; i < calls.size(); ++i) EXPECT_EQ(calls[i].ec, std::errc::io_error);
  expect_reported_once_as_eio();
  EXPECT_EQ(session->failure(), std::errc::io_error);
  // Later requests fail at once as well.
  TestCall& late = new_call(fuse::make_statfs(kRootInode));
  session->submit(late);
  ASSERT_TRUE(eventually([&] { return is_done(late); }));
  EXPECT_TRUE(late.ec);
}

TEST_F(NeedsReset, AConfigChangeAloneChangesNothing) {
  device().config_interrupt();
  device().config_interrupt();
  EXPECT_FALSE(run(fuse::make_statfs(kRootInode)).ec);
  EXPECT_FALSE(session->failure());
  std::lock_guard lock(mu);
  EXPECT_TRUE(reported.empty());
}

// The completion thread is held inside an earlier call's on_done while the device both answers
// some requests (used ring + interrupt) and sets NEEDS_RESET (config interrupt): when it goes
// on, it sees both at once, in whichever order. Then the same with the answers first.
enum class Order { kTogether, kAnswersFirst };

class NeedsResetRace : public NeedsReset, public ::testing::WithParamInterface<Order> {};

TEST_P(NeedsResetRace, CompletionsAndTheResetEndEachCallOnce) {
  device().set_all_stepped(true);
  std::mutex hold;
  std::unique_lock held(hold);
  TestCall& blocker = new_call(fuse::make_getattr(kRootInode, nullptr));
  blocker.before_done = [&] { std::lock_guard wait(hold); };
  const size_t first = calls.size() - 1;
  session->submit(blocker);
  ASSERT_EQ(device().serve(1, 1), 1u);  // the completion thread now waits in blocker's on_done
  ASSERT_TRUE(eventually([&] { return device().available(1) == 0; }));
  std::this_thread::sleep_for(20ms);  // let it get there (an early release only weakens the race)

  for (int i = 0; i < 6; ++i) session->submit(new_call(fuse::make_getattr(kRootInode, nullptr)));
  ASSERT_TRUE(device().wait_available(1, 6, kBound));
  std::vector<DeviceChain> chains = device().take(1);
  ASSERT_EQ(chains.size(), 6u);
  std::vector<DeviceChain> answered;
  for (int i = 0; i < 3; ++i) answered.push_back(std::move(chains[i]));
  if (GetParam() == Order::kAnswersFirst) {
    held.unlock();
    device().answer(1, std::move(answered));
    ASSERT_TRUE(recorder.wait_count(first + 4));
    device().set_needs_reset();
  } else {
    device().answer(1, std::move(answered));
    device().set_needs_reset();
    held.unlock();
  }
  ASSERT_TRUE(recorder.wait_count(first + 7)) << "a call was never ended";
  // The three never answered fail; the answered ones ended once, with the reply or EIO.
  for (size_t i = first + 4; i < first + 7; ++i) EXPECT_EQ(calls[i].ec, std::errc::io_error);
  if (GetParam() == Order::kAnswersFirst) {
    for (size_t i = first; i < first + 4; ++i) EXPECT_FALSE(calls[i].ec) << calls[i].ec.message();
  }
  expect_each_ended_once(first);
  expect_reported_once_as_eio();
}

INSTANTIATE_TEST_SUITE_P(Session, NeedsResetRace, ::testing::Values(Order::kTogether, Order::kAnswersFirst),
                         [](const auto& p) {
                           return p.param == Order::kTogether ? "Together" : "AnswersFirst";
                         });


// Whatever makes the session abandon the device (NEEDS_RESET, a reply the owner finds bad, the
// device lost), the device is stopped before the first call ends: a device that still writes
// into a slot, a chunk or a zero-copy reply buffer handed back would corrupt its next owner.
enum class Abandon { kNeedsReset, kMisbehaved, kLost };

class AbandonedDevice : public NeedsReset, public ::testing::WithParamInterface<Abandon> {};

TEST_P(AbandonedDevice, IsStoppedBeforeAnyCallEnds) {
  device().set_all_stepped(true);
  const size_t first = calls.size();
  std::vector<bool> stopped_at_end(4, false);
  for (size_t i = 0; i < 4; ++i) {
    TestCall& c = new_call(fuse::make_getattr(kRootInode, nullptr));
    c.before_done = [&, i] { stopped_at_end[i] = device().stopped(); };
    session->submit(c);
  }
  ASSERT_TRUE(device().wait_available(1, 4, kBound));
  device().take(1);  // the device holds them: it could still write their replies
  switch (GetParam()) {
    case Abandon::kNeedsReset: device().set_needs_reset(); break;
    case Abandon::kMisbehaved: session->device_misbehaved(); break;
    case Abandon::kLost: device().lose(); break;
  }
  ASSERT_TRUE(recorder.wait_count(first + 4));
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_TRUE(calls[first + i].ec) << "call " << i;
    EXPECT_TRUE(stopped_at_end[i]) << "call " << i << " ended while the device was not stopped";
  }
}

INSTANTIATE_TEST_SUITE_P(Session, AbandonedDevice,
                         ::testing::Values(Abandon::kNeedsReset, Abandon::kMisbehaved, Abandon::kLost),
                         [](const auto& p) {
                           switch (p.param) {
                             case Abandon::kNeedsReset: return "NeedsReset";
                             case Abandon::kMisbehaved: return "Misbehaved";
                             default: return "Lost";
                           }
                         });

}  // namespace
