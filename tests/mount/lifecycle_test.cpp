// virtiofs-mount's life cycle (foreground, daemon, fstab through mount.fuse3, unmount by
// fusermount3/umount, SIGTERM while busy, backend death) and its answers to bad input.
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "mount/fixture.hpp"

namespace virtiofs::test {
namespace {

constexpr const char* kType = "fuse.virtiofs-mount";

class Lifecycle : public ::testing::Test {
 protected:
  void SetUp() override { write_file(share / "hello.txt", "hello"); }
  // The virtiofsd a share= mount started: found by its source= argument.
  std::vector<pid_t> backends() const { return pids_with_arg("source=" + share.path()); }
  bool backends_gone(int timeout_ms) const {
    for (pid_t p : backends())
      if (!wait_gone(p, timeout_ms)) return false;
    return true;
  }

  TempDir share;
  TempDir mnt;
};

TEST_F(Lifecycle, ForegroundUntilFusermountUnmounts) {
  ForegroundMount fg(mnt.path(), {"-o", "share=" + share.path(), "myfs"});
  EXPECT_EQ(read_file(mnt / "hello.txt"), "hello");
  EXPECT_EQ(backends().size(), 1u);
  auto r = run({"fusermount3", "-u", mnt.path()});
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(fg.wait(10000), 0);
  EXPECT_EQ(mounted_type(mnt.path()), "");
  EXPECT_TRUE(backends_gone(5000)) << "the virtiofsd started by share= outlived the mount";
}

TEST_F(Lifecycle, DaemonReturnsOnceTheMountIsLive) {
  auto r = run({mount_binary(), "-o", "share=" + share.path(), "myfs", mnt.path()});
  ASSERT_EQ(r.status, 0) << r.output;
  // No waiting: the parent exits only after the kernel's INIT was answered.
  EXPECT_EQ(mounted_type(mnt.path()), kType);
  EXPECT_EQ(read_file(mnt / "hello.txt"), "hello");
  const auto daemon = pids_with_arg(mnt.path());
  ASSERT_EQ(daemon.size(), 1u);
  auto u = run({"umount", mnt.path()});
  ASSERT_EQ(u.status, 0) << u.output;
  EXPECT_TRUE(wait_gone(daemon[0], 10000)) << "daemon still running after umount";
  EXPECT_TRUE(backends_gone(5000));
  EXPECT_EQ(mounted_type(mnt.path()), "");
}

TEST_F(Lifecycle, FstabStyleMountThroughMountFuse3) {
  // mount(8) runs helpers with a fixed PATH (/usr/local/sbin:...:/bin), where an installed
  // virtiofs-mount lives. The test puts the build's binary there in a private mount namespace,
  // then mounts as an fstab line would, fstab-only options included (they are ignored).
  const std::string script =
      "set -e\n"
      "mount -t tmpfs tmpfs /usr/local/sbin\n"
      "ln -s " + std::string(mount_binary()) + " /usr/local/sbin/virtiofs-mount\n"
      "mount -t fuse.virtiofs-mount -o share=" + share.path() +
      ",nofail,_netdev,x-systemd.automount,default_permissions myfs " + mnt.path() + "\n"
      "grep -q ' " + mnt.path() + " fuse.virtiofs-mount ' /proc/self/mounts\n"
      "echo fstab > " + (mnt / "via-fstab.txt") + "\n"
      "cat " + (mnt / "hello.txt") + "\n"
      "umount " + mnt.path() + "\n";
  auto r = run({"unshare", "--mount", "--propagation", "private", "sh", "-c", script});
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("hello"), std::string::npos);
  EXPECT_EQ(read_file(share / "via-fstab.txt"), "fstab\n");
  for (pid_t p : pids_with_arg(mnt.path())) EXPECT_TRUE(wait_gone(p, 10000));
  EXPECT_TRUE(backends_gone(5000));
}

TEST_F(Lifecycle, SigtermWhileBusyLeavesNoMountAndNoBackend) {
  ForegroundMount fg(mnt.path(), {"-o", "share=" + share.path(), "myfs"});
  // A writer holding a file open and writing as fast as it can.
  pid_t writer = fork();
  if (writer == 0) {
    int fd = open((mnt / "busy").c_str(), O_CREAT | O_WRONLY, 0644);
    std::string block(1 << 20, 'b');
    while (fd >= 0 && pwrite(fd, block.data(), block.size(), 0) > 0) {
    }
    _exit(0);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ASSERT_EQ(kill(fg.pid(), SIGTERM), 0);
  EXPECT_EQ(fg.wait(15000), 0) << "virtiofs-mount hung on SIGTERM";
  EXPECT_TRUE(wait_mount_state(mnt.path(), "", 5000)) << "stale mount left behind";
  EXPECT_TRUE(wait_gone(writer, 10000)) << "the writer hangs on the dead mount";
  kill(writer, SIGKILL);
  waitpid(writer, nullptr, 0);
  EXPECT_TRUE(backends_gone(5000));
}

TEST_F(Lifecycle, BackendDeathEndsTheMountWithAMessage) {
  Virtiofsd backend(share.path());
  int err[2];
  ASSERT_EQ(pipe(err), 0);
  pid_t tool = fork();
  if (tool == 0) {
    dup2(err[1], 2);
    execl(mount_binary(), mount_binary(), "-f", "-o", ("socket=" + backend.socket_path()).c_str(), "myfs",
          mnt.path().c_str(), nullptr);
    _exit(127);
  }
  close(err[1]);
  ASSERT_TRUE(wait_mount_state(mnt.path(), kType, 10000));
  ASSERT_EQ(read_file(mnt / "hello.txt"), "hello");  // live: INIT answered
  backend.kill_now();
  int status = 0;
  for (int i = 0; i < 500 && waitpid(tool, &status, WNOHANG) == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_TRUE(WIFEXITED(status)) << "virtiofs-mount did not exit after its backend died";
  EXPECT_EQ(WEXITSTATUS(status), 1);
  char buf[512] = {};
  [[maybe_unused]] ssize_t n = read(err[0], buf, sizeof(buf) - 1);
  close(err[0]);
  EXPECT_NE(std::string(buf).find("device lost"), std::string::npos) << buf;
  EXPECT_TRUE(wait_mount_state(mnt.path(), "", 5000));
}

// Once daemonized, messages go to syslog: in a private mount namespace whose /dev is a fresh
// tmpfs (with null and fuse), a datagram socket at /dev/log stands in for the syslog daemon; the
// backend dies under the live mount and the daemon's "device lost" must arrive there.
TEST_F(Lifecycle, DaemonReportsToSyslog) {
  if (run({"sh", "-c", "command -v python3"}).status != 0) GTEST_SKIP() << "needs python3";
  Virtiofsd backend(share.path());
  TempDir logs;
  const std::string received = logs / "syslog.txt";
  const std::string script =
      "set -e\n"
      "mount -t tmpfs tmpfs /dev\n"
      "mknod -m 666 /dev/null c 1 3\n"
      "mknod -m 666 /dev/fuse c 10 229\n"
      "python3 -c 'import socket\n"
      "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
      "s.bind(\"/dev/log\")\n"
      "s.settimeout(20)\n"
      "while True: print(s.recv(4096).decode(errors=\"replace\"), flush=True)\n"
      "' > " + received + " 2>/dev/null &\n"
      "listener=$!\n"
      "for i in $(seq 100); do [ -S /dev/log ] && break; sleep 0.05; done\n" +
      mount_binary() + " -o socket=" + backend.socket_path() + " myfs " + mnt.path() + "\n"
      "cat " + (mnt / "hello.txt") + "\n"
      "kill -9 " + std::to_string(backend.pid()) + "\n"
      "for i in $(seq 200); do grep -q 'device lost' " + received + " && break; sleep 0.05; done\n"
      "kill $listener 2>/dev/null || true\n";
  auto r = run({"unshare", "--mount", "--propagation", "private", "sh", "-c", script});
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("hello"), std::string::npos) << "mounted and live: " << r.output;
  const std::string log = read_file(received);
  // <27>: the daemon facility (3 << 3), priority error (3).
  EXPECT_NE(log.find("<27>"), std::string::npos) << log;
  EXPECT_NE(log.find("virtiofs-mount["), std::string::npos) << log;
  EXPECT_NE(log.find("myfs: device lost"), std::string::npos) << log;
  EXPECT_EQ(r.output.find("device lost"), std::string::npos) << "not on the terminal it let go of";
}

// ---- bad input: one line, non-zero exit, nothing mounted ----

class BadInput : public Lifecycle {
 protected:
  // Exit status 1 (failed) unless told 2 (bad usage).
  void expect_refused(const std::vector<std::string>& args, const std::string& says, int status = 1) {
    std::vector<std::string> argv = {mount_binary()};
    argv.insert(argv.end(), args.begin(), args.end());
    auto r = run(argv, 20000);
    EXPECT_EQ(r.status, status) << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
    EXPECT_EQ(r.output.rfind("virtiofs-mount: ", 0), 0u) << r.output;
    EXPECT_NE(r.output.find(says), std::string::npos) << r.output;
    EXPECT_EQ(mounted_type(mnt.path()), "");
    if (!mounted_type(mnt.path()).empty()) {
      // Wrongly accepted: unmount, so that the daemon and its backend go with the test.
      umount2(mnt.path().c_str(), MNT_DETACH);
      for (pid_t p : pids_with_arg(mnt.path())) EXPECT_TRUE(wait_gone(p, 10000));
    }
    EXPECT_TRUE(backends().empty());
  }
};

// A UNIX socket bound at `path` (and listening, if asked); -1 on failure.
int bound_unix_socket(const std::string& path, bool listening) {
  const int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  if (s < 0 || bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || (listening && listen(s, 1) != 0)) {
    if (s >= 0) close(s);
    return -1;
  }
  return s;
}

TEST_F(BadInput, MissingSocket) {
  expect_refused({"-o", "socket=" + (share / "nope.sock"), "t", mnt.path()}, "No such file");
}

TEST_F(BadInput, SocketThatIsAFile) {
  expect_refused({"-o", "socket=" + (share / "hello.txt"), "t", mnt.path()},
                 share / "hello.txt" + " is a regular file, not a UNIX socket (give virtiofsd's --socket-path)");
}

TEST_F(BadInput, SocketThatIsNotVhostUser) {
  TempDir dir;
  const std::string path = dir / "not-vhost.sock";
  const int s = bound_unix_socket(path, /*listening=*/true);
  ASSERT_GE(s, 0);
  std::thread server([s] {
    int c = accept(s, nullptr, nullptr);
    const char junk[] = "HTTP/1.1 400 Bad Request\r\n\r\n";
    [[maybe_unused]] ssize_t n = write(c, junk, sizeof(junk));
    close(c);
  });
  expect_refused({"-o", "socket=" + path, "t", mnt.path()}, "no usable vhost-user backend");
  server.join();
  close(s);
}

TEST_F(BadInput, SocketThatIsADirectory) {
  expect_refused({"-o", "socket=" + share.path(), "t", mnt.path()}, "is a directory, not a UNIX socket");
}

TEST_F(BadInput, DeadSocket) {
  TempDir dir;
  const std::string path = dir / "dead.sock";
  const int s = bound_unix_socket(path, /*listening=*/false);
  ASSERT_GE(s, 0);
  close(s);  // the socket file stays, nobody listens
  expect_refused({"-o", "socket=" + path, "t", mnt.path()}, "nobody is listening");
}

TEST_F(BadInput, MountPointThatIsAFile) {
  write_file(share / "plain", "x");
  expect_refused({"-o", "share=" + share.path(), "t", share / "plain"}, "is not a directory");
}

TEST_F(BadInput, BusyMountPoint) {
  ASSERT_EQ(::mount("tmpfs", mnt.path().c_str(), "tmpfs", 0, nullptr), 0);
  const std::vector<std::string> args = {"-o", "share=" + share.path(), "t", mnt.path()};
  auto r = run([&] {
    std::vector<std::string> argv = {mount_binary()};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }(), 20000);
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("is busy: something is already mounted there"), std::string::npos) << r.output;
  EXPECT_EQ(mounted_type(mnt.path()), "tmpfs");
  EXPECT_EQ(::umount(mnt.path().c_str()), 0);
  EXPECT_TRUE(backends().empty());
}

TEST_F(BadInput, PermissionDenied) {
  // As nobody: the root-only socket directory cannot be reached.
  TempDir dir;
  chmod(dir.path().c_str(), 0700);
  const std::string path = dir / "backend.sock";
  const int s = bound_unix_socket(path, /*listening=*/true);
  ASSERT_GE(s, 0);
  TempDir open_mnt;
  chmod(open_mnt.path().c_str(), 0777);
  auto r = run({"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", mount_binary(), "-o",
                "socket=" + path, "t", open_mnt.path()},
               20000);
  close(s);
  EXPECT_NE(r.status, 0);
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
  EXPECT_NE(r.output.find("Permission denied"), std::string::npos) << r.output;
  EXPECT_EQ(mounted_type(open_mnt.path()), "");
}

TEST_F(BadInput, MissingMountPoint) {
  expect_refused({"-o", "share=" + share.path(), "t", mnt / "missing"}, "missing");
}

TEST_F(BadInput, NonEmptyMountPoint) {
  write_file(mnt / "occupant", "x");
  expect_refused({"-o", "share=" + share.path(), "t", mnt.path()}, "is not empty");
}

TEST_F(BadInput, UnknownOption) {
  expect_refused({"-o", "share=" + share.path() + ",frobnicate", "t", mnt.path()}, "frobnicate", 2);
}

TEST_F(BadInput, DefaultPermissionsAndItsOpposite) {
  expect_refused({"-o", "share=" + share.path() + ",default_permissions,no_default_permissions", "t", mnt.path()},
                 "default_permissions or no_default_permissions, not both", 2);
}

TEST_F(BadInput, AllowOtherAndItsOpposite) {
  expect_refused({"-o", "share=" + share.path() + ",no_allow_other,allow_other", "t", mnt.path()},
                 "allow_other or no_allow_other, not both", 2);
}

TEST_F(BadInput, AllowRootWhichTheBridgeCannotEnforce) {
  expect_refused({"-o", "share=" + share.path() + ",allow_root", "t", mnt.path()}, "allow_root is not supported", 2);
}

TEST_F(BadInput, UnknownTagWithoutSocketOrShare) {
  expect_refused({"nosuchtag", mnt.path()}, "no virtio-fs device with tag 'nosuchtag' (present: ");
}

TEST_F(BadInput, TagLongerThan36Bytes) {
  expect_refused({"-o", "share=" + share.path(), std::string(37, 't'), mnt.path()}, "longer than 36", 2);
}

TEST_F(BadInput, QueueSizeNotAPowerOfTwo) {
  expect_refused({"-o", "share=" + share.path() + ",queue_size=100", "t", mnt.path()}, "power of two", 2);
}

TEST_F(BadInput, ShareThatIsNotADirectory) {
  expect_refused({"-o", "share=" + (share / "hello.txt"), "t", mnt.path()}, "is not a directory");
}

TEST_F(BadInput, MissingMountPointArgumentIsBadUsage) {
  expect_refused({"-o", "share=" + share.path(), "t"}, "usage: virtiofs-mount", 2);
}

TEST_F(BadInput, UnknownCommandLineOptionIsBadUsage) {
  expect_refused({"--frobnicate", "t", mnt.path()}, "--frobnicate", 2);
}

TEST_F(BadInput, SocketAndShareTogetherIsBadUsage) {
  expect_refused({"-o", "share=" + share.path() + ",socket=/x.sock", "t", mnt.path()}, "not both", 2);
}

// ---- --help and --version ----

TEST(Usage, VersionNamesTheToolAndLibfuse) {
  auto r = run({mount_binary(), "--version"});
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.output.rfind("virtiofs-mount ", 0), 0u) << r.output;
  EXPECT_NE(r.output.find("libfuse 3."), std::string::npos) << r.output;
  EXPECT_EQ(run({mount_binary(), "-V"}).output, r.output);
}

TEST(Usage, HelpListsEveryOption) {
  auto r = run({mount_binary(), "--help"});
  EXPECT_EQ(r.status, 0);
  for (const char* option : {"-f ", "-d ", "-s,", "max_threads=", "share=", "socket=", "queue_size=",
                             "num_queues=", "poll_us=", "interrupts", "io_uring ", "io_uring_depth=",
                             "no_default_permissions", "allow_other", "no_allow_other", "--help",
                             "--version", "Exit status"})
    EXPECT_NE(r.output.find(option), std::string::npos) << option << " missing from:\n" << r.output;
}

}  // namespace
}  // namespace virtiofs::test
