// virtiofs-mount against the test backend (tests/support/test_backend), for what Debian's
// virtiofsd cannot do: several request queues, FUSE_INTERRUPT from the kernel, and a device
// that breaks the protocol.
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <chrono>
#include <thread>

#include "mount/fixture.hpp"
#include "support/test_backend_process.hpp"
#include "support/uring_parameter.hpp"

using namespace virtiofs::test;
using namespace std::chrono_literals;

namespace {

constexpr const char* kType = "fuse.virtiofs-mount";

// virtiofs-mount -f in a child, its stderr kept for the test.
class ToolRun {
 public:
  ToolRun(const std::string& mountpoint, std::vector<std::string> args) {
    if (pipe(err_) != 0) throw std::runtime_error("pipe");
    pid_ = fork();
    if (pid_ == 0) {
      dup2(err_[1], 2);
      std::vector<std::string> all = {mount_binary(), "-f"};
      all.insert(all.end(), args.begin(), args.end());
      all.push_back(mountpoint);
      std::vector<char*> argv;
      for (auto& a : all) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(err_[1]);
  }
  ~ToolRun() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    close(err_[0]);
  }
  // Exit status within timeout_ms, or -1.
  int wait(int timeout_ms) {
    int status = 0;
    for (int i = 0; i < timeout_ms / 10; ++i) {
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(10ms);
    }
    return -1;
  }
  std::string stderr_text() {
    std::string out;
    char buf[512];
    ssize_t n;
    while ((n = read(err_[0], buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
    return out;
  }
  pid_t pid() const { return pid_; }

 private:
  int err_[2] = {-1, -1};
  pid_t pid_ = -1;
};

}  // namespace

class TestBackendMount : public ::testing::Test {
 protected:
  TempDir mnt;
};

TEST_F(TestBackendMount, ProcessesSpreadOverEveryRequestQueue) {
  TestBackend backend({"--queues", "4"});
  {
    ToolRun tool(mnt.path(), {"-o", "socket=" + backend.socket_path(), "testfs"});
    ASSERT_TRUE(wait_mount_state(mnt.path(), kType, 10000));
    std::vector<pid_t> children;
    for (int p = 0; p < 6; ++p) {
      pid_t c = fork();
      if (c == 0) {
        const std::string path = mnt / ("p" + std::to_string(p));
        const std::string data = random_bytes(200000 + p, p);
        int bad = 0;
        for (int i = 0; i < 30; ++i) {
          int fd = open(path.c_str(), O_CREAT | O_TRUNC | O_RDWR | O_DIRECT, 0644);
          if (fd < 0 || pwrite(fd, data.data(), data.size(), 0) != static_cast<ssize_t>(data.size()))
            ++bad;
          std::string back(data.size(), '\0');
          if (fd < 0 || pread(fd, back.data(), back.size(), 0) != static_cast<ssize_t>(data.size()) ||
              back != data)
            ++bad;
          if (fd >= 0) close(fd);
        }
        _exit(bad == 0 ? 0 : 1);
      }
      children.push_back(c);
    }
    for (pid_t c : children) {
      int status = 0;
      waitpid(c, &status, 0);
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "a writer saw bad data";
    }
    kill(tool.pid(), SIGTERM);
    EXPECT_EQ(tool.wait(10000), 0) << tool.stderr_text();
  }
  EXPECT_TRUE(wait_mount_state(mnt.path(), "", 5000));
  const BackendCounts counts = backend.counts();
  ASSERT_EQ(counts.per_queue.size(), 5u);
  for (unsigned q = 1; q <= 4; ++q) EXPECT_GT(counts.per_queue[q], 20u) << "queue " << q << " idle";
}

// LOOKUPs wait at the device until interrupted; -o interrupts forwards the kernel's INTERRUPT.
// A process stats, gets SIGUSR1 while its LOOKUP is held, and must see EINTR. Returns the
// tool's stderr.
std::string interrupt_a_held_lookup(const TempDir& mnt, const std::string& options,
                                    std::vector<std::string> args = {}) {
  TestBackend backend({"--hold", "lookup"});
  args.insert(args.end(), {"-o", "socket=" + backend.socket_path() + ",interrupts" + options, "testfs"});
  ToolRun tool(mnt.path(), args);
  EXPECT_TRUE(wait_mount_state(mnt.path(), kType, 10000));
  int result[2];
  EXPECT_EQ(pipe(result), 0);
  pid_t child = fork();
  if (child == 0) {
    struct sigaction sa {};
    sa.sa_handler = [](int) {};
    sigaction(SIGUSR1, &sa, nullptr);  // no SA_RESTART: the syscall returns EINTR
    struct stat st;
    int e = stat((mnt / "nothing-here").c_str(), &st) == 0 ? 0 : errno;
    [[maybe_unused]] ssize_t n = write(result[1], &e, sizeof(e));
    _exit(0);
  }
  close(result[1]);
  std::this_thread::sleep_for(300ms);  // the LOOKUP is now held at the device
  kill(child, SIGUSR1);
  pollfd p{result[0], POLLIN, 0};
  int e = 0;
  if (poll(&p, 1, 5000) == 1) {
    EXPECT_EQ(read(result[0], &e, sizeof(e)), static_cast<ssize_t>(sizeof(e)));
    EXPECT_EQ(e, EINTR) << std::strerror(e);
  } else {
    ADD_FAILURE() << "the interrupted stat never returned";
    kill(child, SIGKILL);  // a FUSE wait is killable: the test ends instead of hanging
  }
  waitpid(child, nullptr, 0);
  close(result[0]);
  kill(tool.pid(), SIGTERM);
  EXPECT_EQ(tool.wait(10000), 0) << tool.stderr_text();
  const BackendCounts counts = backend.counts();
  EXPECT_GE(counts.interrupts, 1u);
  EXPECT_EQ(counts.interrupted, 1u);
  return tool.stderr_text();
}

TEST_F(TestBackendMount, KernelInterruptEndsAHeldRequestWithEINTR) { interrupt_a_held_lookup(mnt, ""); }

// The same with the LOOKUP taken through FUSE over io_uring: the INTERRUPT still comes through
// /dev/fuse reads, and the EINTR reply goes back through the ring.
TEST_F(TestBackendMount, KernelInterruptOfARequestFromTheIoUringEndsItWithEINTR) {
  if (!UringParameter::exists()) GTEST_SKIP() << "this kernel has no FUSE over io_uring";
  UringParameter on(true);
  const std::string log = interrupt_a_held_lookup(mnt, ",io_uring", {"-d"});
  std::istringstream lines(log);
  bool through_ring = false;
  for (std::string line; std::getline(lines, line);)
    through_ring |= line.find(" LOOKUP ") != std::string::npos && line.find("(io_uring queue") != std::string::npos;
  EXPECT_TRUE(through_ring) << "the LOOKUP must have come through the ring";
}

struct MountFault {
  const char* fault;
  int expected_errno;  // what the failing syscall sees
  const char* says;    // in the tool's last words
};

class MountFaultTest : public ::testing::TestWithParam<MountFault> {
 protected:
  TempDir mnt;
};

TEST_P(MountFaultTest, TheMountFailsCallsThenUnmountsWithAMessage) {
  const MountFault f = GetParam();
  TestBackend backend({"--fault", std::string(f.fault) + "@mkdir"});
  ToolRun tool(mnt.path(), {"-o", "socket=" + backend.socket_path(), "testfs"});
  ASSERT_TRUE(wait_mount_state(mnt.path(), kType, 10000));
  ASSERT_EQ(mkdir((mnt / "before").c_str(), 0755), -1);  // the first MKDIR is struck
  const int e = errno;
  EXPECT_TRUE(e == f.expected_errno || e == ENOTCONN) << std::strerror(e);
  EXPECT_EQ(tool.wait(5000), 1) << "the tool must end when its device breaks";
  EXPECT_NE(tool.stderr_text().find(f.says), std::string::npos);
  EXPECT_TRUE(wait_mount_state(mnt.path(), "", 5000)) << "no stale mount";
}

INSTANTIATE_TEST_SUITE_P(Device, MountFaultTest,
                         ::testing::Values(MountFault{"used-id-out-of-range", EIO, "device broke the protocol"},
                                           MountFault{"used-len-beyond-buffer", EIO, "device broke the protocol"},
                                           MountFault{"header-len-mismatch", EIO, "device broke the protocol"},
                                           MountFault{"unknown-unique", EIO, "device broke the protocol"},
                                           MountFault{"error-out-of-range", EIO, "device broke the protocol"},
                                           MountFault{"die", ENOTCONN, "device lost"}),
                         [](const auto& param) { return fault_test_name(param.param.fault); });

TEST_F(TestBackendMount, ADeviceAnsweringEIOKeepsTheMountAndUnmountsCleanly) {
  TestBackend backend({"--fault", "eio@mkdir"});
  ToolRun tool(mnt.path(), {"-o", "socket=" + backend.socket_path(), "testfs"});
  ASSERT_TRUE(wait_mount_state(mnt.path(), kType, 10000));
  ASSERT_EQ(mkdir((mnt / "d").c_str(), 0755), -1);
  EXPECT_EQ(errno, EIO);
  struct stat st;
  EXPECT_EQ(stat((mnt / "d").c_str(), &st), -1);
  EXPECT_EQ(errno, EIO) << "every request after the first EIO answers EIO";
  EXPECT_EQ(run({"fusermount3", "-u", mnt.path()}).status, 0);
  EXPECT_EQ(tool.wait(10000), 0) << tool.stderr_text();
  EXPECT_EQ(mounted_type(mnt.path()), "");
}
