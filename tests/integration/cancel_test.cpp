// Cancellation against the real virtiofsd: a token stopped before the call sends nothing (7.2
// crashes on an INTERRUPT for a request it already answered), and calls given up on while in
// flight leave the session healthy, their late replies dropped.
#include <fcntl.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <stop_token>
#include <string>
#include <vector>

#include "integration/fixture.hpp"

using namespace virtiofs;
using namespace virtiofs::test;
using namespace std::chrono_literals;

namespace {

class CancelTest : public VirtiofsdTest {
 protected:
  void SetUp() override {}
};

// Counts callbacks until all expected ones came (bounded).
struct Countdown {
  std::mutex mu;
  std::condition_variable cv;
  int left;
  explicit Countdown(int n) : left(n) {}
  void one() {
    std::lock_guard lock(mu);
    if (--left == 0) cv.notify_all();
  }
  bool wait() {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, 10s, [&] { return left == 0; });
  }
};

TEST_F(CancelTest, PreStoppedCallsSendNothingEvenWithInterruptsOn) {
  Options o;
  o.interrupts = true;
  start(o);
  write_host("f", "contents");
  File f;
  ASSERT_FALSE(client->open_file("f", O_RDONLY, f));
  std::stop_source stop;
  stop.request_stop();
  const uint64_t sent = client->stats().requests;
  std::vector<std::byte> buf(64);
  size_t n = 0;
  Attr attr;
  Entry entry;
  EXPECT_EQ(client->read(f.inode(), f.handle(), 0, buf, n, stop.get_token()), std::errc::interrupted);
  EXPECT_EQ(client->getattr(f.inode(), attr, stop.get_token()), std::errc::interrupted);
  EXPECT_EQ(client->lookup(kRootInode, "f", entry, stop.get_token()), std::errc::interrupted);
  Countdown callbacks(2);
  std::atomic<int> interrupted{0};
  client->read(f.inode(), f.handle(), 0, buf,
               [&](std::error_code ec, size_t) {
                 interrupted += ec == std::errc::interrupted;
                 callbacks.one();
               },
               stop.get_token());
  client->unlink(kRootInode, "f",
                 [&](std::error_code ec) {
                   interrupted += ec == std::errc::interrupted;
                   callbacks.one();
                 },
                 stop.get_token());
  ASSERT_TRUE(callbacks.wait());
  EXPECT_EQ(interrupted, 2);
  EXPECT_EQ(client->stats().requests, sent) << "a pre-stopped call reached the device";
  EXPECT_EQ(client->stats().interrupts_sent, 0u);
  EXPECT_TRUE(std::filesystem::exists(host("f"))) << "the stopped unlink ran";
  // The device is alive: a round trip works and nothing failed.
  EXPECT_FALSE(client->getattr(f.inode(), attr));
  EXPECT_EQ(attr.size, 8u);
  EXPECT_FALSE(client->failure());
}

// Reads in flight, half of them stopped at once: each ends with EINTR or with the right bytes,
// replies that come for the stopped ones are dropped, and the session goes on.
TEST_F(CancelTest, ReadsStoppedInFlightEndCleanlyAndTheSessionGoesOn) {
  start();
  const std::string data = random_bytes(4096, 3);
  write_host("f", data);
  File f;
  ASSERT_FALSE(client->open_file("f", O_RDONLY, f));
  constexpr int kReads = 64;
  std::vector<std::stop_source> stops(kReads);
  std::vector<std::vector<std::byte>> bufs(kReads, std::vector<std::byte>(4096));
  std::vector<std::error_code> results(kReads);
  std::vector<size_t> counts(kReads);
  Countdown callbacks(kReads);
  for (int i = 0; i < kReads; ++i) {
    client->read(f.inode(), f.handle(), 0, bufs[i],
                 [&, i](std::error_code ec, size_t n) {
                   results[i] = ec;
                   counts[i] = n;
                   callbacks.one();
                 },
                 stops[i].get_token());
    if (i % 2) stops[i].request_stop();
  }
  ASSERT_TRUE(callbacks.wait()) << "a stopped read never ended";
  int interrupted = 0;
  for (int i = 0; i < kReads; ++i) {
    if (results[i] == std::errc::interrupted) {
      EXPECT_EQ(i % 2, 1) << "read " << i << " was never stopped";
      ++interrupted;
      continue;
    }
    ASSERT_FALSE(results[i]) << i << ": " << results[i].message();
    ASSERT_EQ(counts[i], data.size());
    EXPECT_EQ(std::memcmp(bufs[i].data(), data.data(), data.size()), 0) << "read " << i;
  }
  // Each stop came right after its submission, long before virtiofsd can answer.
  EXPECT_GT(interrupted, 0) << "no stop gave a read up";
  EXPECT_EQ(client->stats().abandoned, static_cast<uint64_t>(interrupted));
  std::string back;
  EXPECT_FALSE(client->read_file("f", back));
  EXPECT_EQ(back, data);
  EXPECT_FALSE(client->failure());
}

}  // namespace
