// FUSE over io_uring through virtiofs-mount -o io_uring, against the real virtiofsd: with the
// fuse module's enable_uring on, every request but INIT and FORGET comes through the ring (the
// -d log names the queue of each); with it off, the mount falls back to /dev/fuse reads.
#include <fcntl.h>
#include <sched.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <optional>
#include <filesystem>
#include <thread>

#include "mount/fixture.hpp"
#include "support/uring_parameter.hpp"

namespace virtiofs::test {
namespace {

namespace fs = std::filesystem;

struct LogCounts {
  unsigned ring_requests = 0;       // "(io_uring queue N)" request lines
  unsigned read_requests = 0;       // other request lines
  unsigned reads_not_forget = 0;    // ... that are neither INIT nor FORGET
  std::vector<unsigned> per_queue;  // ring requests per kernel queue
};

LogCounts count_requests(const std::string& log) {
  LogCounts c;
  std::istringstream in(log);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("unique ", 0) != 0) continue;
    const size_t q = line.find("(io_uring queue ");
    if (q == std::string::npos) {
      ++c.read_requests;
      if (line.find(" INIT ") == std::string::npos && line.find("FORGET") == std::string::npos) ++c.reads_not_forget;
      continue;
    }
    ++c.ring_requests;
    const unsigned queue = static_cast<unsigned>(std::stoul(line.substr(q + 16)));
    if (c.per_queue.size() <= queue) c.per_queue.resize(queue + 1);
    ++c.per_queue[queue];
  }
  return c;
}

void pin_to_cpu(unsigned cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu % std::max(1u, std::thread::hardware_concurrency()), &set);
  sched_setaffinity(0, sizeof(set), &set);
}

// Drops the file's cached pages, so that the next read goes to the device.
void drop_cache(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0) << path;
  posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  close(fd);
}

class IoUringMount : public LoggedMountTest {
 public:
  void mount_with(const std::string& options) { LoggedMountTest::mount_with("," + options); }
};

// Files written, read back from the device, renamed, listed and removed from one thread on each
// CPU (the kernel queues a request on the ring of the CPU it was made on).
void file_workload(const IoUringMount& t, unsigned cpu, std::atomic<unsigned>& failures) {
  pin_to_cpu(cpu);
  const std::string dir = "cpu" + std::to_string(cpu);
  if (mkdir(t.m(dir).c_str(), 0755) != 0) ++failures;
  for (unsigned k = 0; k < 12; ++k) {
    const std::string name = dir + "/f" + std::to_string(k);
    const std::string data = random_bytes(size_t{1} << (10 + k % 11), cpu * 100 + k);  // 1 KiB .. 1 MiB
    write_file(t.m(name), data);
    if (read_file(t.h(name)) != data) ++failures;
    drop_cache(t.m(name));
    if (read_file(t.m(name)) != data) ++failures;
    if (rename(t.m(name).c_str(), t.m(name + ".done").c_str()) != 0) ++failures;
  }
  unsigned listed = 0;
  for (const auto& e : fs::directory_iterator(t.m(dir))) listed += e.path().extension() == ".done";
  if (listed != 12) ++failures;
  for (unsigned k = 0; k < 12; ++k)
    if (unlink(t.m(dir + "/f" + std::to_string(k) + ".done").c_str()) != 0) ++failures;
  if (rmdir(t.m(dir).c_str()) != 0) ++failures;
}

TEST_F(IoUringMount, RequestsComeThroughTheRingOnEveryCpuAndArriveIntact) {
  if (!UringParameter::exists()) GTEST_SKIP() << "this kernel has no FUSE over io_uring";
  UringParameter on(true);
  mount_with("io_uring");

  std::atomic<unsigned> failures{0};
  std::vector<std::thread> threads;
  for (unsigned cpu = 0; cpu < 2; ++cpu) threads.emplace_back([&, cpu] { file_workload(*this, cpu, failures); });
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0u);

  // GETXATTR with a 64 KiB buffer: a name in the request and a reply too big for the entry's
  // small room, so the name steps aside and the value lands in the payload buffer.
  write_file(m("x"), "x");
  const std::string value = random_bytes(3000, 7);  // ext4 keeps values within one block
  ASSERT_EQ(setxattr(m("x").c_str(), "user.big", value.data(), value.size(), 0), 0) << std::strerror(errno);
  std::string got(65536, '\0');
  const ssize_t n = getxattr(m("x").c_str(), "user.big", got.data(), got.size());
  ASSERT_EQ(n, static_cast<ssize_t>(value.size())) << std::strerror(errno);
  EXPECT_TRUE(got.substr(0, value.size()) == value);
  std::string host(65536, '\0');
  EXPECT_EQ(getxattr(h("x").c_str(), "user.big", host.data(), host.size()), static_cast<ssize_t>(value.size()));

  const std::string log = stop();
  const LogCounts c = count_requests(log);
  EXPECT_NE(log.find("FUSE over io_uring: "), std::string::npos) << log.substr(0, 2000);
  EXPECT_EQ(log.find("refused FUSE over io_uring"), std::string::npos);
  EXPECT_GT(c.ring_requests, 100u);
  EXPECT_EQ(c.reads_not_forget, 0u) << "requests other than INIT and FORGET came through /dev/fuse reads";
  ASSERT_GE(c.per_queue.size(), std::min(2u, std::thread::hardware_concurrency()));
  for (size_t q = 0; q < c.per_queue.size(); ++q) EXPECT_GT(c.per_queue[q], 0u) << "queue " << q;
  EXPECT_NE(log.find(std::to_string(c.ring_requests) + " requests came through FUSE over io_uring"),
            std::string::npos);
}

TEST_F(IoUringMount, OneEntryPerCpuServesManyThreads) {
  if (!UringParameter::exists()) GTEST_SKIP() << "this kernel has no FUSE over io_uring";
  UringParameter on(true);
  mount_with("io_uring,io_uring_depth=1");
  for (unsigned i = 0; i < 8; ++i) write_file(h("s" + std::to_string(i)), random_bytes(4096 + i, i));

  // 8 threads on 1 entry per CPU: the kernel queues what the entries cannot take yet.
  std::atomic<unsigned> failures{0};
  std::vector<std::thread> threads;
  for (unsigned i = 0; i < 8; ++i)
    threads.emplace_back([&, i] {
      const std::string name = "s" + std::to_string(i);
      const std::string want = random_bytes(4096 + i, i);
      for (unsigned k = 0; k < 100; ++k) {
        struct stat st {};
        if (stat(m(name).c_str(), &st) != 0 || st.st_size != static_cast<off_t>(want.size())) ++failures;
        if (k % 10 == 0) {
          drop_cache(m(name));
          if (read_file(m(name)) != want) ++failures;
        }
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0u);

  const LogCounts c = count_requests(stop());
  EXPECT_GT(c.ring_requests, 0u);
  EXPECT_EQ(c.reads_not_forget, 0u);
}

TEST_F(IoUringMount, FallsBackToDevFuseReadsWhenTheKernelDoesNotOfferIt) {
  // Without the parameter the kernel never offers it; with it, it is switched off here.
  std::optional<UringParameter> off;
  if (UringParameter::exists()) off.emplace(false);
  mount_with("io_uring");
  const std::string data = random_bytes(300000, 3);
  write_file(m("f"), data);
  drop_cache(m("f"));
  EXPECT_TRUE(read_file(m("f")) == data);
  EXPECT_TRUE(read_file(h("f")) == data);
  ASSERT_EQ(mkdir(m("d").c_str(), 0755), 0);
  EXPECT_TRUE(fs::is_directory(h("d")));

  const std::string log = stop();
  const LogCounts c = count_requests(log);
  EXPECT_NE(log.find("the kernel does not offer FUSE over io_uring"), std::string::npos) << log.substr(0, 2000);
  EXPECT_EQ(c.ring_requests, 0u);
  EXPECT_GT(c.reads_not_forget, 0u);
  EXPECT_NE(log.find("0 requests came through FUSE over io_uring"), std::string::npos);
}

}  // namespace
}  // namespace virtiofs::test
