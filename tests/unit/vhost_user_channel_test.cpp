// vhost-user reply checks (Channel): each test plays the backend on a socketpair and sends one
// well-formed or malformed reply; the channel must take only the first and refuse the others with
// a precise error, never hang (a short reply timeout bounds every test) and never leak an fd.
#include <gtest/gtest.h>

#include <sys/eventfd.h>

#include <atomic>
#include <chrono>
#include <system_error>
#include <thread>
#include <vector>

#include "vhost_user/channel.hpp"
#include "refusal.hpp"
#include "vhost_user_peer.hpp"

namespace virtiofs::vhost_user {
namespace {

using namespace std::chrono_literals;
using test::Peer;
using virtiofs::test::mentions;
using virtiofs::test::refusal;

constexpr auto kTimeout = 300ms;
// What a loaded 2-core machine (and ASan) may add to a bound before we call it missed.
constexpr auto kSlack = 1500ms;

// Runs `f`, which must throw std::system_error; returns it (a default one when nothing threw).

class VhostUserChannel : public ::testing::Test {
 protected:
  uint64_t receive_u64(Request req = Request::kGetFeatures) {
    uint64_t v = 0;
    channel.receive_reply(req, std::as_writable_bytes(std::span(&v, 1)));
    return v;
  }
  std::system_error refusal_of_u64(Request req = Request::kGetFeatures) {
    return refusal([&] { receive_u64(req); });
  }
  // A well-formed GET_FEATURES reply but for the fds riding on its header or its payload.
  void reply_u64_with_fds(const std::vector<int>& on_header, const std::vector<int>& on_payload) {
    const uint64_t value = 1;
    peer.send_header(static_cast<uint32_t>(Request::kGetFeatures), kVersion | kFlagReply,
                     sizeof(value), on_header);
    peer.send_bytes(std::as_bytes(std::span(&value, 1)), on_payload);
  }
  size_t receive_config(ConfigSpace& config) {
    return channel.receive_reply_upto(Request::kGetConfig,
                                      std::as_writable_bytes(std::span(&config, 1)));
  }

  Peer peer;
  Channel channel{peer.take_frontend_end(), "test-backend", kTimeout};
};

TEST_F(VhostUserChannel, TakesAWellFormedReply) {
  peer.reply(Request::kGetFeatures, uint64_t{0x1234});
  EXPECT_EQ(receive_u64(), 0x1234u);
}

TEST_F(VhostUserChannel, SendsHeaderPayloadAndFds) {
  const uint64_t value = 7;
  const int fd = eventfd(0, EFD_CLOEXEC);
  ASSERT_GE(fd, 0);
  test::UniqueFd owned(fd);
  channel.send(Request::kSetVringCall, kFlagNeedReply, std::as_bytes(std::span(&value, 1)),
               std::span(&fd, 1));
  auto m = peer.receive();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->request(), Request::kSetVringCall);
  EXPECT_EQ(m->header.flags, kVersion | kFlagNeedReply);
  EXPECT_EQ(m->header.size, sizeof(value));
  EXPECT_EQ(m->as<uint64_t>(), 7u);
  EXPECT_EQ(m->fds.size(), 1u);
}

TEST_F(VhostUserChannel, RefusesAReplyToAnotherRequest) {
  peer.reply(Request::kGetQueueNum, uint64_t{2});
  const auto e = refusal_of_u64(Request::kGetFeatures);
  EXPECT_EQ(e.code().value(), EPROTO);
  EXPECT_TRUE(mentions(e, "GET_FEATURES")) << e.what();
  EXPECT_TRUE(mentions(e, "answers GET_QUEUE_NUM (17)")) << e.what();
}

TEST_F(VhostUserChannel, RefusesAReplyWithoutTheReplyFlag) {
  peer.reply(Request::kGetFeatures, uint64_t{1}, kVersion);
  const auto e = refusal_of_u64();
  EXPECT_EQ(e.code().value(), EPROTO);
  EXPECT_TRUE(mentions(e, "reply flag missing")) << e.what();
}

TEST_F(VhostUserChannel, RefusesABadVersion) {
  peer.reply(Request::kGetFeatures, uint64_t{1}, 0x2 | kFlagReply);
  const auto e = refusal_of_u64();
  EXPECT_EQ(e.code().value(), EPROTO);
  EXPECT_TRUE(mentions(e, "version 2")) << e.what();
}

TEST_F(VhostUserChannel, RefusesAPayloadTooShort) {
  peer.reply(Request::kGetFeatures, uint32_t{1});
  const auto e = refusal_of_u64();
  EXPECT_EQ(e.code().value(), EPROTO);
  EXPECT_TRUE(mentions(e, "payload of 4 bytes, expected 8")) << e.what();
}

TEST_F(VhostUserChannel, RefusesAPayloadTooLong) {
  peer.reply(Request::kGetFeatures, VringAddr{});
  const auto e = refusal_of_u64();
  EXPECT_EQ(e.code().value(), EPROTO);
  EXPECT_TRUE(mentions(e, "payload of 40 bytes, expected 8")) << e.what();
}

TEST_F(VhostUserChannel, RefusesAVariableReplyBeyondItsBuffer) {
  peer.send_header(static_cast<uint32_t>(Request::kGetConfig), kVersion | kFlagReply,
                   sizeof(ConfigSpace) + 1);
  ConfigSpace config{};
  const auto e = refusal([&] { receive_config(config); });
  EXPECT_EQ(e.code().value(), EPROTO);
  EXPECT_TRUE(mentions(e, "expected at most")) << e.what();
}

TEST_F(VhostUserChannel, ReturnsTheSizeOfAVariableReply) {
  const uint32_t head[3] = {0, 44, 0};
  peer.send_header(static_cast<uint32_t>(Request::kGetConfig), kVersion | kFlagReply, sizeof(head));
  peer.send_bytes(std::as_bytes(std::span(head)));
  ConfigSpace config{};
  EXPECT_EQ(receive_config(config), sizeof(head));
  EXPECT_EQ(config.size, 44u);
}

// eventfds for a backend to pass in SCM_RIGHTS, closed by the test.
std::vector<test::UniqueFd> eventfds(size_t count) {
  std::vector<test::UniqueFd> fds;
  for (size_t i = 0; i < count; ++i) fds.emplace_back(eventfd(0, EFD_CLOEXEC));
  return fds;
}

std::vector<int> raw(const std::vector<test::UniqueFd>& fds) {
  std::vector<int> out;
  for (const auto& f : fds) out.push_back(f.get());
  return out;
}

// No reply the frontend asks for carries fds: any that come are closed and the reply refused.
TEST_F(VhostUserChannel, ClosesAndRefusesFdsInAReply) {
  const auto sent = eventfds(2);
  const size_t open_before = test::open_fd_count();
  reply_u64_with_fds(raw(sent), {});
  const auto e = refusal_of_u64();
  EXPECT_EQ(e.code().value(), EPROTO);
  EXPECT_TRUE(mentions(e, "file descriptors")) << e.what();
  EXPECT_EQ(test::open_fd_count(), open_before);
}

TEST_F(VhostUserChannel, ClosesFdsSentWithThePayload) {
  const auto sent = eventfds(1);
  const size_t open_before = test::open_fd_count();
  reply_u64_with_fds({}, raw(sent));
  EXPECT_EQ(refusal_of_u64().code().value(), EPROTO);
  EXPECT_EQ(test::open_fd_count(), open_before);
}

// More fds than the channel's control buffer holds: the kernel truncates, none may stay open.
TEST_F(VhostUserChannel, ClosesAndRefusesMoreFdsThanItCanHold) {
  const auto sent = eventfds(3 * kMaxMemTableRegions);
  const size_t open_before = test::open_fd_count();
  reply_u64_with_fds(raw(sent), {});
  const auto e = refusal_of_u64();
  EXPECT_EQ(e.code().value(), EPROTO);
  EXPECT_TRUE(mentions(e, "8 or more file descriptors")) << e.what();
  EXPECT_EQ(test::open_fd_count(), open_before);
}

// The header promises 8 bytes, 4 come and the backend falls silent: the bound still holds.
TEST_F(VhostUserChannel, ASizeLargerThanWhatFollowsTimesOut) {
  peer.send_header(static_cast<uint32_t>(Request::kGetFeatures), kVersion | kFlagReply, 8);
  const uint32_t half = 1;
  peer.send_bytes(std::as_bytes(std::span(&half, 1)));
  const auto start = std::chrono::steady_clock::now();
  const auto e = refusal_of_u64();
  EXPECT_EQ(e.code().value(), ETIMEDOUT);
  EXPECT_LT(std::chrono::steady_clock::now() - start, kTimeout + kSlack);
}

TEST_F(VhostUserChannel, ASizeLargerThanWhatFollowsThenHangUpIsAnError) {
  peer.send_header(static_cast<uint32_t>(Request::kGetConfig), kVersion | kFlagReply, 56);
  const uint32_t part[5] = {0, 44, 0, 0, 0};
  peer.send_bytes(std::as_bytes(std::span(part)));
  peer.hang_up();
  ConfigSpace config{};
  const auto e = refusal([&] { receive_config(config); });
  EXPECT_EQ(e.code().value(), ECONNRESET);
  EXPECT_TRUE(mentions(e, "closed the connection")) << e.what();
}

TEST_F(VhostUserChannel, ASilentBackendTimesOutWithinTheBound) {
  const auto start = std::chrono::steady_clock::now();
  const auto e = refusal_of_u64();
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(e.code().value(), ETIMEDOUT);
  EXPECT_TRUE(mentions(e, "did not reply")) << e.what();
  EXPECT_GE(took, kTimeout);
  EXPECT_LT(took, kTimeout + kSlack);
}

// The bound is for the whole reply: a backend sending a byte now and then, each gap shorter than
// the timeout, must not stretch one reply to (bytes x timeout).
TEST_F(VhostUserChannel, ATricklingBackendTimesOutWithinTheBound) {
  struct Reply {
    Header h{static_cast<uint32_t>(Request::kGetFeatures), kVersion | kFlagReply, 8};
    uint64_t value = 1;
  } __attribute__((packed)) reply;
  const auto bytes = std::as_bytes(std::span(&reply, 1));
  constexpr auto kGap = kTimeout / 4;
  std::jthread trickle([&](std::stop_token stop) {
    for (size_t i = 0; i < bytes.size() && !stop.stop_requested(); ++i) {
      try {
        peer.send_bytes(bytes.subspan(i, 1));
      } catch (const std::exception&) {
        return;  // the channel gave up and closed
      }
      std::this_thread::sleep_for(kGap);
    }
  });
  const auto start = std::chrono::steady_clock::now();
  const auto e = refusal_of_u64();
  EXPECT_EQ(e.code().value(), ETIMEDOUT);
  EXPECT_LT(std::chrono::steady_clock::now() - start, kTimeout + kSlack);
}

TEST_F(VhostUserChannel, DefaultTimeoutIsTheDocumentedFiveSeconds) {
  EXPECT_EQ(Channel::kDefaultReplyTimeout, 5s);
}

TEST_F(VhostUserChannel, AHangUpMidHeaderIsAnError) {
  const uint32_t part = static_cast<uint32_t>(Request::kGetFeatures);
  peer.send_bytes(std::as_bytes(std::span(&part, 1)));
  peer.hang_up();
  const auto e = refusal_of_u64();
  EXPECT_EQ(e.code().value(), ECONNRESET);
}

TEST_F(VhostUserChannel, AHangUpMidPayloadIsAnError) {
  peer.send_header(static_cast<uint32_t>(Request::kGetFeatures), kVersion | kFlagReply, 8);
  const uint16_t part = 1;
  peer.send_bytes(std::as_bytes(std::span(&part, 1)));
  peer.hang_up();
  const auto start = std::chrono::steady_clock::now();
  const auto e = refusal_of_u64();
  EXPECT_EQ(e.code().value(), ECONNRESET);
  EXPECT_LT(std::chrono::steady_clock::now() - start, kTimeout);
}

// After a refused reply the stream's position is unknown (its payload is still there): the
// channel must not read on from it as if a header came next, nor send more requests.
TEST_F(VhostUserChannel, AFailedChannelRefusesFurtherUse) {
  peer.reply(Request::kGetFeatures, uint64_t{1}, kVersion);
  peer.reply(Request::kGetFeatures, uint64_t{2});
  EXPECT_TRUE(mentions(refusal_of_u64(), "reply flag missing"));
  const auto again = refusal_of_u64();
  EXPECT_EQ(again.code().value(), EPROTO);
  EXPECT_TRUE(mentions(again, "failed earlier")) << again.what();
  EXPECT_TRUE(mentions(again, "reply flag missing")) << again.what();
  EXPECT_TRUE(mentions(refusal([&] { channel.send(Request::kGetFeatures, 0, {}); }),
                       "failed earlier"));
  EXPECT_FALSE(peer.receive(0ms));
}

TEST_F(VhostUserChannel, SendingToAGoneBackendIsAnErrorNotASignal) {
  peer.hang_up();
  const auto e = refusal([&] { channel.send(Request::kGetFeatures, 0, {}); });
  EXPECT_EQ(e.code().value(), EPIPE);
  EXPECT_TRUE(mentions(e, "backend gone")) << e.what();
}

}  // namespace
}  // namespace virtiofs::vhost_user
