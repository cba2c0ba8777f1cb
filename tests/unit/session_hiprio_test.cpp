// The hiprio queue: an INTERRUPT that reaches the device before its request is answered EAGAIN
// and sent again (a bounded number of times); FORGETs piling up while hiprio is stalled are
// summed per inode, so what waits is bounded by the inodes held, not by the FORGETs made.
#include <gtest/gtest.h>

#include "fs/hiprio_queue.hpp"
#include "unit/session_fixture.hpp"

using namespace virtiofs;
using namespace virtiofs::test;

namespace {

class Hiprio : public SessionLoopback {
 protected:
  // Both queues stepped, a STATFS (held until interrupted, as a SETLKW would be) published but
  // not yet taken by the device, and an INTERRUPT for it asked for: the INTERRUPT overtakes.
  TestCall* interrupt_before_its_request(bool hold = true) {
    LoopbackFsOptions o;
    if (hold) o.server.hold = FUSE_STATFS;
    start(o);
    auto& dev = loop->device();
    dev.set_stepped(0, true);
    dev.set_stepped(1, true);
    TestCall& call = new_call(fuse::make_statfs(kRootInode));
    session->submit(call);
    if (!dev.wait_available(1, 1, kBound)) return nullptr;
    session->interrupt(call);
    return &call;
  }

  // Takes the next INTERRUPT from hiprio and answers it EAGAIN by hand, as a device that has not
  // seen the request yet must (FUSE: "the request was not found, try again"). False when none
  // came within `timeout`.
  bool answer_next_interrupt_eagain(std::chrono::milliseconds timeout = kBound) {
    auto& dev = loop->device();
    if (!dev.wait_available(0, 1, timeout)) return false;
    std::vector<DeviceChain> chains = dev.take(0, 1);
    EXPECT_EQ(chains.size(), 1u);
    if (chains.empty()) return false;
    const auto header = request_header(chains.front());
    EXPECT_TRUE(header && header->opcode == FUSE_INTERRUPT);
    EXPECT_GE(writable_bytes(chains.front()), sizeof(fuse_out_header))
        << "an INTERRUPT without reply room: the device cannot say EAGAIN";
    if (!header) return false;
    const uint32_t len = scatter(chains.front(), make_reply(header->unique, -EAGAIN));
    dev.complete(0, chains.front().head, len);
    return true;
  }
};

TEST_F(Hiprio, AnInterruptAnsweredEagainIsSentAgainAndEndsTheHeldRequest) {
  TestCall* call = interrupt_before_its_request();
  ASSERT_TRUE(call);
  TestCall& held = *call;
  auto& dev = loop->device();
  ASSERT_TRUE(answer_next_interrupt_eagain()) << "no INTERRUPT was sent";
  if (HasFailure()) return;
  EXPECT_EQ(dev.serve(1), 1u);  // now the request arrives, and is held
  EXPECT_FALSE(is_done(held));

  ASSERT_TRUE(dev.wait_available(0, 1, kBound)) << "the INTERRUPT answered EAGAIN was lost";
  EXPECT_EQ(dev.serve(0), 1u);  // FsServer finds the held request and ends it with EINTR
  ASSERT_TRUE(eventually([&] { return is_done(held); })) << "the interrupted request never ended";
  EXPECT_EQ(held.ec, std::errc::interrupted);
  EXPECT_EQ(session->stats().interrupts_sent, 2u);
}

TEST_F(Hiprio, AnInterruptIsSentAgainABoundedNumberOfTimes) {
  TestCall* call = interrupt_before_its_request();
  ASSERT_TRUE(call);
  TestCall& held = *call;
  unsigned answered = 0;
  // Resends come at the gathering timer's pace (1 ms): 200 ms of silence means they stopped.
  while (answer_next_interrupt_eagain(std::chrono::milliseconds(200)) && !HasFailure()) {
    ++answered;
    ASSERT_LE(answered, 1 + fs::HiprioQueue::kMaxInterruptResends) << "resent without bound";
  }
  EXPECT_EQ(answered, 1 + fs::HiprioQueue::kMaxInterruptResends);
  EXPECT_FALSE(is_done(held)) << "an unmatched INTERRUPT does not end the request by itself";
  loop->device().lose();  // held for ever otherwise: the loss ends it
  ASSERT_TRUE(eventually([&] { return is_done(held); }));
}

// A resent INTERRUPT that the device hands back with nothing written (as virtiofsd does) is
// settled: the EAGAIN of the one before must not send it again.
TEST_F(Hiprio, AnInterruptHandedBackEmptyAfterAnEagainIsNotResent) {
  TestCall* call = interrupt_before_its_request();
  ASSERT_TRUE(call);
  TestCall& held = *call;
  auto& dev = loop->device();
  ASSERT_TRUE(answer_next_interrupt_eagain());
  ASSERT_TRUE(dev.wait_available(0, 1, kBound)) << "not resent after EAGAIN";
  std::vector<DeviceChain> resent = dev.take(0, 1);
  ASSERT_EQ(resent.size(), 1u);
  dev.complete(0, resent.front().head, 0);
  EXPECT_FALSE(dev.wait_available(0, 1, std::chrono::milliseconds(200)))
      << "an INTERRUPT answered with nothing was sent again";
  EXPECT_EQ(session->stats().interrupts_sent, 2u);
  loop->device().lose();
  ASSERT_TRUE(eventually([&] { return is_done(held); }));
}

// The request was answered before its INTERRUPT came back EAGAIN: nothing to interrupt any more,
// so it is not sent again.
TEST_F(Hiprio, AnInterruptWhoseRequestEndedIsNotResent) {
  TestCall* interrupted = interrupt_before_its_request(/*hold=*/false);
  ASSERT_TRUE(interrupted);
  TestCall& call = *interrupted;
  auto& dev = loop->device();
  ASSERT_TRUE(dev.wait_available(0, 1, kBound));
  EXPECT_EQ(dev.serve(1), 1u);
  ASSERT_TRUE(eventually([&] { return is_done(call); }));
  EXPECT_FALSE(call.ec) << "answered before the INTERRUPT was read: its real result";
  ASSERT_TRUE(answer_next_interrupt_eagain());
  EXPECT_FALSE(dev.wait_available(0, 1, std::chrono::milliseconds(200)))
      << "an INTERRUPT was resent for a request that had ended";
  EXPECT_EQ(session->stats().interrupts_sent, 1u);
}

TEST_F(Hiprio, ForgetsPilingUpWhileHiprioIsStalledAreSummedPerInode) {
  constexpr unsigned kInodes = 3;
  constexpr unsigned kForgetsEach = 20000;
  start();
  auto& dev = loop->device();
  dev.set_stepped(0, true);
  for (unsigned i = 0; i < kForgetsEach; ++i)
    for (unsigned n = 0; n < kInodes; ++n) session->forget(1000 + n, 1);
  // Serve hiprio until it stays empty (the gathering timer sends what is left within 1 ms).
  size_t batches = 0;
  while (dev.wait_available(0, 1, std::chrono::milliseconds(200))) batches += dev.serve(0);
  EXPECT_EQ(loop->stat("forget_nlookup"), uint64_t{kInodes} * kForgetsEach) << "FORGETs were lost";
  // Each batch names an inode at most once: what waited was one entry per inode.
  EXPECT_LE(loop->stat("forget_entries"), kInodes * batches);
  EXPECT_LE(batches, 2u * fs::SessionOptions{}.queue_size) << "a batch per FORGET, not per inode";
}

}  // namespace
