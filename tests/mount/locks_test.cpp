// Who locks. By default the guest kernel keeps POSIX (fcntl) and flock locks, local to the mount:
// processes contend through the kernel, a lock taken on the host directory is not seen. With
// -o remote_locks the device keeps them (virtiofsd -o posix_lock,flock), a host lock is seen, and
// waiters wait in virtiofs-mount, never at the device, so however many there are, the unlock
// gets through. Each lock is held by its own child process.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>
#include <vector>

#include "mount/fixture.hpp"

namespace virtiofs::test {
namespace {

enum class Kind { kFlock, kFcntl };

// Takes or drops an exclusive lock on fd, blocking; 0 or an errno.
int lock(int fd, Kind kind, bool take) {
  if (kind == Kind::kFlock) return flock(fd, take ? LOCK_EX : LOCK_UN) == 0 ? 0 : errno;
  struct flock fl {};
  fl.l_type = take ? F_WRLCK : F_UNLCK;
  fl.l_whence = SEEK_SET;
  return fcntl(fd, take ? F_SETLKW : F_SETLK, &fl) == 0 ? 0 : errno;
}

// A child that opens `path`, waits for an exclusive lock, says 'L' (or 'E' on error), and on
// the parent's word drops it and says 'U'.
class Locker {
 public:
  Locker(const std::string& path, Kind kind) {
    int ev[2], ctl[2];
    if (pipe2(ev, O_CLOEXEC) != 0 || pipe2(ctl, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
    pid_ = fork();
    if (pid_ == 0) {
      const int fd = open(path.c_str(), O_RDWR);
      char c = fd >= 0 && lock(fd, kind, true) == 0 ? 'L' : 'E';
      [[maybe_unused]] ssize_t n = write(ev[1], &c, 1);
      n = read(ctl[0], &c, 1);
      c = lock(fd, kind, false) == 0 ? 'U' : 'E';
      n = write(ev[1], &c, 1);
      _exit(0);
    }
    close(ev[1]);
    close(ctl[0]);
    events_ = ev[0];
    control_ = ctl[1];
  }
  ~Locker() {
    close(control_);
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    close(events_);
  }
  // The child's next word within `ms`, or 0.
  char next(int ms) {
    pollfd p{events_, POLLIN, 0};
    char c = 0;
    if (poll(&p, 1, ms) == 1 && read(events_, &c, 1) != 1) c = 0;
    return c;
  }
  void unlock() {
    const char c = 'u';
    [[maybe_unused]] ssize_t n = write(control_, &c, 1);
  }
  // SIGKILL; whether the child is gone within `ms` (not stuck in an uninterruptible wait).
  bool killed_within(int ms) {
    kill(pid_, SIGKILL);
    for (int waited = 0; waited < ms; waited += 5) {
      if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return false;
  }

 private:
  pid_t pid_ = -1;
  int events_ = -1;
  int control_ = -1;
};

constexpr int kBoundMs = 5000;  // far above what any step takes unless a lock is lost
constexpr int kStillWaitingMs = 300;

class Locks : public MountTest, public ::testing::WithParamInterface<Kind> {
 protected:
  void SetUp() override {}  // each test mounts as it needs
  // virtiofsd that would lock (posix_lock, flock), mounted with `options`.
  void mount_with(const std::string& options) {
    backend = std::make_unique<Virtiofsd>(
        share.path(), std::vector<std::string>{"-o", "posix_lock", "-o", "flock"});
    mount = std::make_unique<ForegroundMount>(
        mnt.path(), std::vector<std::string>{"-o", "socket=" + backend->socket_path() + options, "testfs"});
    write_file(m("f"), "x");
  }
  // The test process itself locks the file in the host directory (as another client would).
  int host_lock(bool take) {
    if (host_fd < 0) host_fd = open(h("f").c_str(), O_RDWR | O_CLOEXEC);
    const Kind kind = GetParam();
    if (kind == Kind::kFlock) return flock(host_fd, take ? LOCK_EX | LOCK_NB : LOCK_UN) == 0 ? 0 : errno;
    struct flock fl {};
    fl.l_type = take ? F_WRLCK : F_UNLCK;
    fl.l_whence = SEEK_SET;
    return fcntl(host_fd, F_OFD_SETLK, &fl) == 0 ? 0 : errno;
  }
  void TearDown() override {
    if (host_fd >= 0) close(host_fd);
    MountTest::TearDown();
  }
  // holder has the lock and `waiter` waits: the holder unlocks, the waiter gets it.
  void expect_handover(Locker& holder, Locker& waiter) {
    ASSERT_EQ(waiter.next(kStillWaitingMs), 0) << "two processes hold one exclusive lock";
    const auto t0 = std::chrono::steady_clock::now();
    holder.unlock();
    EXPECT_EQ(holder.next(kBoundMs), 'U') << "the unlock did not get through";
    EXPECT_EQ(waiter.next(kBoundMs), 'L') << "the waiter never got the lock";
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
    std::printf("lock handed over in %lld ms\n", static_cast<long long>(ms.count()));
  }
  int host_fd = -1;
};

TEST_P(Locks, TheKernelLocksByDefault) {
  mount_with("");
  Locker holder(m("f"), GetParam());
  ASSERT_EQ(holder.next(kBoundMs), 'L');
  Locker waiter(m("f"), GetParam());
  expect_handover(holder, waiter);
  // Local to this mount: a lock on the host directory does not stop a process here.
  waiter.unlock();
  ASSERT_EQ(waiter.next(kBoundMs), 'U');
  ASSERT_EQ(host_lock(true), 0);
  Locker local(m("f"), GetParam());
  EXPECT_EQ(local.next(kBoundMs), 'L') << "the mount saw the host's lock: locks went to the device";
}

TEST_P(Locks, RemoteLocksAreTheDevicesAndWaitInTheBridge) {
  mount_with(",remote_locks");
  Locker holder(m("f"), GetParam());
  ASSERT_EQ(holder.next(kBoundMs), 'L') << "virtiofsd 7.2 refuses SETLKW: it must never get one";
  Locker waiter(m("f"), GetParam());
  expect_handover(holder, waiter);
  // The device's lock: a process on the host directory sees it, and the mount sees the host's.
  EXPECT_NE(host_lock(true), 0);
  waiter.unlock();
  ASSERT_EQ(waiter.next(kBoundMs), 'U');
  ASSERT_EQ(host_lock(true), 0);
  Locker after_host(m("f"), GetParam());
  EXPECT_EQ(after_host.next(kStillWaitingMs), 0) << "the mount did not see the host's lock";
  ASSERT_EQ(host_lock(false), 0);
  EXPECT_EQ(after_host.next(kBoundMs), 'L');
}

// A waiter killed while the lock is held elsewhere goes at once: the kernel's INTERRUPT ends
// the bridge's wait with EINTR (without it, the kernel would wait for the lock to be granted).
TEST_P(Locks, AKilledRemoteWaiterGoesAtOnce) {
  mount_with(",remote_locks");
  ASSERT_EQ(host_lock(true), 0);
  Locker waiter(m("f"), GetParam());
  ASSERT_EQ(waiter.next(kStillWaitingMs), 0);
  EXPECT_TRUE(waiter.killed_within(kBoundMs)) << "the waiter is stuck until the lock frees";
  ASSERT_EQ(host_lock(false), 0);
}

// More waiters than the queue has descriptors: were they held at the device, the unlock would
// find no room (and virtiofsd no thread) and wait behind them for ever.
TEST_P(Locks, ManyRemoteWaitersDoNotBlockTheUnlock) {
  mount_with(",remote_locks,queue_size=8");
  Locker holder(m("f"), GetParam());
  ASSERT_EQ(holder.next(kBoundMs), 'L');
  std::vector<std::unique_ptr<Locker>> waiters;
  for (int i = 0; i < 16; ++i) waiters.push_back(std::make_unique<Locker>(m("f"), GetParam()));
  std::this_thread::sleep_for(std::chrono::milliseconds(kStillWaitingMs));
  holder.unlock();
  ASSERT_EQ(holder.next(kBoundMs), 'U') << "the unlock waited behind the waiters";
  // Each gets the lock in turn and passes it on.
  size_t served = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(4 * kBoundMs);
  std::vector<bool> done(waiters.size());
  while (served < waiters.size() && std::chrono::steady_clock::now() < deadline) {
    for (size_t i = 0; i < waiters.size(); ++i) {
      if (done[i]) continue;
      const char c = waiters[i]->next(0);
      if (c == 0) continue;
      ASSERT_EQ(c, 'L');
      waiters[i]->unlock();
      ASSERT_EQ(waiters[i]->next(kBoundMs), 'U');
      done[i] = true;
      ++served;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(served, waiters.size()) << "waiters left without the lock";
}

INSTANTIATE_TEST_SUITE_P(Mount, Locks, ::testing::Values(Kind::kFlock, Kind::kFcntl),
                         [](const auto& p) { return p.param == Kind::kFlock ? "Flock" : "Fcntl"; });

}  // namespace
}  // namespace virtiofs::test
