// The application reaps its request queues (SessionOptions::app_reaps_completions): callbacks
// run on its thread inside process_completions, the completion fd says when to call it, no
// completion is lost however the device's answers fall against the application's reaping, and
// blocking calls, device loss and shutdown end without the application's help.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <poll.h>

#include <atomic>
#include <thread>

#include "support/stalling_buffer.hpp"
#include "unit/session_fixture.hpp"

using namespace virtiofs;
using namespace virtiofs::test;

namespace {

bool readable(int fd, std::chrono::milliseconds timeout = 0ms) {
  pollfd p{fd, POLLIN, 0};
  return poll(&p, 1, static_cast<int>(timeout.count())) == 1 && (p.revents & POLLIN);
}

fs::SessionOptions app_session(unsigned poll_us = 0) {
  fs::SessionOptions o = small_session(16);
  o.app_reaps_completions = true;
  o.poll_us = poll_us;
  return o;
}

class AppReaps : public SessionLoopback {
 protected:
  void SetUp() override { start({}, app_session()); }
  int fd() { return session->completion_fd(0); }

  // The application's loop: poll the fd, process, until `done` or the bound. Counts what
  // process_completions reported.
  template <class Pred>
  bool loop_until(Pred done) {
    const auto deadline = std::chrono::steady_clock::now() + kBound;
    while (!done()) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      if (readable(fd(), 10ms)) processed += session->process_completions(0);
    }
    return true;
  }
  // Submits and runs the loop until the call ended.
  TestCall& run_here(fuse::Frame frame) {
    TestCall& c = new_call(frame);
    session->submit(c);
    EXPECT_TRUE(loop_until([&] { return is_done(c); })) << "opcode " << frame.opcode;
    return c;
  }
  // A thread making `each` blocking GETATTRs on the session, counting them and their failures.
  std::unique_ptr<JoinedThread> blocking_caller(int each, std::atomic<int>& done,
                                                std::atomic<int>& failed) {
    return std::make_unique<JoinedThread>([this] { loop->device().lose(); }, [&, each, this] {
      for (int i = 0; i < each; ++i) {
        fs::SyncCall call;
        call.frame = fuse::make_getattr(kRootInode, nullptr);
        session->submit(call);
        session->wait(call);
        failed += call.ec ? 1 : 0;
        ++done;
      }
    });
  }
  std::thread::id ran_on(TestCall& c) {
    std::lock_guard lock(recorder.mu);
    return c.ran_on;
  }

  size_t processed = 0;
};

TEST_F(AppReaps, CallbacksRunOnTheApplicationsThreadOnly) {
  constexpr size_t kCalls = 200;
  for (size_t i = 0; i < kCalls; ++i) session->submit(new_call(fuse::make_getattr(kRootInode, nullptr)));
  ASSERT_TRUE(loop_until([&] { return recorder.count() == kCalls; }));
  EXPECT_EQ(processed, kCalls);
  for (TestCall& c : calls) {
    EXPECT_FALSE(c.ec) << c.ec.message();
    EXPECT_EQ(ran_on(c), std::this_thread::get_id());
  }
  EXPECT_FALSE(readable(fd())) << "nothing left to process, yet the fd says there is";
}

TEST_F(AppReaps, TheFdTurnsReadableWhenAReplyArrivesAndProcessingCompletesIt) {
  LoopbackDevice& dev = loop->device();
  dev.set_stepped(1, true);
  TestCall& c = new_call(fuse::make_getattr(kRootInode, nullptr));
  session->submit(c);
  auto chain = take_one(dev, 1);
  ASSERT_TRUE(chain);
  EXPECT_FALSE(readable(fd())) << "readable before the device answered";
  EXPECT_EQ(session->process_completions(0), 0u);
  std::vector<DeviceChain> chains;
  chains.push_back(std::move(*chain));
  dev.answer(1, std::move(chains));
  ASSERT_TRUE(readable(fd(), kBound)) << "the reply came, the fd did not say so";
  EXPECT_FALSE(is_done(c)) << "completed without the application";
  EXPECT_EQ(session->process_completions(0), 1u);
  EXPECT_TRUE(is_done(c));
  EXPECT_FALSE(c.ec);
  EXPECT_EQ(ran_on(c), std::this_thread::get_id());
  EXPECT_FALSE(readable(fd()));
}

// A call given up on (Session::abandon) ends on the stopping thread at once, and its late reply
// is dropped: nothing more comes through the application's fd or process_completions.
TEST_F(AppReaps, AnAbandonedCallEndsOnTheStoppingThreadAndItsLateReplyIsDropped) {
  LoopbackDevice& dev = loop->device();
  dev.set_stepped(1, true);
  TestCall& c = new_call(fuse::make_getattr(kRootInode, nullptr));
  session->submit(c);
  auto chain = take_one(dev, 1);
  ASSERT_TRUE(chain);
  session->abandon(c);
  ASSERT_TRUE(is_done(c)) << "the stop did not end the call at once";
  EXPECT_EQ(c.ec, std::errc::interrupted);
  EXPECT_EQ(ran_on(c), std::this_thread::get_id());
  std::vector<DeviceChain> chains;
  chains.push_back(std::move(*chain));
  dev.answer(1, std::move(chains));  // the late reply
  ASSERT_TRUE(readable(fd(), kBound)) << "the late reply did not signal the application";
  EXPECT_EQ(session->process_completions(0), 0u) << "a dropped reply ended a call";
  EXPECT_EQ(recorder.count(), 1u) << "the call ended twice";
  EXPECT_EQ(session->stats().replies_dropped, 1u);
  EXPECT_FALSE(readable(fd()));
  dev.set_stepped(1, false);
  EXPECT_FALSE(run_here(fuse::make_getattr(kRootInode, nullptr)).ec) << "the slot came back";
}

// The device answers B while the application is in the middle of reaping A (interrupts off, its
// thread held copying A's reply out): the device signals nothing for B, so the application's
// re-check as interrupts come back on must take it, in the same process_completions.
TEST_F(AppReaps, NothingIsLostWhenTheDeviceAnswersWhileTheApplicationReaps) {
  constexpr size_t kBytes = 64 * 1024;
  StallingBuffer stall(kBytes);
  if (!stall.unavailable_reason().empty()) GTEST_SKIP() << stall.unavailable_reason();
  TestCall& create = run_here(fuse::make_create(kRootInode, "f", O_RDWR, 0644, 0));
  ASSERT_FALSE(create.ec);
  Created created;
  ASSERT_FALSE(fuse::parse(create.reply, created));
  const std::string data(kBytes, 'x');
  ASSERT_FALSE(run_here(fuse::make_write(created.entry.inode, created.file.fh, 0, bytes_of(data))).ec);

  LoopbackDevice& dev = loop->device();
  dev.set_stepped(1, true);
  TestCall& a = new_call(fuse::make_read(created.entry.inode, created.file.fh, 0, stall.data(), false, false));
  TestCall& b = new_call(fuse::make_getattr(kRootInode, nullptr));
  session->submit(a);
  session->submit(b);
  ASSERT_TRUE(dev.wait_available(1, 2, kBound));
  std::vector<DeviceChain> taken = dev.take(1, 2);
  ASSERT_EQ(taken.size(), 2u);
  std::vector<DeviceChain> first;
  first.push_back(std::move(taken[0]));
  dev.answer(1, std::move(first));
  ASSERT_TRUE(readable(fd(), kBound));

  std::atomic<size_t> app_processed{0};
  JoinedThread app([&] { stall.release(); }, [&] { app_processed = session->process_completions(0); });
  ASSERT_TRUE(stall.wait_for_stall(kBound)) << "the application never copied A's reply out";
  const uint64_t signalled = dev.interrupts_signalled(1);
  EXPECT_FALSE(dev.wants_interrupt(1)) << "interrupts were on while the application reaped";
  std::vector<DeviceChain> second;
  second.push_back(std::move(taken[1]));
  dev.answer(1, std::move(second));
  EXPECT_EQ(dev.interrupts_signalled(1), signalled) << "the device signalled B after all";
  stall.release();
  ASSERT_TRUE(app.finished_within());
  EXPECT_EQ(app_processed.load(), 2u) << "B was left in the ring with no signal to come";
  EXPECT_TRUE(is_done(a));
  EXPECT_TRUE(is_done(b));
  EXPECT_EQ(ran_on(b), app.id());
  EXPECT_FALSE(readable(fd()));
}

class AppReapsBlocking : public AppReaps, public ::testing::WithParamInterface<unsigned> {
 protected:
  void SetUp() override {
    // Replies slower than the polling, so that a polling caller also has to sleep.
    LoopbackFsOptions o;
    o.server.delay_us = 2 * GetParam();
    start(o, app_session(GetParam()));
  }
};

// A blocking call on another thread ends though the application never processes; an async call
// the blocking caller reaps with its own is not run there but handed to the application.
TEST_P(AppReapsBlocking, EndsWithoutTheApplicationAndHandsItsCallsOver) {
  LoopbackDevice& dev = loop->device();
  dev.set_stepped(1, true);
  TestCall& async = new_call(fuse::make_getattr(kRootInode, nullptr));
  session->submit(async);
  ASSERT_TRUE(dev.wait_available(1, 1, kBound));
  std::error_code sync_ec{EBUSY, std::generic_category()};
  JoinedThread caller([&] { loop->device().lose(); }, [&] {
    fs::SyncCall call;
    call.frame = fuse::make_getattr(kRootInode, nullptr);
    session->submit(call);
    session->wait(call);
    sync_ec = call.ec;
  });
  ASSERT_TRUE(dev.wait_available(1, 2, kBound));
  dev.serve(1);
  ASSERT_TRUE(caller.finished_within()) << "the blocking call waited for the application";
  EXPECT_FALSE(sync_ec) << sync_ec.message();
  // Whoever reaped the async call, it is the application's to run.
  ASSERT_TRUE(readable(fd(), kBound)) << "the async call's completion was not handed over";
  EXPECT_FALSE(is_done(async)) << "the async call's callback ran without the application";
  EXPECT_EQ(session->process_completions(0), 1u);
  EXPECT_EQ(ran_on(async), std::this_thread::get_id());
}

// Many blocking callers and the application's loop share one queue's fd: every call ends.
TEST_P(AppReapsBlocking, BlockingCallersBesideTheApplicationsLoopAllEnd) {
  constexpr int kThreads = 4, kEach = 50, kAsync = 100;
  std::atomic<int> sync_done{0}, sync_failed{0};
  std::vector<std::unique_ptr<JoinedThread>> threads;
  for (int t = 0; t < kThreads; ++t) threads.push_back(blocking_caller(kEach, sync_done, sync_failed));
  for (int i = 0; i < kAsync; ++i) session->submit(new_call(fuse::make_getattr(kRootInode, nullptr)));
  ASSERT_TRUE(loop_until([&] { return recorder.count() == kAsync && sync_done == kThreads * kEach; }));
  EXPECT_EQ(sync_failed.load(), 0);
  for (TestCall& c : calls) EXPECT_EQ(ran_on(c), std::this_thread::get_id());
}

// The same with the application idle: every caller reaps for itself, none waits on another.
TEST_P(AppReapsBlocking, ConcurrentBlockingCallersEndWithTheApplicationIdle) {
  constexpr int kThreads = 4, kEach = 50;
  std::atomic<int> sync_done{0}, sync_failed{0};
  {
    std::vector<std::unique_ptr<JoinedThread>> threads;
    for (int t = 0; t < kThreads; ++t) threads.push_back(blocking_caller(kEach, sync_done, sync_failed));
    for (auto& t : threads) EXPECT_TRUE(t->finished_within()) << "a blocking call waited for the application";
  }
  EXPECT_EQ(sync_done.load(), kThreads * kEach);
  EXPECT_EQ(sync_failed.load(), 0);
}

INSTANTIATE_TEST_SUITE_P(Session, AppReapsBlocking, ::testing::Values(0u, 200u),
                         [](const auto& param_info) { return param_info.param ? "Polling" : "Interrupts"; });

TEST_F(AppReaps, DeviceLossEndsPendingCallsThroughProcessing) {
  loop->device().set_silent(1, true);
  for (int i = 0; i < 5; ++i) session->submit(new_call(fuse::make_getattr(kRootInode, nullptr)));
  ASSERT_TRUE(eventually([&] { return loop->device().chains_taken(1) >= 5; }));
  loop->device().lose();
  ASSERT_TRUE(readable(fd(), kBound)) << "the failure's hand-over did not wake the application";
  EXPECT_EQ(recorder.count(), 0u) << "callbacks ran on the thread that saw the device lost";
  // The failure hands the calls over one by one: the first may wake the loop before the last.
  ASSERT_TRUE(loop_until([&] { return recorder.count() == 5; }));
  EXPECT_EQ(processed, 5u);
  for (TestCall& c : calls) {
    EXPECT_EQ(c.ec, std::errc::not_connected);
    EXPECT_EQ(ran_on(c), std::this_thread::get_id());
  }
}

// The application never processes: shutdown reaps what is in flight itself (DESTROY included),
// well within the device timeout, and runs the callbacks with their results.
TEST_F(AppReaps, ShutdownWithTheApplicationIdleIsBoundedAndEndsEveryCall) {
  for (int i = 0; i < 20; ++i) session->submit(new_call(fuse::make_getattr(kRootInode, nullptr)));
  const auto begin = std::chrono::steady_clock::now();
  session->shutdown();
  EXPECT_LT(std::chrono::steady_clock::now() - begin, 1s) << "shutdown waited for the application";
  ASSERT_EQ(recorder.count(), 20u);
  for (TestCall& c : calls) {
    EXPECT_FALSE(c.ec) << c.ec.message();
    EXPECT_EQ(ran_on(c), std::this_thread::get_id());
  }
}

// Replies that come after DESTROY's: shutdown's drain must reap them itself as well.
TEST_F(SessionLoopback, ShutdownWithTheApplicationIdleReapsRepliesThatComeLast) {
  LoopbackFsOptions o;
  o.server.hold = FUSE_GETATTR;
  o.server.hold_ms = 200;
  start(o, app_session());
  for (int i = 0; i < 3; ++i) session->submit(new_call(fuse::make_getattr(kRootInode, nullptr)));
  const auto begin = std::chrono::steady_clock::now();
  session->shutdown();
  EXPECT_LT(std::chrono::steady_clock::now() - begin, 1s) << "shutdown waited for the application";
  ASSERT_EQ(recorder.count(), 3u);
  for (TestCall& c : calls) EXPECT_FALSE(c.ec) << c.ec.message();
}

// A callback run by process_completions makes a blocking call on the same queue.
TEST_F(AppReaps, ACallbackMayMakeABlockingCall) {
  std::error_code nested_ec{EBUSY, std::generic_category()};
  TestCall& c = new_call(fuse::make_getattr(kRootInode, nullptr));
  c.before_done = [&] {
    fs::SyncCall nested;
    nested.frame = fuse::make_getattr(kRootInode, nullptr);
    session->submit(nested);
    session->wait(nested);
    nested_ec = nested.ec;
  };
  session->submit(c);
  ASSERT_TRUE(loop_until([&] { return is_done(c); }));
  EXPECT_FALSE(nested_ec) << nested_ec.message();
}

TEST_F(AppReaps, AQueueThatDoesNotExistIsAClearError) {
  EXPECT_THROW(session->completion_fd(1), std::system_error);
  EXPECT_THROW(session->process_completions(7), std::system_error);
}

TEST_F(SessionLoopback, CompletionFdNeedsTheMode) {
  start();
  try {
    session->completion_fd(0);
    FAIL() << "no error";
  } catch (const std::system_error& e) {
    EXPECT_NE(std::string(e.what()).find("app_reaps_completions"), std::string::npos) << e.what();
  }
}

// One interrupt for every queue, hiprio's included: the library's thread reaps and hands the
// application's calls over; the fd and process_completions work the same.
TEST_F(SessionLoopback, SharedInterruptWithHiprioHandsCallsOver) {
  LoopbackFsOptions o;
  o.device.request_queues = 2;
  o.device.shared_call_fd = true;
  fs::SessionOptions so = app_session();
  so.num_request_queues = 2;
  start(o, so);
  EXPECT_EQ(session->completion_fd(0), session->completion_fd(1));
  constexpr size_t kCalls = 50;
  for (size_t i = 0; i < kCalls; ++i) session->submit(new_call(fuse::make_getattr(kRootInode, nullptr)));
  const auto deadline = std::chrono::steady_clock::now() + kBound;
  while (recorder.count() < kCalls && std::chrono::steady_clock::now() < deadline)
    if (readable(session->completion_fd(0), 10ms)) session->process_completions(0);
  ASSERT_EQ(recorder.count(), kCalls);
  for (TestCall& c : calls) {
    std::lock_guard lock(recorder.mu);
    EXPECT_EQ(c.ran_on, std::this_thread::get_id());
  }
}

}  // namespace
