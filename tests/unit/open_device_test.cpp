// Opening a device (client/open_device.hpp): the one tag rule Client::connect and virtiofs-mount
// share, checked on its own and through Connector::over with the loopback device, with and
// without a tag in its config; and the socket path checked before any connection.
#include <gtest/gtest.h>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <string>

#include "client/connector.hpp"
#include "client/open_device.hpp"
#include "support/loopback_fs.hpp"
#include "virtiofs/client.hpp"

using namespace virtiofs;
using namespace virtiofs::test;

namespace {

// The errno and message of what `f` throws; errno 0 when it does not throw.
template <class F>
std::pair<int, std::string> thrown(F f) {
  try {
    f();
  } catch (const std::system_error& e) {
    return {e.code().value(), e.what()};
  }
  return {0, ""};
}

// ---- the rule on its own ----

TEST(TagRule, AReportedTagIsTakenWhenNoneIsGiven) {
  EXPECT_EQ(client::settle_tag("", std::string("hostfs")), "hostfs");
}

TEST(TagRule, AReportedTagMustBeTheOneGiven) {
  EXPECT_EQ(client::settle_tag("hostfs", std::string("hostfs")), "hostfs");
  auto [err, what] = thrown([] { client::settle_tag("other", std::string("hostfs")); });
  EXPECT_EQ(err, ENODEV);
  EXPECT_NE(what.find("the device's tag is 'hostfs', not 'other'"), std::string::npos) << what;
}

TEST(TagRule, WithoutAReportedTagTheGivenOneNamesTheDevice) {
  EXPECT_EQ(client::settle_tag("mine", std::nullopt), "mine");
  EXPECT_EQ(client::settle_tag("", std::nullopt), "");
}

TEST(TagRule, AtMost36Bytes) {
  EXPECT_EQ(client::settle_tag(std::string(36, 't'), std::nullopt), std::string(36, 't'));
  auto [err, what] = thrown([] { client::settle_tag(std::string(37, 't'), std::nullopt); });
  EXPECT_EQ(err, EINVAL);
  EXPECT_NE(what.find("longer than 36 bytes"), std::string::npos) << what;
}

// ---- through Connector::over, as Client::connect opens ----

Options small(const std::string& tag) {
  Options o;
  o.queue_size = 8;
  o.tag = tag;
  return o;
}

LoopbackFsOptions device(bool reports_tag) {
  LoopbackFsOptions d;
  d.device.tag = "loopfs";
  d.device.offer_config = reports_tag;
  return d;
}

TEST(OpenDevice, TakesTheDevicesTagWhenNoneIsGiven) {
  LoopbackFs loop(device(/*reports_tag=*/true));
  auto c = client::Connector::over(loop.transport(), small(""));
  EXPECT_EQ(c->tag(), "loopfs");
}

TEST(OpenDevice, RefusesADeviceWithAnotherTag) {
  LoopbackFs loop(device(/*reports_tag=*/true));
  auto [err, what] = thrown([&] { client::Connector::over(loop.transport(), small("elsewhere")); });
  EXPECT_EQ(err, ENODEV);
  EXPECT_NE(what.find("'loopfs', not 'elsewhere'"), std::string::npos) << what;
}

TEST(OpenDevice, ADeviceWithoutConfigGoesByTheGivenTag) {
  LoopbackFs loop(device(/*reports_tag=*/false));
  auto c = client::Connector::over(loop.transport(), small("named-here"));
  EXPECT_EQ(c->tag(), "named-here");
}

// The library's blocking calls poll adaptively unless told otherwise; 0 (virtiofs-mount's
// session: its own threads poll) stays interrupts only.
TEST(OpenDevice, PollingIsAdaptiveByDefaultAndZeroStaysZero) {
  EXPECT_EQ(Options{}.poll_us, kAdaptivePolling);
  LoopbackFs loop(device(/*reports_tag=*/true));
  Options o = small("");
  EXPECT_EQ(client::settle_device(loop.transport(), o).session.poll_us, fs::kAdaptivePolling);
  o.poll_us = 0;
  LoopbackFs loop2(device(/*reports_tag=*/true));
  EXPECT_EQ(client::settle_device(loop2.transport(), o).session.poll_us, 0u);
}

TEST(OpenDevice, FillsTheSessionOptionsAndTheQueueCount) {
  LoopbackFsOptions d = device(/*reports_tag=*/true);
  d.device.request_queues = 3;
  LoopbackFs loop(d);
  Options o = small("");
  o.poll_us = 7;
  o.max_transfer = 1u << 17;
  o.registered_memory_bytes = 1u << 16;
  client::OpenedDevice opened = client::settle_device(loop.transport(), o);
  EXPECT_EQ(opened.tag, "loopfs");
  EXPECT_EQ(opened.session.num_request_queues, 3u) << "0 asks for all the device offers";
  EXPECT_EQ(opened.session.queue_size, 8u);
  EXPECT_EQ(opened.session.poll_us, 7u);
  EXPECT_EQ(opened.session.max_transfer, 1u << 17);
  EXPECT_EQ(opened.session.app_memory_bytes, 1u << 16);
  o.num_request_queues = 4;
  LoopbackFs loop2(d);
  EXPECT_EQ(thrown([&] { client::settle_device(loop2.transport(), o); }).first, EINVAL);
}

// ---- where the device is ----

struct TempPath {
  std::string dir;
  TempPath() {
    char templ[] = "/tmp/open-device-test.XXXXXX";
    dir = mkdtemp(templ);
  }
  ~TempPath() { std::system(("rm -rf " + dir).c_str()); }
};

TEST(OpenDevice, ARegularFileGivenAsTheSocketIsSaidToBeOne) {
  TempPath t;
  const std::string file = t.dir + "/virtiofsd.log";
  std::ofstream(file) << "not a socket\n";
  Options o;
  o.socket_path = file;
  auto [err, what] = thrown([&] { Client::connect(o); });
  EXPECT_EQ(err, ENOTSOCK);
  EXPECT_NE(what.find(file + " is a regular file, not a UNIX socket (give virtiofsd's --socket-path)"),
            std::string::npos)
      << what;
  EXPECT_EQ(what.find('\n'), std::string::npos) << "one line";
}

TEST(OpenDevice, ADirectoryOrNothingGivenAsTheSocket) {
  TempPath t;
  EXPECT_NE(thrown([&] { client::check_socket_path(t.dir); }).second.find("is a directory, not a UNIX socket"),
            std::string::npos);
  auto [err, what] = thrown([&] { client::check_socket_path(t.dir + "/missing.sock"); });
  EXPECT_EQ(err, ENOENT);
  EXPECT_NE(what.find("start virtiofsd with --socket-path=" + t.dir + "/missing.sock"), std::string::npos)
      << what;
}

TEST(OpenDevice, ASocketPasses) {
  TempPath t;
  const std::string path = t.dir + "/s.sock";
  const int s = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  EXPECT_EQ(thrown([&] { client::check_socket_path(path); }).first, 0);
  close(s);
}

TEST(OpenDevice, OneDeviceMustBeGiven) {
  Options none;
  auto [err, what] = thrown([&] { Client::connect(none); });
  EXPECT_EQ(err, EINVAL);
  EXPECT_NE(what.find("no device given"), std::string::npos) << what;
  Options both;
  both.socket_path = "/nonexistent.sock";
  both.pci_device = "0000:00:04.0";
  EXPECT_NE(thrown([&] { Client::connect(both); }).second.find("not both"), std::string::npos);
  Options long_tag;
  long_tag.tag = std::string(40, 'x');
  EXPECT_EQ(thrown([&] { Client::connect(long_tag); }).first, EINVAL) << "refused before any lookup";
}

}  // namespace
