// File::close as the kernel's FUSE on /dev/fuse: it waits for FLUSH but not for RELEASE, whose error it does not
// report; the node is forgotten only after its handle is released, and Client::close waits for
// the RELEASEs still pending so that they and their FORGETs reach the device before DESTROY.
// Over the in-process loopback device, whose MemFs counts lookups and requests.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <linux/fuse.h>

#include <future>
#include <optional>

#include "client/connector.hpp"
#include "client/open_device.hpp"
#include "unit/session_fixture.hpp"
#include "virtiofs/client.hpp"

using namespace virtiofs;
using namespace virtiofs::test;

namespace {

class FileClose : public ::testing::Test {
 protected:
  // RELEASE held by the device for hold_ms (0: until the device is lost; nullopt: not held).
  void connect(std::optional<unsigned> hold_ms, std::vector<std::string> faults = {},
               bool app_reaps = false,
               std::optional<std::chrono::milliseconds> device_timeout = std::nullopt) {
    LoopbackFsOptions d;
    if (hold_ms) {
      d.server.hold = FUSE_RELEASE;
      d.server.hold_ms = *hold_ms;
    }
    d.faults = std::move(faults);
    loop = std::make_unique<LoopbackFs>(d);
    Options o;
    o.queue_size = 8;
    o.num_request_queues = 1;
    o.lookup_accounting = LookupAccounting::kOn;
    o.app_reaps_completions = app_reaps;
    // The File's own lookup reference is what these tests follow: with the path cache a File
    // pins the cache's (path_cache_test.cpp covers that).
    o.path_cache_entries = 0;
    auto device = client::settle_device(loop->transport(), o);
    if (device_timeout) device.session.device_timeout = *device_timeout;
    client = client::Connector::start(std::move(device), o);
  }
  void TearDown() override {
    if (HasFailure() && loop) loop->device().lose();  // nothing left waiting on a held call
    client.reset();
    loop.reset();
  }
  std::unique_ptr<LoopbackFs> loop;
  std::unique_ptr<Client> client;
};

// A RELEASE the device never answers: close(2) would not wait for it, neither does File::close
// (which waited for it, failing the session at the device timeout). The node is not forgotten
// while its handle is open.
TEST_F(FileClose, ReturnsWithoutWaitingForRelease) {
  connect(/*hold_ms=*/0);
  File f;
  ASSERT_FALSE(client->open_file("f", O_CREAT | O_WRONLY, f));
  const Inode ino = f.inode();
  auto closing = std::async(std::launch::async, [&] { return f.close(); });
  if (closing.wait_for(kBound) != std::future_status::ready) {
    loop->device().lose();  // ends the held RELEASE, so that close returns
    ADD_FAILURE() << "File::close waited for the RELEASE";
  }
  EXPECT_FALSE(closing.get());
  EXPECT_FALSE(f.is_open());
  EXPECT_FALSE(client->failure());
  EXPECT_EQ(loop->stat("opcode flush"), 1u) << "FLUSH is waited for";
  EXPECT_EQ(loop->fs().lookups(ino), 1u) << "forgotten before its handle was released";
  // The release ends (ENOTCONN) when the device goes: Client::close does not wait past it.
  loop->device().lose();
  client->close();
}

// RELEASE answered late: Client::close waits for it and the FORGET its reply sends, so the
// device saw both before DESTROY (after DESTROY a FORGET is dropped): every lookup given back.
TEST_F(FileClose, ClientCloseWaitsForPendingReleasesBeforeDestroy) {
  connect(/*hold_ms=*/500);
  Inode ino[2];
  for (int i = 0; i < 2; ++i) {
    File f;
    ASSERT_FALSE(client->open_file(i ? "b" : "a", O_CREAT | O_RDWR, f));
    ino[i] = f.inode();
    EXPECT_FALSE(f.close());
  }
  EXPECT_FALSE(client->failure());
  client->close();
  EXPECT_EQ(loop->stat("opcode release"), 2u);
  EXPECT_EQ(loop->stat("opcode destroy"), 1u);
  for (Inode i : ino) EXPECT_EQ(loop->fs().lookups(i), 0u) << "inode " << i << " leaked";
}

// A failed RELEASE is no error of close's (close(2) cannot report it either); the node is still
// forgotten.
TEST_F(FileClose, AFailedReleaseIsNotReported) {
  connect(/*hold_ms=*/0, {"error=-5@release"});
  File f;
  ASSERT_FALSE(client->open_file("f", O_CREAT | O_RDONLY, f));
  const Inode ino = f.inode();
  EXPECT_FALSE(f.close());
  EXPECT_TRUE(eventually([&] { return loop->fs().lookups(ino) == 0u; }));
  EXPECT_FALSE(client->failure());
}

// Where the application reaps completions, a callback runs only when it reaps: File::close
// waits for RELEASE there and forgets the node itself, with no reaping by the application.
TEST_F(FileClose, WaitsForReleaseWhereTheApplicationReaps) {
  connect(/*hold_ms=*/std::nullopt, {}, /*app_reaps=*/true);
  File f;
  ASSERT_FALSE(client->open_file("f", O_CREAT | O_RDONLY, f));
  const Inode ino = f.inode();
  EXPECT_FALSE(f.close());
  EXPECT_TRUE(eventually([&] { return loop->fs().lookups(ino) == 0u; }))
      << "the node's FORGET waits for a callback nobody runs";
}

// A RELEASE the device never answers: Client::close waits for it and then shuts the session
// down (DESTROY, the drain) within one device timeout together, not one each (it took twice).
TEST_F(FileClose, ClientCloseKeepsToOneDeviceTimeout) {
  using namespace std::chrono;
  constexpr auto kTimeout = 1000ms;
  connect(/*hold_ms=*/0, {}, false, kTimeout);
  File f;
  ASSERT_FALSE(client->open_file("f", O_CREAT | O_RDONLY, f));
  EXPECT_FALSE(f.close());
  const auto t0 = steady_clock::now();
  client->close();
  const auto took = duration_cast<milliseconds>(steady_clock::now() - t0);
  // The RELEASE used the whole bound: DESTROY goes without waiting for its answer.
  EXPECT_LT(took, kTimeout * 3 / 2) << "Client::close took " << took.count() << " ms";
}

// Client::close inside a callback is refused at once with EDEADLK, as the session's shutdown
// is: it used to wait for the pending RELEASE first, whose reply this very thread must reap.
TEST_F(FileClose, ClientCloseFromACallbackFailsAtOnce) {
  connect(/*hold_ms=*/0);  // the RELEASE stays pending until the device goes
  File f;
  ASSERT_FALSE(client->open_file("f", O_CREAT | O_RDONLY, f));
  EXPECT_FALSE(f.close());
  std::promise<std::error_code> refused;
  client->getattr(kRootInode, [&](std::error_code, Attr) {
    try {
      client->close();
      refused.set_value({});
    } catch (const std::system_error& e) {
      refused.set_value(e.code());
    }
  });
  auto got = refused.get_future();
  if (got.wait_for(kBound) != std::future_status::ready) {
    loop->device().lose();  // ends the held RELEASE, so that the callback returns
    ADD_FAILURE() << "Client::close in a callback waited";
  }
  EXPECT_EQ(got.get(), std::errc::resource_deadlock_would_occur);
  loop->device().lose();
  client->close();
}

// The node's FORGET reaches the device only after RELEASE's reply, never while the RELEASE is
// still with it (the device may drop the node its open handle needs).
TEST_F(FileClose, ForgetsOnlyAfterReleasesReply) {
  connect(/*hold_ms=*/300);
  File f;
  ASSERT_FALSE(client->open_file("f", O_CREAT | O_RDONLY, f));
  const Inode ino = f.inode();
  EXPECT_FALSE(f.close());
  client->close();  // waits for the RELEASE and the FORGET its reply sends
  EXPECT_EQ(loop->stat("opcode release"), 1u);
  EXPECT_EQ(loop->fs().lookups(ino), 0u);
  EXPECT_EQ(loop->stat("forgets_while_held"), 0u) << "FORGET sent before RELEASE's reply";
}

}  // namespace
