// A device failure while another thread is taking replies: the slot being reaped belongs to its
// reaper until it releases it. The reaper is held in the middle of copying a reply out (its
// destination stalls in the kernel, userfaultfd), the failure comes from elsewhere, and only
// then may the reaper go on.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "support/stalling_buffer.hpp"
#include "unit/session_fixture.hpp"

using namespace virtiofs;
using namespace virtiofs::test;

namespace {

enum class Trigger { kDeviceMisbehaved, kDeviceLost, kBadUsedElementOnTheOtherQueue };

class FailureWhileReaping : public SessionLoopback, public ::testing::WithParamInterface<Trigger> {
 protected:
  // Runs `body` on a fresh thread until that thread's calls go to `queue` (the session deals
  // threads out to request queues in turn); returns whether it got there.
  bool on_queue(unsigned queue, const std::function<void()>& body) {
    for (unsigned attempt = 0; attempt < 2 * session->num_request_queues(); ++attempt) {
      bool there = false;
      std::thread([&] {
        TestCall& probe = run(fuse::make_getattr(kRootInode, nullptr));
        there = probe.queue_index == queue;
        if (there) body();
      }).join();
      if (there) return true;
    }
    return false;
  }
};

TEST_P(FailureWhileReaping, TheReaperKeepsItsSlotAndEndsTheCallOnceWithItsReply) {
  constexpr size_t kBytes = 256 * 1024;
  LoopbackFsOptions o;
  o.device.request_queues = 2;
  if (GetParam() == Trigger::kBadUsedElementOnTheOtherQueue) o.faults = {"used-id-not-in-flight@statfs"};
  start(o, small_session(16, 2));
  StallingBuffer stall(kBytes);
  if (!stall.unavailable_reason().empty()) GTEST_SKIP() << stall.unavailable_reason();

  Created created;
  TestCall& create = run(fuse::make_create(kRootInode, "f", O_RDWR, 0644, 0));
  ASSERT_FALSE(create.ec);
  ASSERT_FALSE(fuse::parse(create.reply, created));
  std::string data(kBytes, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>('a' + i % 23);
  ASSERT_FALSE(run(fuse::make_write(created.entry.inode, created.file.fh, 0, bytes_of(data))).ec);

  // The READ goes to queue 2, whose completion thread is not the one that watches liveness
  // and hiprio (that is queue 1's): the failure can come while the reaper is held.
  TestCall& read = new_call(fuse::make_read(created.entry.inode, created.file.fh, 0, stall.data(),
                                            false, false));
  const size_t done_before = recorder.count();
  ASSERT_TRUE(on_queue(2, [&] { session->submit(read); }));
  ASSERT_TRUE(stall.wait_for_stall(kBound)) << "the reply was never copied out";

  switch (GetParam()) {
    case Trigger::kDeviceMisbehaved:
      session->device_misbehaved();
      break;
    case Trigger::kDeviceLost:
      loop->device().lose();
      break;
    case Trigger::kBadUsedElementOnTheOtherQueue:
      ASSERT_TRUE(on_queue(1, [&] { session->submit(new_call(fuse::make_statfs(kRootInode))); }));
      break;
  }
  ASSERT_TRUE(eventually([&] { return bool(session->failure()); })) << "the failure went unnoticed";
  // Every other call ended; the one whose reply is being copied is still its reaper's.
  EXPECT_FALSE(is_done(read)) << "the failure completed a call while its reply was being copied";

  stall.release();
  ASSERT_TRUE(eventually([&] { return is_done(read); })) << "the reaper never finished";
  EXPECT_FALSE(read.ec) << "the device answered before the failure: " << read.ec.message();
  EXPECT_EQ(read.reply.data_len, kBytes);
  const auto got = stall.data();
  EXPECT_TRUE(std::equal(got.begin(), got.end(), bytes_of(data).begin(), bytes_of(data).end()));
  std::lock_guard lock(recorder.mu);
  EXPECT_EQ(std::count(recorder.order.begin() + static_cast<ptrdiff_t>(done_before),
                       recorder.order.end(), read.index),
            1)
      << "the READ ended exactly once";
}

INSTANTIATE_TEST_SUITE_P(Session, FailureWhileReaping,
                         ::testing::Values(Trigger::kDeviceMisbehaved, Trigger::kDeviceLost,
                                           Trigger::kBadUsedElementOnTheOtherQueue),
                         [](const auto& param_info) {
                           switch (param_info.param) {
                             case Trigger::kDeviceMisbehaved: return "DeviceMisbehaved";
                             case Trigger::kDeviceLost: return "DeviceLost";
                             default: return "BadUsedElementOnTheOtherQueue";
                           }
                         });

}  // namespace
