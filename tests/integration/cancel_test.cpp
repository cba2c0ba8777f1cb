// Cancellation against the real virtiofsd: a token stopped before the call sends nothing (7.2
// crashes on an INTERRUPT for a request it already answered), and calls given up on while in
// flight leave the session healthy, their late replies dropped.
#include <fcntl.h>

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "integration/fixture.hpp"

using namespace virtiofs;
using namespace virtiofs::test;
using namespace std::chrono_literals;

namespace {

// Stops `pid` and waits until every thread of it is stopped (kill only queues the signal: a
// thread running on another CPU goes on a moment). False after 5 s.
bool freeze(pid_t pid) {
  if (::kill(pid, SIGSTOP) != 0) return false;
  const auto end = std::chrono::steady_clock::now() + 5s;
  while (std::chrono::steady_clock::now() < end) {
    bool all_stopped = true;
    for (const auto& task : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task")) {
      std::ifstream stat(task.path() / "stat");
      std::string line;
      std::getline(stat, line);
      const size_t close = line.rfind(')');  // the state follows the command name
      all_stopped &= close != std::string::npos && close + 2 < line.size() &&
                     (line[close + 2] == 'T' || line[close + 2] == 't');
    }
    if (all_stopped) return true;
    std::this_thread::sleep_for(1ms);
  }
  return false;
}

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

// Reads held by a frozen virtiofsd, half of them stopped: those end at once with EINTR, their
// buffers untouched when virtiofsd, thawed, answers them (the replies are dropped); the others
// end with the right bytes, and the session goes on.
TEST_F(CancelTest, ReadsStoppedInFlightEndCleanlyAndTheSessionGoesOn) {
  start();
  if (!backend) GTEST_SKIP() << "freezes the virtiofsd process (not in the VM rig)";
  const std::string data = random_bytes(4096, 3);
  write_host("f", data);
  File f;
  ASSERT_FALSE(client->open_file("f", O_RDONLY, f));
  constexpr int kReads = 64;
  std::vector<std::stop_source> stops(kReads);
  std::vector<std::vector<std::byte>> bufs(kReads, std::vector<std::byte>(4096));
  std::vector<std::error_code> results(kReads);
  std::vector<size_t> counts(kReads);
  std::vector<std::atomic<bool>> ended(kReads);
  Countdown callbacks(kReads);
  {
    ASSERT_TRUE(freeze(backend->pid()));
    struct Thaw {
      pid_t pid;
      ~Thaw() { ::kill(pid, SIGCONT); }
    } thaw{backend->pid()};
    for (int i = 0; i < kReads; ++i)
      client->read(f.inode(), f.handle(), 0, bufs[i],
                   [&, i](std::error_code ec, size_t n) {
                     results[i] = ec;
                     counts[i] = n;
                     ended[i] = true;
                     callbacks.one();
                   },
                   stops[i].get_token());
    for (int i = 1; i < kReads; i += 2) {
      stops[i].request_stop();
      EXPECT_TRUE(ended[i]) << "stopped read " << i << " did not end at once";
      EXPECT_EQ(results[i], std::errc::interrupted) << i;
    }
  }
  ASSERT_TRUE(callbacks.wait()) << "a read never ended";
  for (int i = 0; i < kReads; i += 2) {
    ASSERT_FALSE(results[i]) << i << ": " << results[i].message();
    ASSERT_EQ(counts[i], data.size());
    EXPECT_EQ(std::memcmp(bufs[i].data(), data.data(), data.size()), 0) << "read " << i;
  }
  EXPECT_EQ(client->stats().abandoned, static_cast<uint64_t>(kReads / 2));
  std::string back;
  EXPECT_FALSE(client->read_file("f", back));  // after the late replies: the queue is in order
  EXPECT_EQ(back, data);
  EXPECT_EQ(client->stats().replies_dropped, static_cast<uint64_t>(kReads / 2));
  for (int i = 1; i < kReads; i += 2)
    EXPECT_TRUE(std::all_of(bufs[i].begin(), bufs[i].end(), [](std::byte b) { return b == std::byte{0}; }))
        << "a dropped reply reached read " << i << "'s buffer";
  EXPECT_FALSE(client->failure());
}

}  // namespace
