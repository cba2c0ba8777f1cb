// virtiofs-mount against a test backend that misbehaves in ways the ring cannot catch: errors
// FUSE allows but the kernel refuses, reply bytes it reports but never wrote, headers it
// scribbles over after handing them back. Each test runs through /dev/fuse reads and through
// FUSE over io_uring (skipped where the kernel has none).
#include <sched.h>
#include <sys/mount.h>
#include <signal.h>
#include <sys/statvfs.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <optional>
#include <poll.h>
#include <thread>
#include <type_traits>

#include "mount/fixture.hpp"
#include "support/test_backend_process.hpp"
#include "support/uring_parameter.hpp"

namespace virtiofs::test {
namespace {

void pin_to_cpu(unsigned cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  sched_setaffinity(0, sizeof(set), &set);
}
void pin_to_cpu0() { pin_to_cpu(0); }

struct Statfs {
  int error = 0;  // errno of statvfs, 0 on success
  unsigned long bsize = 0, blocks = 0, files = 0, namemax = 0;
};
Statfs statfs_of(const std::string& path) {
  struct statvfs st {};
  if (statvfs(path.c_str(), &st) != 0) return {errno};
  return {0, st.f_bsize, st.f_blocks, st.f_files, st.f_namemax};
}

// The parameter: requests through FUSE over io_uring (one entry per CPU, so that a process
// pinned to one CPU always gets the same entry) instead of /dev/fuse reads.
class UntrustedDevice : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    if (GetParam()) {
      if (!UringParameter::exists()) GTEST_SKIP() << "this kernel has no FUSE over io_uring";
      uring_.emplace(true);
    }
  }
  void TearDown() override {
    if (mount_) {
      EXPECT_EQ(mount_->stop(), 0) << "virtiofs-mount did not stop cleanly:\n" << log();
    }
    mount_.reset();
  }
  // One reader thread, so that consecutive requests go through the same buffers. `apart`: the
  // backend on CPU 0 and the tool on CPU 1 (their threads inherit it), so that a device racing
  // the bridge runs beside it rather than waiting for its CPU.
  void start(const std::vector<std::string>& faults, bool apart = false) {
    std::vector<std::string> args;
    for (const auto& f : faults) args.insert(args.end(), {"--fault", f});
    cpu_set_t was;
    sched_getaffinity(0, sizeof(was), &was);
    apart = apart && std::thread::hardware_concurrency() >= 2;
    if (apart) pin_to_cpu(0);
    backend_.emplace(args);
    if (apart) pin_to_cpu(1);
    const std::string ring = GetParam() ? ",io_uring,io_uring_depth=1" : "";
    mount_.emplace(mnt.path(),
                   std::vector<std::string>{"-d", "-o", "socket=" + backend_->socket_path() + ",max_threads=1" + ring,
                                            "testfs"},
                   logdir / "log");
    sched_setaffinity(0, sizeof(was), &was);
  }
  std::string log() const { return read_file(logdir / "log"); }

  // Runs `call` in a child process and returns what it returned, or nothing if it did not
  // return within 5 s. A request the kernel never sees answered blocks its caller even through
  // SIGKILL (the kernel waits out what userspace holds), so then the mount is abandoned: the
  // tool is killed, which ends the connection and frees the child, and unmounted lazily.
  template <class T>
  std::optional<T> in_child(const std::function<T()>& call) {
    static_assert(std::is_trivially_copyable_v<T>);
    int out[2];
    if (pipe(out) != 0) return std::nullopt;
    const pid_t child = fork();
    if (child == 0) {
      close(out[0]);
      const T value = call();
      [[maybe_unused]] ssize_t n = write(out[1], &value, sizeof(value));
      _exit(0);
    }
    close(out[1]);
    std::optional<T> result;
    pollfd p{out[0], POLLIN, 0};
    T value{};
    if (poll(&p, 1, 5000) == 1 && read(out[0], &value, sizeof(value)) == sizeof(value)) result = value;
    if (!result) {
      kill(child, SIGKILL);
      kill(mount_->pid(), SIGKILL);
      mount_->wait(5000);
      mount_.reset();
      umount2(mnt.path().c_str(), MNT_DETACH);
    }
    waitpid(child, nullptr, 0);
    close(out[0]);
    return result;
  }
  // With io_uring, `opcode`'s requests must have come through the ring, or the test tested reads.
  void expect_path_taken(const char* opcode) {
    std::istringstream lines(log());
    bool ring = false, reads = false;
    for (std::string line; std::getline(lines, line);) {
      if (line.rfind("unique ", 0) != 0 || line.find(std::string(" ") + opcode + " ") == std::string::npos) continue;
      (line.find("(io_uring queue") != std::string::npos ? ring : reads) = true;
    }
    EXPECT_TRUE(GetParam() ? ring && !reads : reads && !ring) << opcode << " came the wrong way:\n" << log();
  }

  TempDir mnt, logdir;
  std::optional<UringParameter> uring_;
  std::optional<TestBackend> backend_;
  std::optional<ForegroundMount> mount_;
};

std::string path_name(const ::testing::TestParamInfo<bool>& info) { return info.param ? "IoUring" : "Reads"; }

// FUSE allows errors down to -4095; the kernel refuses a reply with one at or below -512 (it
// would never answer the request through /dev/fuse, and fails it with EINVAL through io_uring).
class KernelRefusedError : public UntrustedDevice {};

TEST_P(KernelRefusedError, ReachesTheCallerAsEIO) {
  const int errors[] = {-600, -2000, -4095};
  std::vector<std::string> faults;
  for (int e : errors) faults.push_back("error=" + std::to_string(e) + "@statfs");  // STATFS 1, 2, 3
  start(faults);
  for (int e : errors) {
    const auto got = in_child<Statfs>([&] { return statfs_of(mnt.path()); });
    ASSERT_TRUE(got) << "statvfs never returned: the device's error " << e << " left it unanswered";
    EXPECT_EQ(got->error, EIO) << e << ": " << std::strerror(got->error);
  }
  const auto after = in_child<Statfs>([&] { return statfs_of(mnt.path()); });
  ASSERT_TRUE(after);
  EXPECT_EQ(after->error, 0) << "the mount goes on after such errors";
  EXPECT_EQ(after->bsize, 4096u);
  expect_path_taken("STATFS");
  EXPECT_NE(log().find("error 600 is beyond what the kernel takes"), std::string::npos) << log();
}

INSTANTIATE_TEST_SUITE_P(Path, KernelRefusedError, ::testing::Bool(), path_name);

// A device that reports a reply it never wrote (its out header and used length say the whole
// reply) hands the kernel whatever its reply room held. The bridge clears reply rooms before
// the device gets them, so that is zeros, never an earlier request's bytes. One reader thread or
// one io_uring entry (the process pinned to one CPU), so the rooms are the same ones.
class StaleDeviceMemory : public UntrustedDevice {};

constexpr size_t kFileBytes = 128 * 1024;

struct ReadBack {
  int error = 0;            // errno of the first call that failed, 0 if none did
  bool first_intact = false;  // the non-zero file read back as written
  ssize_t got = 0;          // bytes read from the zero file
  size_t nonzero = 0;       // ... that were not zero
};

TEST_P(StaleDeviceMemory, AZeroFileReadAfterAnotherFileGivesZeros) {
  start({"unwritten-payload@read#2"});
  const std::string data = random_bytes(kFileBytes, 10);
  const auto r = in_child<ReadBack>([&] {
    pin_to_cpu0();
    ReadBack out;
    auto* buf = static_cast<char*>(std::aligned_alloc(4096, kFileBytes));
    // O_DIRECT: exactly one WRITE and one READ of 128 KiB each, no readahead.
    const int a = open((mnt / "a").c_str(), O_CREAT | O_RDWR | O_DIRECT, 0644);
    const int z = open((mnt / "zeros").c_str(), O_CREAT | O_RDWR | O_DIRECT, 0644);
    std::memcpy(buf, data.data(), kFileBytes);
    if (a < 0 || z < 0 || pwrite(a, buf, kFileBytes, 0) != static_cast<ssize_t>(kFileBytes) ||
        ftruncate(z, kFileBytes) != 0)
      return ReadBack{errno};
    std::memset(buf, 0, kFileBytes);
    if (pread(a, buf, kFileBytes, 0) != static_cast<ssize_t>(kFileBytes)) return ReadBack{errno};  // READ 1
    out.first_intact = std::memcmp(buf, data.data(), kFileBytes) == 0;
    std::memset(buf, 0, kFileBytes);
    out.got = pread(z, buf, kFileBytes, 0);  // READ 2: its payload never written
    if (out.got < 0) out.error = errno;
    for (ssize_t i = 0; i < out.got; ++i) out.nonzero += buf[i] != 0;
    return out;
  });
  ASSERT_TRUE(r) << "the reads never returned";
  ASSERT_EQ(r->error, 0) << std::strerror(r->error);
  EXPECT_TRUE(r->first_intact);
  EXPECT_EQ(r->got, static_cast<ssize_t>(kFileBytes));
  EXPECT_EQ(r->nonzero, 0u) << "bytes of an earlier reply or request reached the reader";
  expect_path_taken("READ");
}

// The same for a fixed-size reply: STATFS after a file was written, read and stat'ed.
TEST_P(StaleDeviceMemory, AStatfsReplyNeverWrittenIsZeros) {
  start({"unwritten-payload@statfs"});
  const std::string data = random_bytes(kFileBytes, 11);
  const auto r = in_child<Statfs>([&] {
    pin_to_cpu0();
    write_file(mnt / "a", data);
    struct stat st;
    for (int i = 0; i < 4; ++i) stat((mnt / "a").c_str(), &st);
    if (read_file(mnt / "a") != data) return Statfs{EILSEQ};
    return statfs_of(mnt.path());
  });
  ASSERT_TRUE(r) << "statvfs never returned";
  ASSERT_EQ(r->error, 0) << std::strerror(r->error);
  EXPECT_EQ(r->bsize, 0u) << "an earlier reply's bytes reached the caller";
  EXPECT_EQ(r->blocks, 0u);
  EXPECT_EQ(r->files, 0u);
  EXPECT_EQ(r->namemax, 0u);
  expect_path_taken("STATFS");
}

INSTANTIATE_TEST_SUITE_P(Path, StaleDeviceMemory, ::testing::Bool(), path_name);

// The device spoils the unique of each STATFS's in header, and again where the driver puts the
// reply header if that is memory it can write: each statvfs must still get its own answer.
// Where the kernel reads a reply header from device memory, the device (on a CPU of its own)
// wins the race to it for most of the requests.
class ScribbledHeader : public UntrustedDevice {};

TEST_P(ScribbledHeader, EveryRequestIsStillAnsweredRight) {
  constexpr int kRequests = 20;
  start(std::vector<std::string>(kRequests, "scribble-header@statfs"), true);
  for (int i = 0; i < kRequests; ++i) {
    const auto r = in_child<Statfs>([&] { return statfs_of(mnt.path()); });
    ASSERT_TRUE(r) << "statvfs " << i << " never returned";
    EXPECT_EQ(r->error, 0) << "statvfs " << i << ": " << std::strerror(r->error);
    EXPECT_EQ(r->bsize, 4096u);
  }
  expect_path_taken("STATFS");
}

INSTANTIATE_TEST_SUITE_P(Path, ScribbledHeader, ::testing::Bool(), path_name);

}  // namespace
}  // namespace virtiofs::test
