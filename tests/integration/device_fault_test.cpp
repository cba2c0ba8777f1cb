// A device that breaks the protocol, made to do so by the test backend's fault plan: every
// malformed thing it can write marks the session broken, pending requests fail with EIO, later
// calls fail fast, and nothing is read out of bounds (run under ASan too).
#include <fcntl.h>

#include <future>

#include "integration/fixture.hpp"
#include "support/test_backend_process.hpp"

using namespace virtiofs;
using namespace virtiofs::test;
using namespace std::chrono_literals;

namespace {

struct FaultCase {
  const char* fault;    // the backend's fault kind
  const char* trigger;  // the opcode it strikes
};

std::string case_name(const ::testing::TestParamInfo<FaultCase>& info) {
  return fault_test_name(info.param.fault);
}

}  // namespace

class ProtocolViolation : public ::testing::TestWithParam<FaultCase> {};

TEST_P(ProtocolViolation, BreaksTheSessionFailsPendingWithEIOAndLaterCallsFast) {
  const FaultCase fc = GetParam();
  // READs are held by the device, so some requests are pending when the fault strikes.
  TestBackend backend({"--queues", "2", "--hold", "read", "--fault",
                       std::string(fc.fault) + "@" + fc.trigger});
  Options o;
  o.socket_path = backend.socket_path();
  o.num_request_queues = 1;  // the pending reads and the faulty reply share a ring
  auto client = Client::connect(o);
  ASSERT_FALSE(client->write_file("f", bytes(std::string("contents"))));
  ASSERT_FALSE(client->mkdir("d"));
  File file;
  ASSERT_FALSE(client->open_file("f", O_RDONLY, file));

  Countdown pending(3);
  std::vector<std::string> bufs(3, std::string(64, '\0'));
  for (auto& b : bufs)
    client->read(file.inode(), file.handle(), 0, std::as_writable_bytes(std::span(b)),
                 [&](std::error_code ec, size_t) { pending.done(ec); });
  std::this_thread::sleep_for(50ms);

  // The request the fault strikes: it may complete (the bad element can come after its own)
  // but the session must be broken afterwards.
  std::error_code ec;
  if (std::string(fc.trigger) == "readdir") {
    std::vector<DirEntry> list;
    ec = client->list_dir("/", list);
  } else {
    StatFs st;
    ec = client->statfs(kRootInode, st);
  }
  ASSERT_TRUE(pending.wait(1s)) << "pending reads must end when the device breaks";
  for (auto e : pending.errors) EXPECT_EQ(e, std::errc::io_error) << e.message();
  EXPECT_EQ(client->failure(), std::errc::io_error) << "triggering call: " << ec.message();

  const auto t0 = std::chrono::steady_clock::now();
  Attr a;
  EXPECT_EQ(client->stat("f", a), std::errc::io_error);
  std::string text;
  EXPECT_EQ(client->read_file("f", text), std::errc::io_error);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 100ms) << "later calls must fail fast";
  file = File();
  client.reset();  // closing a broken client must not hang either
}

INSTANTIATE_TEST_SUITE_P(
    Device, ProtocolViolation,
    ::testing::Values(FaultCase{"used-id-out-of-range", "statfs"},
                      FaultCase{"used-id-not-in-flight", "statfs"},
                      FaultCase{"double-completion", "statfs"},
                      FaultCase{"used-len-beyond-buffer", "statfs"},
                      FaultCase{"used-idx-jump", "statfs"},
                      FaultCase{"header-len-mismatch", "statfs"},
                      FaultCase{"unknown-unique", "statfs"},
                      FaultCase{"error-out-of-range", "statfs"},
                      FaultCase{"dirent-overrun", "readdir"},
                      FaultCase{"dirent-bad-name", "readdir"}),
    case_name);

TEST(DeviceFault, AbsurdInitRepliesAreRefusedAtConnect) {
  TestBackend backend({"--fault", "absurd-init@init"});
  Options o;
  o.socket_path = backend.socket_path();
  expect_connect_error(o, std::errc::protocol_error, "FUSE_INIT reply not acceptable");
}

TEST(DeviceFault, ADeviceAnsweringEIOEverywhereStaysUsableButFailsEachCall) {
  // Well-formed EIO replies are the device's answer, not a protocol break.
  TestBackend backend({"--fault", "eio@getattr"});
  Options o;
  o.socket_path = backend.socket_path();
  auto client = Client::connect(o);
  Attr a;
  EXPECT_EQ(client->getattr(kRootInode, a), std::errc::io_error);
  EXPECT_EQ(client->mkdir("x"), std::errc::io_error);
  EXPECT_FALSE(client->failure());
}

TEST(DeviceFault, BackendExitingMidRequestFailsPendingWithENOTCONN) {
  TestBackend backend({"--hold", "read", "--fault", "die@statfs"});
  Options o;
  o.socket_path = backend.socket_path();
  auto client = Client::connect(o);
  ASSERT_FALSE(client->write_file("f", bytes(std::string("abc"))));
  File file;
  ASSERT_FALSE(client->open_file("f", O_RDONLY, file));
  Countdown pending(2);
  std::string buf(8, '\0');
  for (int i = 0; i < 2; ++i)
    client->read(file.inode(), file.handle(), 0, std::as_writable_bytes(std::span(buf)),
                 [&](std::error_code ec, size_t) { pending.done(ec); });
  StatFs st;
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(client->statfs(kRootInode, st), std::errc::not_connected);
  ASSERT_TRUE(pending.wait(1s));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
  for (auto e : pending.errors) EXPECT_EQ(e, std::errc::not_connected);
}
