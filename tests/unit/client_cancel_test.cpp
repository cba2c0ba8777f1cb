// Cancellation through the Client's stop_tokens, over the loopback device with stepped queues:
// a token stopped before the call sends nothing; without Options::interrupts a stop ends the
// call at once and the device's late reply is dropped, what it handed out given back; with
// them, FUSE_INTERRUPT goes to the device.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <linux/fuse.h>

#include <algorithm>
#include <condition_variable>
#include <functional>
#include <cstring>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "client/connector.hpp"
#include "support/chain_bytes.hpp"
#include "unit/session_fixture.hpp"
#include "virtiofs/client.hpp"

using namespace virtiofs;
using namespace virtiofs::test;
using namespace std::chrono_literals;

namespace {

constexpr auto kQuiet = 200ms;  // how long "nothing more comes" is watched for

// What an asynchronous callback reported, and on which thread.
struct Outcome {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  std::error_code ec;
  std::thread::id thread;
  void set(std::error_code e) {
    std::lock_guard lock(mu);
    ec = e;
    thread = std::this_thread::get_id();
    done = true;
    cv.notify_all();
  }
  bool wait(std::chrono::milliseconds timeout = kBound) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, timeout, [&] { return done; });
  }
};

class CancelFixture : public ::testing::Test {
 protected:
  void start(bool interrupts) {
    loop = std::make_unique<LoopbackFs>();
    Options o;
    o.queue_size = 8;
    o.num_request_queues = 1;
    o.interrupts = interrupts;
    o.registered_memory_bytes = 1 << 20;
    client = client::Connector::over(loop->transport(), o);
    ASSERT_FALSE(client->create(kRootInode, "f", O_RDWR, 0644, file));
    size_t n = 0;
    ASSERT_FALSE(client->write(file.entry.inode, file.file.fh, 0, bytes_of(text), n));
  }
  void TearDown() override {
    if (HasFailure()) loop->device().lose();
    loop->device().set_all_stepped(false);
    client.reset();
  }
  LoopbackDevice& dev() { return loop->device(); }
  std::function<void()> lose() {
    return [this] { loop->device().lose(); };
  }
  // The next request on the stepped request queue, checked to be `opcode`.
  std::optional<DeviceChain> next_request(uint32_t opcode) {
    auto chain = take_one(dev(), 1);
    auto header = chain ? request_header(*chain) : std::nullopt;
    EXPECT_TRUE(header && header->opcode == opcode) << "expected opcode " << opcode;
    return chain;
  }
  void answer(DeviceChain chain) {
    std::vector<DeviceChain> held;
    held.push_back(std::move(chain));
    dev().answer(1, std::move(held));  // FsServer answers it for real
  }

  Outcome outcome;  // outlives the client: a late callback still finds it
  const std::string text = "hello";
  std::unique_ptr<LoopbackFs> loop;
  std::unique_ptr<Client> client;
  Created file;
};

// Both ways a stop can go (Options::interrupts off and on).
class ClientCancel : public CancelFixture, public ::testing::WithParamInterface<bool> {
 protected:
  void SetUp() override { start(GetParam()); }
};
// What only giving calls up (the default) does.
class ClientGiveUp : public CancelFixture {
 protected:
  void SetUp() override { start(false); }
  // Makes the blocking `call` with a token on a thread, takes its request (`opcode`) from the
  // stepped request queue, stops the token and checks the call ended at once with EINTR. The
  // request stays with the test: answer it to play the late reply.
  std::optional<DeviceChain> give_up(uint32_t opcode,
                                     std::function<std::error_code(std::stop_token)> call) {
    dev().set_stepped(1, true);
    std::stop_source stop;
    std::error_code ec;
    JoinedThread caller(lose(), [&] { ec = call(stop.get_token()); });
    auto chain = next_request(opcode);
    if (!chain) return std::nullopt;
    stop.request_stop();
    EXPECT_TRUE(caller.finished_within()) << "the stop did not end the call";
    EXPECT_EQ(ec, std::errc::interrupted);
    return chain;
  }
};

INSTANTIATE_TEST_SUITE_P(Interrupts, ClientCancel, ::testing::Bool(),
                         [](const auto& param_info) { return param_info.param ? "On" : "Off"; });

TEST_P(ClientCancel, ATokenStoppedBeforeTheCallSendsNothing) {
  dev().set_all_stepped(true);
  std::stop_source stop;
  stop.request_stop();
  const uint64_t before = client->stats().requests;
  Attr attr;
  EXPECT_EQ(client->getattr(kRootInode, attr, stop.get_token()), std::errc::interrupted);
  client->lookup(kRootInode, "f", [&](std::error_code ec, Entry) { outcome.set(ec); },
                 stop.get_token());
  ASSERT_TRUE(outcome.wait(0ms)) << "a call that is never sent ends at once";
  EXPECT_EQ(outcome.ec, std::errc::interrupted);
  EXPECT_EQ(outcome.thread, std::this_thread::get_id());
  EXPECT_FALSE(dev().wait_available(1, 1, kQuiet)) << "a request went to the device";
  EXPECT_FALSE(dev().wait_available(0, 1, 0ms)) << "an INTERRUPT went to the device";
  EXPECT_EQ(client->stats().requests, before);
  dev().set_all_stepped(false);
  EXPECT_FALSE(client->getattr(kRootInode, attr));
  EXPECT_FALSE(client->failure());
}

// Without interrupts the caller is released at once; the reply that comes later is dropped, not
// copied into the caller's buffer (which it may already have reused).
TEST_P(ClientCancel, AStopWhileTheDeviceHoldsTheReadEndsTheCallAsOptionsSay) {
  const bool interrupts = GetParam();
  dev().set_all_stepped(true);
  std::stop_source stop;
  std::vector<std::byte> buf(64);
  std::error_code ec;
  size_t got = 0;
  JoinedThread reader(lose(), [&] {
    ec = client->read(file.entry.inode, file.file.fh, 0, buf, got, stop.get_token());
  });
  auto chain = next_request(FUSE_READ);
  ASSERT_TRUE(chain);
  stop.request_stop();
  if (interrupts) {
    ASSERT_TRUE(dev().wait_available(0, 1, kBound)) << "the stop sent no FUSE_INTERRUPT";
    EXPECT_FALSE(reader.finished_within(kQuiet)) << "ended before the device answered";
    answer(std::move(*chain));
    ASSERT_TRUE(reader.finished_within());
    EXPECT_FALSE(ec) << "the device answered the READ: its result counts";
    EXPECT_EQ(got, text.size());
    EXPECT_EQ(dev().serve(0), 1u);
  } else {
    ASSERT_TRUE(reader.finished_within()) << "the stop did not end the call";
    EXPECT_EQ(ec, std::errc::interrupted);
    EXPECT_FALSE(dev().wait_available(0, 1, kQuiet)) << "an INTERRUPT went to the device";
    EXPECT_EQ(client->stats().abandoned, 1u);
    answer(std::move(*chain));  // the late reply
    ASSERT_TRUE(eventually([&] { return client->stats().replies_dropped == 1; }));
    EXPECT_TRUE(std::all_of(buf.begin(), buf.end(), [](std::byte b) { return b == std::byte{0}; }))
        << "the dropped reply was copied into the caller's buffer";
  }
  dev().set_all_stepped(false);
  Attr attr;
  EXPECT_FALSE(client->getattr(file.entry.inode, attr)) << "the session is still healthy";
  EXPECT_FALSE(client->failure());
}

TEST_P(ClientCancel, AnAsyncCallStoppedWhileTheDeviceHoldsItEndsAsOptionsSay) {
  const bool interrupts = GetParam();
  dev().set_all_stepped(true);
  std::stop_source stop;
  static std::vector<std::byte> buf(64);  // outlives any late callback
  client->read(file.entry.inode, file.file.fh, 0, buf,
               [&](std::error_code ec, size_t) { outcome.set(ec); }, stop.get_token());
  auto chain = next_request(FUSE_READ);
  ASSERT_TRUE(chain);
  stop.request_stop();
  if (interrupts) {
    ASSERT_TRUE(dev().wait_available(0, 1, kBound)) << "the stop sent no FUSE_INTERRUPT";
    EXPECT_FALSE(outcome.wait(kQuiet));
    answer(std::move(*chain));
    ASSERT_TRUE(outcome.wait());
    EXPECT_FALSE(outcome.ec);
    dev().serve(0);
  } else {
    ASSERT_TRUE(outcome.wait(0ms)) << "the stop ends the call on the stopping thread, at once";
    EXPECT_EQ(outcome.ec, std::errc::interrupted);
    EXPECT_EQ(outcome.thread, std::this_thread::get_id());
    answer(std::move(*chain));
    ASSERT_TRUE(eventually([&] { return client->stats().replies_dropped == 1; }));
  }
  dev().set_all_stepped(false);
  // The pooled READ call is reused once its stop registration is gone: a stop of the first
  // call's token no longer reaches it.
  const uint64_t abandoned = client->stats().abandoned;
  std::stop_source first, second_stop;
  Outcome a, b;
  client->read(file.entry.inode, file.file.fh, 0, buf, [&](std::error_code ec, size_t) { a.set(ec); },
               first.get_token());
  ASSERT_TRUE(a.wait());
  EXPECT_FALSE(a.ec);
  dev().set_stepped(1, true);
  client->read(file.entry.inode, file.file.fh, 0, buf, [&](std::error_code ec, size_t) { b.set(ec); },
               second_stop.get_token());
  auto held = next_request(FUSE_READ);
  ASSERT_TRUE(held);
  first.request_stop();
  EXPECT_FALSE(b.wait(kQuiet)) << "the first call's token stopped the second";
  answer(std::move(*held));
  ASSERT_TRUE(b.wait());
  EXPECT_FALSE(b.ec);
  EXPECT_EQ(client->stats().abandoned, abandoned);
  EXPECT_FALSE(client->failure());
}

// A LOOKUP given up on still takes a reference on the device when it is answered: the client
// gives it back with FORGET, so cancelling leaks nothing.
TEST_F(ClientGiveUp, AnAbandonedLookupGivesItsReferenceBack) {
  auto chain = give_up(FUSE_LOOKUP, [&](std::stop_token stop) {
    Entry e;
    return client->lookup(kRootInode, "f", e, stop);
  });
  ASSERT_TRUE(chain);
  const auto held = loop->fs().lookups(file.entry.inode);
  ASSERT_TRUE(held);
  answer(std::move(*chain));  // the device counts one more reference ...
  EXPECT_TRUE(eventually([&] { return loop->fs().lookups(file.entry.inode) == *held + 1; }));
  // ... and the client's FORGET takes it back.
  EXPECT_TRUE(eventually([&] { return loop->fs().lookups(file.entry.inode) == *held; }))
      << "the dropped LOOKUP's reference leaked";
}

TEST_F(ClientGiveUp, AnAbandonedCreateReleasesItsHandleThenForgetsItsNode) {
  auto chain = give_up(FUSE_CREATE, [&](std::stop_token stop) {
    Created c;
    return client->create(kRootInode, "g", O_RDWR, 0644, c, stop);
  });
  ASSERT_TRUE(chain);
  answer(std::move(*chain));  // the file is created, open, and its node referenced
  auto release = next_request(FUSE_RELEASE);
  ASSERT_TRUE(release) << "the handle the dropped CREATE gave out was not released";
  const Inode node = request_header(*release)->nodeid;
  ASSERT_TRUE(loop->fs().lookups(node));
  EXPECT_EQ(*loop->fs().lookups(node), 1u) << "the node was forgotten before its handle went";
  answer(std::move(*release));
  EXPECT_TRUE(eventually([&] { return loop->fs().lookups(node).value_or(0) == 0; }))
      << "the dropped CREATE's reference leaked";
  EXPECT_FALSE(client->failure());
}

// A late reply to a call given up on is still the device's word: a malformed one fails it.
TEST_F(ClientGiveUp, AMalformedReplyToAnAbandonedCallFailsTheDevice) {
  auto chain = give_up(FUSE_LOOKUP, [&](std::stop_token stop) {
    Entry e;
    return client->lookup(kRootInode, "f", e, stop);
  });
  ASSERT_TRUE(chain);
  // A success header whose length claims more than the device wrote.
  fuse_out_header bad{};
  bad.len = 4096;
  bad.unique = request_header(*chain)->unique;
  const uint32_t len = scatter(*chain, std::as_bytes(std::span(&bad, 1)));
  dev().complete(1, chain->head, len);
  EXPECT_TRUE(eventually([&] { return client->failure() == std::errc::io_error; }));
}

// READDIRPLUS entries and a waiting lock cannot be given back once dropped: a stop waits for
// the device's answer instead.
TEST_F(ClientGiveUp, AStoppedReaddirplusWaitsForItsAnswer) {
  OpenFile dir;
  ASSERT_FALSE(client->opendir(kRootInode, dir));
  dev().set_stepped(1, true);
  std::stop_source stop;
  std::error_code ec;
  std::vector<std::pair<DirEntry, Entry>> entries;
  JoinedThread caller(lose(), [&] {
    ec = client->readdirplus(kRootInode, dir.fh, 0, entries, stop.get_token());
  });
  auto chain = next_request(FUSE_READDIRPLUS);
  ASSERT_TRUE(chain);
  stop.request_stop();
  EXPECT_FALSE(caller.finished_within(kQuiet)) << "the READDIRPLUS was given up";
  answer(std::move(*chain));
  ASSERT_TRUE(caller.finished_within());
  // The device's own answer reached the caller (this test device has no READDIRPLUS: ENOSYS).
  EXPECT_EQ(ec, std::errc::function_not_supported) << ec.message();
  EXPECT_EQ(client->stats().abandoned, 0u);
}

TEST_F(ClientGiveUp, AnAbandonedOpenReleasesItsHandle) {
  auto chain = give_up(FUSE_OPEN, [&](std::stop_token stop) {
    OpenFile f;
    return client->open(file.entry.inode, O_RDONLY, f, stop);
  });
  ASSERT_TRUE(chain);
  const uint64_t releases = loop->stat("opcode release");
  answer(std::move(*chain));
  auto release = next_request(FUSE_RELEASE);
  ASSERT_TRUE(release) << "the handle the dropped OPEN gave out was not released";
  EXPECT_EQ(request_header(*release)->nodeid, file.entry.inode);
  answer(std::move(*release));
  EXPECT_TRUE(eventually([&] { return loop->stat("opcode release") == releases + 1; }));
  EXPECT_FALSE(client->failure());
}

// The device writes a READ into an IoBuffer in place: the call cannot be given up while it
// may, so it ends with the device's answer.
TEST_F(ClientGiveUp, AReadIntoAnIoBufferWaitsForTheDeviceWhatever) {
  IoBuffer io = client->allocate_buffer(4096);
  dev().set_all_stepped(true);
  std::stop_source stop;
  std::error_code ec;
  size_t got = 0;
  JoinedThread reader(lose(), [&] {
    ec = client->read(file.entry.inode, file.file.fh, 0, io.span(), got, stop.get_token());
  });
  auto chain = next_request(FUSE_READ);
  ASSERT_TRUE(chain);
  stop.request_stop();
  EXPECT_FALSE(reader.finished_within(kQuiet)) << "the call ended while the device may write the buffer";
  answer(std::move(*chain));
  ASSERT_TRUE(reader.finished_within());
  EXPECT_FALSE(ec);
  ASSERT_EQ(got, text.size());
  EXPECT_EQ(std::memcmp(io.data(), text.data(), text.size()), 0);
  EXPECT_EQ(client->stats().abandoned, 0u);
}

// Shutdown waits for what the device still holds, abandoned calls included; the dropped reply
// that makes the queue idle must end that wait at once, not at the device timeout.
TEST_F(ClientGiveUp, ShutdownHearsTheLastDroppedReply) {
  dev().set_stepped(1, true);
  std::stop_source stop;
  std::error_code ec;
  std::vector<std::byte> buf(64);
  {
    JoinedThread reader(lose(), [&] {
      size_t got = 0;
      ec = client->read(file.entry.inode, file.file.fh, 0, buf, got, stop.get_token());
    });
    auto read = next_request(FUSE_READ);
    ASSERT_TRUE(read);
    stop.request_stop();
    ASSERT_TRUE(reader.finished_within());
    EXPECT_EQ(ec, std::errc::interrupted);
    JoinedThread closer(lose(), [&] { client->close(); });
    auto destroy = next_request(FUSE_DESTROY);
    ASSERT_TRUE(destroy);
    answer(std::move(*destroy));
    EXPECT_FALSE(closer.finished_within(kQuiet)) << "shutdown did not wait for the device";
    answer(std::move(*read));
    EXPECT_TRUE(closer.finished_within(1s)) << "the dropped reply did not end shutdown's wait";
  }
}

}  // namespace
