// Adaptive polling's learner (lib/fs/spin_learner.hpp) on synthetic round trips: the budget
// follows the median, is capped, backs off after misses, and re-probes and recovers.
#include "fs/spin_learner.hpp"

#include <gtest/gtest.h>

using virtiofs::fs::SpinLearner;

namespace {

constexpr uint32_t kCap = 200'000;  // 200 us, in ns

// n waits that spun and took their reply after rtt_ns.
void hits(SpinLearner& l, unsigned n, uint64_t rtt_ns) {
  for (unsigned i = 0; i < n; ++i) {
    ASSERT_GT(l.budget(), 0u);
    l.record(rtt_ns, true, true);
  }
}

// Runs `waits` waits against a device whose replies take rtt_ns: a wait that spins misses when
// its budget is shorter. Returns how many spun and missed.
unsigned run(SpinLearner& l, unsigned waits, uint64_t rtt_ns) {
  unsigned misses = 0;
  for (unsigned i = 0; i < waits; ++i) {
    const uint32_t budget = l.budget();
    const bool hit = budget > 0 && budget >= rtt_ns;
    misses += budget > 0 && !hit;
    l.record(rtt_ns, budget > 0, hit);
  }
  return misses;
}

TEST(SpinLearner, FirstWaitsSpinUpToTheCap) {
  SpinLearner l(kCap);
  EXPECT_EQ(l.budget(), kCap);
}

TEST(SpinLearner, BudgetIsTwiceTheMedian) {
  SpinLearner l(kCap);
  hits(l, SpinLearner::kSamples, 10'000);
  EXPECT_EQ(l.budget(), 20'000u);
  // Outliers (under half of the samples) do not move it: a median, not a mean.
  for (unsigned i = 0; i < SpinLearner::kSamples / 2 - 1; ++i) l.record(150'000, true, true);
  EXPECT_EQ(l.budget(), 20'000u);
  // The device slows down: once most recent samples say so, the budget follows.
  hits(l, SpinLearner::kSamples, 40'000);
  EXPECT_EQ(l.budget(), 80'000u);
  // And speeds up again.
  hits(l, SpinLearner::kSamples, 3'000);
  EXPECT_EQ(l.budget(), 6'000u);
}

TEST(SpinLearner, BudgetIsCappedAndFloored) {
  SpinLearner l(kCap);
  hits(l, SpinLearner::kSamples, 150'000);  // 2 x 150 us is past the cap
  EXPECT_EQ(l.budget(), kCap);
  hits(l, SpinLearner::kSamples, 0);
  EXPECT_EQ(l.budget(), SpinLearner::kFloorNs);
  SpinLearner none(0);  // a cap of 0 never spins
  EXPECT_EQ(none.budget(), 0u);
}

TEST(SpinLearner, BacksOffAfterMissesAndProbesLessOften) {
  SpinLearner l(kCap);
  // Replies take 5 ms, far past the cap: every spin misses.
  l.record(5'000'000, true, false);
  EXPECT_EQ(l.budget(), kCap);  // one miss is not a pattern
  l.record(5'000'000, true, false);
  // Backed off: one wait sleeps at once, then a probe.
  EXPECT_EQ(l.budget(), 0u);
  EXPECT_EQ(l.budget(), kCap);
  l.record(5'000'000, true, false);  // the probe missed: twice as long
  EXPECT_EQ(l.budget(), 0u);
  EXPECT_EQ(l.budget(), 0u);
  EXPECT_EQ(l.budget(), kCap);
  // From then on the probes thin out to one per kMaxSkip waits.
  SpinLearner slow(kCap);
  const unsigned first = run(slow, 200, 5'000'000);
  EXPECT_LE(first, 10u);
  EXPECT_LE(run(slow, 10 * SpinLearner::kMaxSkip, 5'000'000), 11u);
}

TEST(SpinLearner, ReprobesAndRecoversWhenTheDeviceGetsFast) {
  SpinLearner l(kCap);
  run(l, 300, 5'000'000);  // deep in back-off
  // The device is fast again (20 us): the waits that sleep at once still give samples, and
  // the next probe takes its reply within its budget, which ends the back-off.
  EXPECT_EQ(run(l, 2 * SpinLearner::kMaxSkip + SpinLearner::kSamples, 20'000), 0u);
  // Recovered: every wait spins (no back-off left), with 2 x the new median.
  for (unsigned i = 0; i < 10; ++i) {
    EXPECT_EQ(l.budget(), 40'000u);
    l.record(20'000, true, true);
  }
}

}  // namespace
