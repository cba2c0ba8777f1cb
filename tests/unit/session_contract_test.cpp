// What the session promises its callers, each shown with a stepped loopback device so that the
// interleaving is the test's, not the scheduler's: interrupts that lose to the reply, a caller
// that polls for its own reply, device loss with calls parked, hiprio when it is full, FORGET
// after DESTROY, malformed error replies and which thread completes what.
#include <gtest/gtest.h>

#include <linux/fuse.h>

#include <array>
#include <cerrno>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "fuse/ops.hpp"
#include "support/chain_bytes.hpp"
#include "unit/session_fixture.hpp"

using namespace virtiofs;
using namespace virtiofs::test;

namespace {

class SessionContract : public SessionLoopback {
 protected:
  // Submits `per_queue` calls from each of `queues` fresh threads (the session deals fresh
  // threads out to the queues in turn) and returns, per queue, the threads that completed them.
  std::map<unsigned, std::set<std::thread::id>> completers(unsigned queues, size_t per_queue,
                                                           std::set<std::thread::id>& submitters) {
    const size_t first = calls.size();
    for (unsigned q = 0; q < queues; ++q) {
      std::thread submitter([&] {
        for (size_t i = 0; i < per_queue; ++i)
          session->submit(new_call(fuse::make_getattr(kRootInode, nullptr)));
      });
      submitters.insert(submitter.get_id());
      submitter.join();
    }
    std::map<unsigned, std::set<std::thread::id>> by_queue;
    if (!recorder.wait_count(first + queues * per_queue)) return by_queue;
    std::lock_guard lock(recorder.mu);
    for (size_t i = first; i < calls.size(); ++i) by_queue[calls[i].queue_index].insert(calls[i].ran_on);
    return by_queue;
  }
  // Submits n calls that the stepped queue 1 holds and interrupts each: n INTERRUPTs for hiprio.
  void interrupt_held_calls(size_t n) {
    std::vector<TestCall*> held;
    for (size_t i = 0; i < n; ++i) {
      held.push_back(&new_call(fuse::make_getattr(kRootInode, nullptr)));
      session->submit(*held.back());
    }
    ASSERT_EQ(loop->device().available(1), n);
    for (TestCall* c : held) session->interrupt(*c);
  }
  // Answers the next request of the stepped queue 1 with ENOENT followed by eight bytes: error
  // replies carry nothing, so the reply is malformed.
  void answer_error_with_payload() {
    auto chain = take_one(loop->device(), 1);
    ASSERT_TRUE(chain);
    auto header = request_header(*chain);
    ASSERT_TRUE(header);
    const std::array<std::byte, 8> payload{};
    const uint32_t len = scatter(*chain, make_reply(header->unique, -ENOENT, payload));
    loop->device().complete(1, chain->head, len);
  }
};

// Room on a stepped queue_size-8 request queue with INDIRECT_DESC: one descriptor per call.
constexpr size_t kRoom = 8;

// A SyncCall that remembers the thread its completion ran on.
struct WhereDone : fs::SyncCall {
  std::atomic<std::thread::id> ran_on{};
  void (*signal)(fs::Call&) = nullptr;
  WhereDone() {
    signal = on_done;
    on_done = [](fs::Call& c) {
      auto& w = static_cast<WhereDone&>(c);
      w.ran_on.store(std::this_thread::get_id());
      w.signal(c);  // last: the waiter may destroy the call once it is signalled
    };
  }
};

// Holds whichever thread enters it until released (bounded, so a broken test still ends).
// Shared with the call whose on_done holds, so it outlives a thread still leaving hold().
struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  bool entered = false, released = false;
  std::thread::id holder;

  bool wait_entered() {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, kBound, [&] { return entered; });
  }
  void release() {
    std::lock_guard lock(mu);
    released = true;
    cv.notify_all();
  }
  void hold() {
    std::unique_lock lock(mu);
    entered = true;
    holder = std::this_thread::get_id();
    cv.notify_all();
    cv.wait_for(lock, 4 * kBound, [&] { return released; });
  }
};

// ---- interrupt ----

// The device answered the request before it looked at the INTERRUPT: the answer stands.
TEST_F(SessionContract, InterruptedCallTheDeviceAnswersEndsWithItsRealResult) {
  start();
  auto& dev = loop->device();
  dev.set_stepped(0, true);
  dev.set_stepped(1, true);
  const size_t first = calls.size();
  TestCall& call = new_call(fuse::make_getattr(kRootInode, nullptr));
  session->submit(call);
  auto held = take_one(dev, 1);
  ASSERT_TRUE(held);

  session->interrupt(call);
  ASSERT_TRUE(dev.wait_available(0, 1, kBound)) << "no FUSE_INTERRUPT for a call the device holds";
  EXPECT_EQ(recorder.count(), first) << "the interrupt ended the call before the device did";
  std::vector<DeviceChain> answered;
  answered.push_back(std::move(*held));
  dev.answer(1, std::move(answered));
  ASSERT_TRUE(recorder.wait_count(first + 1));
  EXPECT_FALSE(call.ec) << call.ec.message();
  Attr attr;
  ASSERT_FALSE(fuse::parse(call.reply, attr));
  EXPECT_EQ(attr.ino, kRootInode);
  EXPECT_EQ(dev.serve(0), 1u) << "the INTERRUPT, handed back unanswered";
}

// Interrupting a call that has already ended sends nothing and changes nothing.
TEST_F(SessionContract, InterruptAfterTheReplyKeepsTheResultAndSendsNothing) {
  start();
  auto& dev = loop->device();
  dev.set_stepped(0, true);
  TestCall& call = run(fuse::make_getattr(kRootInode, nullptr));
  ASSERT_FALSE(call.ec);
  const uint64_t sent = session->stats().interrupts_sent;
  session->interrupt(call);
  EXPECT_EQ(dev.available(0), 0u);  // an INTERRUPT goes to the ring before interrupt() returns
  EXPECT_EQ(session->stats().interrupts_sent, sent);
  EXPECT_FALSE(call.ec) << call.ec.message();
  Attr attr;
  ASSERT_FALSE(fuse::parse(call.reply, attr));
  EXPECT_EQ(attr.ino, kRootInode);
}

// ---- a caller polling for its reply (poll_us) ----

// With every queue on one call fd no caller sleeps on the interrupt, so while the only
// completion thread is stuck in a callback, a reply can reach its caller only through the
// caller's own polling.
TEST_F(SessionContract, PollingCallerTakesItsOwnReplyWhileTheCompletionThreadIsBusy) {
  LoopbackFsOptions o;
  o.device.shared_call_fd = true;
  fs::SessionOptions so = small_session();
  so.poll_us = 250'000;  // far longer than the test takes to answer
  start(o, so);
  auto& dev = loop->device();

  auto gate = std::make_shared<Gate>();
  TestCall& blocker = new_call(fuse::make_getattr(kRootInode, nullptr));
  blocker.before_done = [gate] { gate->hold(); };
  session->submit(blocker);
  struct Release {
    Gate& g;
    ~Release() { g.release(); }
  } release{*gate};
  ASSERT_TRUE(gate->wait_entered()) << "the blocker's reply never came";
  ASSERT_NE(gate->holder, std::this_thread::get_id());

  dev.set_stepped(1, true);
  WhereDone call;
  call.frame = fuse::make_getattr(kRootInode, nullptr);
  JoinedThread caller([&] { gate->release(); dev.lose(); }, [&] {
    session->submit(call);
    session->wait(call);
  });
  ASSERT_TRUE(dev.wait_available(1, 1, kBound));
  EXPECT_EQ(dev.serve(1), 1u);
  ASSERT_TRUE(caller.finished_within()) << "the reply waited for the completion thread";
  EXPECT_EQ(call.ran_on.load(), caller.id()) << "on_done ran on the caller's thread";
  EXPECT_FALSE(call.ec) << call.ec.message();
  {
    std::lock_guard lock(gate->mu);
    EXPECT_FALSE(gate->released) << "the completion thread was held throughout";
  }
}

// While a caller polls (interrupts off), the device must see that it need not interrupt, and
// it does not for the reply the caller takes.
TEST_F(SessionContract, DeviceNeedNotInterruptWhileACallerPolls) {
  fs::SessionOptions so = small_session();
  so.poll_us = 250'000;
  start({}, so);
  auto& dev = loop->device();
  dev.set_stepped(1, true);
  fs::SyncCall call;
  call.frame = fuse::make_getattr(kRootInode, nullptr);
  JoinedThread caller([&] { dev.lose(); }, [&] {
    session->submit(call);
    session->wait(call);
  });
  ASSERT_TRUE(dev.wait_available(1, 1, kBound));
  ASSERT_TRUE(eventually([&] { return !dev.wants_interrupt(1); }))
      << "interrupts stayed on while the caller polls";
  const uint64_t signalled = dev.interrupts_signalled(1);
  EXPECT_EQ(dev.serve(1), 1u);
  ASSERT_TRUE(caller.finished_within());
  EXPECT_FALSE(call.ec) << call.ec.message();
  EXPECT_EQ(dev.interrupts_signalled(1), signalled) << "the device interrupted a polling driver";
}

// ---- device loss ----

TEST_F(SessionContract, LostDeviceFailsParkedCallsToo) {
  constexpr size_t kParked = 3;
  start();
  auto& dev = loop->device();
  dev.set_stepped(1, true);
  const size_t first = calls.size();
  const uint64_t waits_before = session->stats().waits;
  for (size_t i = 0; i < kRoom + kParked; ++i) new_call(fuse::make_getattr(kRootInode, nullptr));
  // From another thread: a submit that blocks on the full ring instead of parking fails the
  // test rather than hanging it.
  JoinedThread submitter([&] { dev.lose(); }, [&] {
    for (size_t i = 0; i < kRoom + kParked; ++i) session->submit(calls[first + i]);
  });
  ASSERT_TRUE(submitter.finished_within()) << "submit() blocked on a full ring";
  ASSERT_EQ(dev.available(1), kRoom);
  ASSERT_EQ(session->stats().waits - waits_before, kParked) << "the last calls must be parked";

  dev.lose();
  ASSERT_TRUE(recorder.wait_count(first + kRoom + kParked)) << "calls outlived the device";
  for (size_t i = 0; i < kRoom + kParked; ++i)
    EXPECT_EQ(calls[first + i].ec, std::errc::not_connected) << (i < kRoom ? "in flight " : "parked ") << i;
}

// ---- hiprio: FORGET and INTERRUPT when it is full ----

// A BATCH_FORGET is tried as soon as a batch fills (509 entries, docs/architecture.md), so the
// attempt below happens inside forget(), not on a timer.
constexpr size_t kFullBatch = 509;

// Without INDIRECT_DESC an INTERRUPT (request + reply room) takes two descriptors, so four of
// them use up an 8-entry hiprio ring while hiprio calls are still free: a full batch then finds
// no descriptors. It must wait for room, not be dropped.
TEST_F(SessionContract, ForgetBatchThatFindsNoDescriptorsWaitsForRoom) {
  constexpr size_t kInterrupted = 4;
  LoopbackFsOptions o;
  o.device.features = virtio::feature::kVersion1 | virtio::feature::kRingEventIdx;
  start(o);
  auto& dev = loop->device();
  dev.set_stepped(0, true);
  dev.set_stepped(1, true);
  ASSERT_NO_FATAL_FAILURE(interrupt_held_calls(kInterrupted));
  ASSERT_EQ(dev.available(0), kInterrupted) << "the INTERRUPTs fill hiprio's descriptors";

  for (size_t i = 0; i < kFullBatch; ++i) session->forget(1000 + i, 1);
  EXPECT_EQ(dev.available(0), kInterrupted) << "no room yet for the batch";
  // Handing the INTERRUPTs back frees descriptors: the batch follows.
  ASSERT_TRUE(eventually([&] {
    dev.serve(0);
    return loop->stat("forget_entries") == kFullBatch;
  })) << "FORGET entries reached the device: " << loop->stat("forget_entries");
  EXPECT_EQ(session->stats().forgets, kFullBatch);
  dev.serve(1);  // the interrupted calls end with their real results
}

// Hiprio full of FORGET batches: INTERRUPTs and more FORGETs queue behind them and all reach
// the device once it hands slots back.
TEST_F(SessionContract, FullHiprioKeepsInterruptsAndForgetsUntilRoomAppears) {
  constexpr size_t kHiprioSlots = 8;
  constexpr size_t kInterrupted = 3;
  start();
  auto& dev = loop->device();
  dev.set_stepped(0, true);
  dev.set_stepped(1, true);
  uint64_t nlookup = 0;
  for (size_t i = 0; i < kHiprioSlots; ++i) {
    session->forget(100 + i, 1);
    ++nlookup;
    ASSERT_TRUE(dev.wait_available(0, i + 1, kBound)) << "batch " << i;  // after its gathering
  }
  ASSERT_NO_FATAL_FAILURE(interrupt_held_calls(kInterrupted));
  for (size_t i = 0; i < 2; ++i) {
    session->forget(200 + i, 5);
    nlookup += 5;
  }
  EXPECT_EQ(dev.available(0), kHiprioSlots) << "nothing more fits";
  EXPECT_EQ(session->stats().interrupts_sent, 0u);

  ASSERT_TRUE(eventually([&] {
    dev.serve(0);
    return loop->stat("interrupts") == kInterrupted && loop->stat("forget_nlookup") == nlookup;
  })) << "INTERRUPTs seen " << loop->stat("interrupts") << ", FORGET nlookup "
      << loop->stat("forget_nlookup") << " of " << nlookup;
  EXPECT_EQ(session->stats().interrupts_sent, kInterrupted);
  dev.serve(1);
}

// After DESTROY the device holds no inodes: FORGETs are dropped, even a full batch.
TEST_F(SessionContract, ForgetsAfterDestroyAreDroppedNotSent) {
  start();
  auto& dev = loop->device();
  dev.set_stepped(0, true);
  dev.set_stepped(1, true);
  JoinedThread closer([&] { dev.lose(); }, [&] { session->shutdown(); });
  auto destroy = take_one(dev, 1);
  ASSERT_TRUE(destroy) << "no DESTROY";
  auto header = request_header(*destroy);
  ASSERT_TRUE(header);
  ASSERT_EQ(header->opcode, FUSE_DESTROY);

  for (size_t i = 0; i < kFullBatch; ++i) session->forget(1000 + i, 1);
  EXPECT_EQ(dev.available(0), 0u) << "a FORGET batch followed DESTROY";
  EXPECT_EQ(session->stats().forgets, 0u);
  std::vector<DeviceChain> answered;
  answered.push_back(std::move(*destroy));
  dev.answer(1, std::move(answered));
  ASSERT_TRUE(closer.finished_within());
  EXPECT_EQ(loop->stat("forget_entries"), 0u);
}

// ---- malformed replies ----

TEST_F(SessionContract, ErrorReplyCarryingAPayloadFailsTheSessionWithEio) {
  start();
  loop->device().set_stepped(1, true);
  const size_t first = calls.size();
  TestCall& call = new_call(fuse::make_getattr(kRootInode, nullptr));
  session->submit(call);
  ASSERT_NO_FATAL_FAILURE(answer_error_with_payload());
  ASSERT_TRUE(recorder.wait_count(first + 1));
  EXPECT_EQ(call.ec, std::errc::io_error);
  EXPECT_EQ(session->failure(), std::errc::io_error);
}

// The call that carried the malformed reply already finds the session failed: nothing its
// callback or its woken caller submits reaches the broken device.
TEST_F(SessionContract, CallEndedByAMalformedReplyFindsTheSessionFailed) {
  start();
  loop->device().set_stepped(1, true);
  const size_t first = calls.size();
  TestCall& call = new_call(fuse::make_getattr(kRootInode, nullptr));
  auto seen = std::make_shared<std::error_code>();  // outlives the test body with the call
  call.before_done = [this, seen] { *seen = session->failure(); };
  session->submit(call);
  ASSERT_NO_FATAL_FAILURE(answer_error_with_payload());
  ASSERT_TRUE(recorder.wait_count(first + 1));
  EXPECT_EQ(call.ec, std::errc::io_error);
  EXPECT_EQ(*seen, std::errc::io_error) << "on_done ran before the session was marked failed";
}

// ---- completion threads ----

TEST_F(SessionContract, EachCallFdHasItsOwnCompletionThread) {
  constexpr unsigned kQueues = 3;
  LoopbackFsOptions o;
  o.device.request_queues = kQueues;
  start(o, small_session(8, kQueues));
  std::set<std::thread::id> submitters;
  const auto by_queue = completers(kQueues, 4, submitters);
  ASSERT_EQ(by_queue.size(), kQueues) << "every queue carried calls";
  std::set<std::thread::id> all;
  for (const auto& [queue, threads] : by_queue) {
    EXPECT_EQ(threads.size(), 1u) << "queue " << queue << " is completed by one thread";
    all.insert(threads.begin(), threads.end());
  }
  EXPECT_EQ(all.size(), kQueues) << "a thread per call fd";
  for (const auto& id : all) EXPECT_FALSE(submitters.count(id)) << "a submitter completed a call";
}

TEST_F(SessionContract, SharedCallFdHasOneCompletionThread) {
  constexpr unsigned kQueues = 3;
  LoopbackFsOptions o;
  o.device.request_queues = kQueues;
  o.device.shared_call_fd = true;
  start(o, small_session(8, kQueues));
  std::set<std::thread::id> submitters;
  const auto by_queue = completers(kQueues, 4, submitters);
  ASSERT_EQ(by_queue.size(), kQueues) << "every queue carried calls";
  std::set<std::thread::id> all;
  for (const auto& [queue, threads] : by_queue) all.insert(threads.begin(), threads.end());
  EXPECT_EQ(all.size(), 1u) << "one interrupt source, one completion thread";
  EXPECT_FALSE(submitters.count(*all.begin()));
}

}  // namespace
