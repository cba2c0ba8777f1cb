// The bridge's lock waits (-o remote_locks): a busy lock is asked for again after a pause, a
// signal (INTERRUPT) ends the wait with EINTR whether the request is parked or at the device,
// and stopping ends every wait. The mount tests run it against virtiofsd.
#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

#include "mount/lock_waits.hpp"

namespace virtiofs::mount {
namespace {

using namespace std::chrono_literals;

struct Recorder {
  std::mutex mu;
  std::vector<std::pair<fs::Call*, std::chrono::steady_clock::time_point>> resubmitted;
  std::vector<std::pair<fs::Call*, int>> answered;
  size_t resubmits() {
    std::lock_guard lock(mu);
    return resubmitted.size();
  }
  size_t answers() {
    std::lock_guard lock(mu);
    return answered.size();
  }
};

template <class Pred>
bool eventually(Pred pred) {
  const auto deadline = std::chrono::steady_clock::now() + 2s;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

class LockWaitsTest : public ::testing::Test {
 protected:
  Recorder r;
  LockWaits waits{[this](fs::Call& c) {
                    std::lock_guard lock(r.mu);
                    r.resubmitted.emplace_back(&c, std::chrono::steady_clock::now());
                  },
                  [this](fs::Call& c, int e) {
                    std::lock_guard lock(r.mu);
                    r.answered.emplace_back(&c, e);
                  }};
  fs::Call call;
};

TEST_F(LockWaitsTest, BusyIsAskedAgainAfterAGrowingPause) {
  waits.begin(call, 7);
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(waits.again(call, 7));
  ASSERT_TRUE(eventually([&] { return r.resubmits() == 1; }));
  ASSERT_TRUE(waits.again(call, 7));
  ASSERT_TRUE(eventually([&] { return r.resubmits() == 2; }));
  std::lock_guard lock(r.mu);
  EXPECT_GE(r.resubmitted[0].second - t0, 1ms);
  EXPECT_GE(r.resubmitted[1].second - r.resubmitted[0].second, 2ms) << "the pause doubles";
  EXPECT_TRUE(r.answered.empty());
}

TEST_F(LockWaitsTest, AnInterruptEndsAParkedWaitAtOnce) {
  waits.begin(call, 7);
  for (int i = 0; i < 6; ++i) {  // pauses of 1..32 ms: now parked for a while
    ASSERT_TRUE(waits.again(call, 7));
    ASSERT_TRUE(eventually([&] { return r.resubmits() == size_t(i + 1); }));
  }
  ASSERT_TRUE(waits.again(call, 7));
  EXPECT_TRUE(waits.interrupt(7));
  ASSERT_EQ(r.answers(), 1u);
  EXPECT_EQ(r.answered[0].second, EINTR);
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(r.resubmits(), 6u) << "an interrupted wait was sent again";
}

TEST_F(LockWaitsTest, AnInterruptWhileAtTheDeviceEndsItWhenTheDeviceSaysBusy) {
  waits.begin(call, 7);
  EXPECT_TRUE(waits.interrupt(7));
  EXPECT_EQ(r.answers(), 0u) << "the device still has it: it cannot be answered yet";
  EXPECT_FALSE(waits.again(call, 7));
  ASSERT_EQ(r.answers(), 1u);
  EXPECT_EQ(r.answered[0].second, EINTR);
}

// Another reader took the INTERRUPT before the SETLKW's reader reached begin(): the kernel
// sends it once, so the wait must still end with EINTR when the device says busy.
TEST_F(LockWaitsTest, AnInterruptBeforeItsWaitBeganStillEndsIt) {
  EXPECT_FALSE(waits.interrupt(7));  // no wait yet: passed on as usual
  waits.begin(call, 7);
  EXPECT_FALSE(waits.again(call, 7));
  ASSERT_EQ(r.answers(), 1u);
  EXPECT_EQ(r.answered[0].second, EINTR);
  // Remembered ones are bounded and a later wait is not affected by an old unique.
  for (uint64_t u = 100; u < 100 + 2 * LockWaits::kMaxEarly; ++u) waits.interrupt(u);
  fs::Call other;
  waits.begin(other, 100);  // pushed out of the bounded set
  EXPECT_TRUE(waits.again(other, 100));
}

TEST_F(LockWaitsTest, OnlyLockWaitsAreOurs) {
  EXPECT_FALSE(waits.interrupt(9));
  waits.begin(call, 7);
  waits.end(7);  // granted
  EXPECT_FALSE(waits.interrupt(7));
}

TEST_F(LockWaitsTest, StoppingEndsEveryWait) {
  fs::Call other;
  waits.begin(call, 7);
  waits.begin(other, 8);
  ASSERT_TRUE(waits.again(call, 7));  // parked
  waits.stop();
  ASSERT_EQ(r.answers(), 1u);
  EXPECT_EQ(r.answered[0].first, &call);
  EXPECT_FALSE(waits.again(other, 8));  // came back busy after the stop
  ASSERT_EQ(r.answers(), 2u);
  // No signal is pending: EINTR would reach the caller as ERESTARTSYS (errno 512).
  EXPECT_EQ(r.answered[0].second, ENOLCK);
  EXPECT_EQ(r.answered[1].second, ENOLCK);
}

}  // namespace
}  // namespace virtiofs::mount
