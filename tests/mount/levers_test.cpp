// The speed levers of virtiofs-mount, each through a real mount against virtiofsd: polled readers
// (-o poll_us=N) serve everything and take requests and replies without sleeping; readahead_kb=
// reaches the mount's bdi; a writeback cache (virtiofsd -o writeback, or share=...,writeback)
// leaves the right bytes, size and times in the host directory once data is synced or closed.
#include <dirent.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <csignal>
#include <regex>
#include <thread>

#include "mount/fixture.hpp"
#include "support/uring_parameter.hpp"

namespace virtiofs::test {
namespace {

class LeverMount : public LoggedMountTest {};

// The flags the INIT reply gave the kernel (the -d log's INIT line).
uint64_t init_flags(const std::string& log) {
  std::smatch match;
  if (!std::regex_search(log, match, std::regex("INIT: .* flags (0x[0-9a-f]+)"))) return 0;
  return std::stoull(match[1].str(), nullptr, 16);
}

// The mount's readahead window (its bdi's read_ahead_kb). The mount shows before the tool has
// set it (after INIT): waits, bounded, until it reads `want`, and returns what it read last.
std::string readahead_window(const std::string& mountpoint, const std::string& want) {
  std::string got;
  for (int i = 0; i < 500; ++i) {
    struct stat st {};
    if (stat(mountpoint.c_str(), &st) != 0) return "stat failed";
    got = read_file("/sys/class/bdi/" + std::to_string(major(st.st_dev)) + ":" +
                    std::to_string(minor(st.st_dev)) + "/read_ahead_kb");
    if (got == want) break;
    usleep(10000);
  }
  return got;
}

// Two threads of metadata and data work, each checked on the host.
unsigned workload(const LeverMount& t) {
  std::atomic<unsigned> failures{0};
  std::vector<std::thread> threads;
  for (unsigned i = 0; i < 2; ++i)
    threads.emplace_back([&, i] {
      const std::string dir = "d" + std::to_string(i);
      if (mkdir(t.m(dir).c_str(), 0755) != 0) ++failures;
      for (unsigned k = 0; k < 200; ++k) {
        const std::string name = dir + "/f" + std::to_string(k);
        const std::string data = random_bytes(k % 20 == 0 ? (1u << 20) + k : 100 + k, i * 1000 + k);
        write_file(t.m(name), data);
        struct stat st {};
        if (stat(t.m(name).c_str(), &st) != 0 || st.st_size != static_cast<off_t>(data.size())) ++failures;
        if (read_file(t.h(name)) != data || read_file(t.m(name)) != data) ++failures;
        if (unlink(t.m(name).c_str()) != 0) ++failures;
      }
      if (rmdir(t.m(dir).c_str()) != 0) ++failures;
    });
  for (auto& th : threads) th.join();
  return failures.load();
}

TEST_F(LeverMount, PolledReadersServeEverythingWithoutSleepingBetweenRequests) {
  mount_with(",poll_us=20000");
  EXPECT_EQ(workload(*this), 0u);
  // A depth-1 loop: each request comes while the reader spins, each reply while it polls.
  write_file(m("one"), "1");
  struct stat st {};
  for (unsigned k = 0; k < 500; ++k) ASSERT_EQ(access(m("one").c_str(), R_OK), 0);
  ASSERT_EQ(stat(m("one").c_str(), &st), 0);

  const std::string log = stop();
  std::smatch match;
  ASSERT_TRUE(std::regex_search(log, match, std::regex("polled readers: (\\d+) requests read without "
                                                       "sleeping, (\\d+) replies reaped")))
      << log.substr(log.size() > 2000 ? log.size() - 2000 : 0);
  EXPECT_GT(std::stoul(match[1].str()), 500u);
  EXPECT_GT(std::stoul(match[2].str()), 500u);
}

// More 1 MiB READs in flight than the bridge's chunk pool holds (16 MiB beyond the landings):
// a polled reader waiting for reply room must not hold its queue's poller, whose replies are
// what gives chunks back (it hung the mount). Bounded: on a hang the mount is killed, which
// ends the READs (ENOTCONN), and the test fails.
TEST_F(LeverMount, PolledReadersSurviveMoreLargeReadsThanTheChunkPoolHolds) {
  start_backend({"-o", "cache=none"});  // each 1 MiB preadv: one 1 MiB READ
  mount_with(",poll_us=2000");
  constexpr unsigned kThreads = 32, kRounds = 20;
  const std::string data = random_bytes(size_t{kThreads} << 20, 21);
  write_file(h("big"), data);
  std::atomic<unsigned> ready{0}, done{0}, failures{0};
  std::vector<std::thread> threads;
  for (unsigned i = 0; i < kThreads; ++i)
    threads.emplace_back([&, i] {
      const int fd = open(m("big").c_str(), O_RDONLY);
      std::string buf(1u << 20, '\0');
      ++ready;
      while (ready.load() < kThreads) sched_yield();  // all at once
      for (unsigned k = 0; k < kRounds && fd >= 0; ++k) {
        iovec iov{buf.data(), buf.size()};
        const size_t at = size_t{(i + k) % kThreads} << 20;
        if (preadv(fd, &iov, 1, static_cast<off_t>(at)) != static_cast<ssize_t>(buf.size()) ||
            buf.compare(0, buf.size(), data, at, buf.size()) != 0)
          ++failures;
        ++done;
      }
      if (fd < 0) ++failures;
      else close(fd);
    });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (done.load() < kThreads * kRounds && std::chrono::steady_clock::now() < deadline) usleep(10000);
  const unsigned finished = done.load();
  if (finished < kThreads * kRounds) {
    kill(mount->pid(), SIGKILL);  // the pending READs fail with ENOTCONN
    for (auto& th : threads) th.join();
    mount->wait(10000);
    umount2(mnt.path().c_str(), MNT_DETACH);
    FAIL() << "the mount hung: " << finished << " of " << kThreads * kRounds << " reads done";
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0u);
  stop();
}

// The voluntary context switches of all of a process's threads (each a sleep, then a wake-up).
unsigned long sleeps_of(pid_t pid) {
  unsigned long total = 0;
  const std::string tasks = "/proc/" + std::to_string(pid) + "/task";
  DIR* dir = opendir(tasks.c_str());
  if (!dir) return 0;
  while (const dirent* e = readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    std::smatch match;
    const std::string status = read_file(tasks + "/" + e->d_name + "/status");
    if (std::regex_search(status, match, std::regex("\\nvoluntary_ctxt_switches:\\s*(\\d+)")))
      total += std::stoul(match[1].str());
  }
  closedir(dir);
  return total;
}

// Idle polled readers sleep so that a request wakes one of them, not all (poll(2) woke all).
TEST_F(LeverMount, ARequestWakesOneSleepingPolledReader) {
  mount_with(",poll_us=100,max_threads=4");
  write_file(m("one"), "1");
  constexpr unsigned kRequests = 200;
  usleep(20000);
  const unsigned long before = sleeps_of(mount->pid());
  for (unsigned k = 0; k < kRequests; ++k) {  // one LOOKUP each, spaced: the readers sleep between
    struct stat st {};
    stat(m("none" + std::to_string(k)).c_str(), &st);
    usleep(5000);
  }
  const unsigned long sleeps = sleeps_of(mount->pid()) - before;
  // Per request: one reader, and the completion thread for the reply (interrupts back on).
  EXPECT_LT(sleeps, 3 * kRequests) << "more than one reader woken per request";
  stop();
}

TEST_F(LeverMount, PolledQueueThreadsServeFuseOverIoUring) {
  if (!UringParameter::exists()) GTEST_SKIP() << "this kernel has no FUSE over io_uring";
  UringParameter on(true);
  mount_with(",io_uring,poll_us=20000");
  EXPECT_EQ(workload(*this), 0u);
  const std::string log = stop();
  EXPECT_EQ(log.find("refused FUSE over io_uring"), std::string::npos);
  std::smatch match;
  ASSERT_TRUE(std::regex_search(log, match, std::regex("the session polled (\\d+) replies")));
  EXPECT_GT(std::stoul(match[1].str()), 100u) << "the queue threads reaped nothing themselves";
}

// -o io_uring,poll_us with no FUSE over io_uring (kernel without it, or enable_uring off): the
// /dev/fuse readers poll instead (decided from whether the ring was set up, not from the option).
TEST_F(LeverMount, PollUsStillPollsWhenIoUringIsDeclined) {
  std::optional<UringParameter> off;
  if (UringParameter::exists()) off.emplace(false);
  mount_with(",io_uring,poll_us=20000");
  for (unsigned k = 0; k < 100; ++k) write_file(m("f" + std::to_string(k)), "1");  // 4+ requests each
  const std::string log = stop();
  EXPECT_NE(log.find("the /dev/fuse readers poll instead"), std::string::npos);
  std::smatch match;
  ASSERT_TRUE(std::regex_search(log, match, std::regex("polled readers: (\\d+) requests read without "
                                                       "sleeping, (\\d+) replies reaped")));
  EXPECT_GT(std::stoul(match[1].str()), 200u);
  EXPECT_GT(std::stoul(match[2].str()), 200u);
}

TEST_F(LeverMount, ReadaheadKbReachesTheMountsBdi) {
  if (geteuid() != 0) GTEST_SKIP() << "only root may set a bdi's readahead";
  mount_with(",readahead_kb=4096");
  EXPECT_EQ(readahead_window(mnt.path(), "4096\n"), "4096\n");
  // Large reads still bring the right bytes.
  const std::string data = random_bytes(8u << 20, 5);
  write_file(h("big"), data);
  EXPECT_TRUE(read_file(m("big")) == data);
  stop();
}

TEST_F(LeverMount, ReadaheadIsOneMebibyteByDefaultAndZeroKeepsTheKernels) {
  if (geteuid() != 0) GTEST_SKIP() << "only root may set a bdi's readahead";
  mount_with("");
  EXPECT_EQ(readahead_window(mnt.path(), "1024\n"), "1024\n");
  stop();
  start_backend();  // virtiofsd serves one connection
  mount_with(",readahead_kb=0");
  usleep(200000);  // time to set it, were it set
  EXPECT_EQ(readahead_window(mnt.path(), "128\n"), "128\n");
  stop();
}

TEST_F(LeverMount, WritebackCacheLeavesTheRightDataAndSizeOnTheHost) {
  start_backend({"-o", "writeback"});
  mount_with("");
  const std::string a = random_bytes(3u << 20, 11), b = random_bytes(5000, 12);
  int fd = open(m("w").c_str(), O_CREAT | O_RDWR, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, a.data(), a.size()), static_cast<ssize_t>(a.size()));
  ASSERT_EQ(pwrite(fd, b.data(), b.size(), 1000), static_cast<ssize_t>(b.size()));  // overwrite
  ASSERT_EQ(fsync(fd), 0);
  std::string want = a;
  want.replace(1000, b.size(), b);
  EXPECT_TRUE(read_file(h("w")) == want) << "fsync did not bring the data to the host";
  ASSERT_EQ(pwrite(fd, b.data(), b.size(), a.size() + 100), static_cast<ssize_t>(b.size()));  // a hole, then b
  ASSERT_EQ(ftruncate(fd, a.size() + 100 + b.size() - 10), 0);
  ASSERT_EQ(close(fd), 0);
  want += std::string(100, '\0') + b.substr(0, b.size() - 10);
  EXPECT_TRUE(read_file(h("w")) == want) << "close did not bring the data to the host";
  struct stat via_mount {}, on_host {};
  ASSERT_EQ(stat(m("w").c_str(), &via_mount), 0);
  ASSERT_EQ(stat(h("w").c_str(), &on_host), 0);
  EXPECT_EQ(on_host.st_size, static_cast<off_t>(want.size()));
  EXPECT_EQ(via_mount.st_size, on_host.st_size);
  const std::string log = stop();
  EXPECT_NE(init_flags(log) & FUSE_WRITEBACK_CACHE, 0u) << "the kernel was not given a writeback cache";
}

TEST_F(LeverMount, ShareWritebackOffersTheCacheAndOnlyWithShare) {
  ForegroundMount fg(mnt.path(), {"-d", "-o", "share=" + share.path() + ",writeback", "myfs"}, log_path());
  write_file(m("x"), "written through the cache");
  const int fd = open(m("x").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  close(fd);
  EXPECT_EQ(read_file(h("x")), "written through the cache");
  EXPECT_EQ(fg.stop(), 0);
  EXPECT_NE(init_flags(read_file(log_path())) & FUSE_WRITEBACK_CACHE, 0u);
  // Elsewhere the device decides: asking is a usage error.
  mount_with("");
  const RunResult r = run({mount_binary(), "-o", "socket=" + backend->socket_path() + ",writeback", "t", logs.path()});
  EXPECT_EQ(r.status, 2) << r.output;
  stop();
}

}  // namespace
}  // namespace virtiofs::test
