// Who may do what on a mount other users can reach. virtiofsd opens files with CAP_DAC_OVERRIDE
// and FUSE checks nothing by itself, so the kernel must check owners and modes
// (default_permissions). Each attempt runs in a child that has become another user; the host
// directory shows what happened.
#include <grp.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <thread>

#include "mount/fixture.hpp"

namespace virtiofs::test {
namespace {

constexpr uid_t kOtherUser = 65534;  // nobody
constexpr int kCouldNotBecomeOtherUser = 250;
constexpr int kWrongContent = 251;

// Runs `attempt` in a child that is uid/gid kOtherUser with no supplementary groups. Returns
// what it returned (0 = allowed, else the errno it failed with); -1 (and a failure) if the child
// did not finish in time, so that no child outlives the test.
int as_other_user(const std::function<int()>& attempt) {
  const pid_t child = fork();
  if (child == 0) {
    if (setgroups(0, nullptr) != 0 || setgid(kOtherUser) != 0 || setuid(kOtherUser) != 0)
      _exit(kCouldNotBecomeOtherUser);
    _exit(attempt());
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  int status = 0;
  while (waitpid(child, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      kill(child, SIGKILL);
      waitpid(child, nullptr, 0);
      ADD_FAILURE() << "the other user's attempt hung";
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_TRUE(WIFEXITED(status)) << "status " << status;
  EXPECT_NE(WEXITSTATUS(status), kCouldNotBecomeOtherUser);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int errno_unless(bool ok) { return ok ? 0 : errno; }

// Attempts, run in the child: only syscalls, no allocation after fork.
int open_and_close(const char* path, int flags) {
  const int fd = open(path, flags);
  if (fd < 0) return errno;
  close(fd);
  return 0;
}
int read_expecting(const char* path, const char* want) {
  const int fd = open(path, O_RDONLY);
  if (fd < 0) return errno;
  char buf[256] = {};
  const ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n < 0) return errno;
  return std::strcmp(buf, want) == 0 ? 0 : kWrongContent;
}
int execute(const char* path) {
  char* const argv[] = {const_cast<char*>(path), nullptr};
  char* const envp[] = {nullptr};
  execve(path, argv, envp);
  return errno;  // the script itself exits 0
}

mode_t host_mode(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 ? st.st_mode & 07777 : 0;
}

// Mounts in each test (start_mount), with the options it is about.
class Permissions : public MountTest {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root: to mount, and to become another user";
    // The other user must be able to reach the mount point and the mount's root (the share).
    ASSERT_EQ(chmod(mnt.path().c_str(), 0755), 0);
    ASSERT_EQ(chmod(share.path().c_str(), 0755), 0);
    host_file("secret", "root only", 0600);
    host_file("public", "for everyone", 0644);
    host_file("script", "#!/bin/sh\nexit 0\n", 0700);
    host_file("public-script", "#!/bin/sh\nexit 0\n", 0755);
    for (auto [dir, mode] : {std::pair{"private", 0700}, std::pair{"readonly", 0755}}) {
      ASSERT_EQ(mkdir(h(dir).c_str(), mode), 0);
      host_file(std::string(dir) + "/f", "kept", 0644);
    }
  }

  void host_file(const std::string& rel, const std::string& data, mode_t mode) {
    write_file(h(rel), data);
    ASSERT_EQ(chmod(h(rel).c_str(), mode), 0);
  }
  // The control: without it a refusal could mean the user cannot reach the mount at all.
  void expect_other_user_reads_public_file() {
    const std::string path = m("public");
    EXPECT_EQ(as_other_user([&] { return read_expecting(path.c_str(), "for everyone"); }), 0)
        << "the other user cannot read a 0644 file: it does not reach the mount";
  }
};

TEST_F(Permissions, ByDefaultOtherUsersReachTheMountAndTheKernelChecks) {
  TempDir logs;
  start_mount("", {"-d"}, logs / "mount.log");
  const std::string options = mounted_options(mnt.path());
  EXPECT_NE(options.find("default_permissions"), std::string::npos) << options;
  EXPECT_NE(options.find("allow_other"), std::string::npos) << options;
  expect_other_user_reads_public_file();
  const std::string secret = m("secret");
  EXPECT_EQ(as_other_user([&] { return open_and_close(secret.c_str(), O_RDONLY); }), EACCES);
  EXPECT_NE(read_file(logs / "mount.log").find("permissions: checked by the kernel"), std::string::npos)
      << "the -d log does not state the permission model";
}

TEST_F(Permissions, OtherUserCannotReadOrWriteARootOnlyFile) {
  start_mount(",allow_other");
  expect_other_user_reads_public_file();
  const std::string secret = m("secret");
  EXPECT_EQ(as_other_user([&] { return open_and_close(secret.c_str(), O_RDONLY); }), EACCES);
  EXPECT_EQ(as_other_user([&] { return open_and_close(secret.c_str(), O_WRONLY); }), EACCES);
  EXPECT_EQ(as_other_user([&] { return open_and_close(secret.c_str(), O_WRONLY | O_APPEND); }), EACCES);
  EXPECT_EQ(as_other_user([&] { return open_and_close(secret.c_str(), O_RDWR | O_TRUNC); }), EACCES);
  EXPECT_EQ(as_other_user([&] { return errno_unless(truncate(secret.c_str(), 0) == 0); }), EACCES);
  EXPECT_EQ(read_file(h("secret")), "root only");
}

TEST_F(Permissions, OtherUserCannotExecuteARootOnlyScript) {
  start_mount(",allow_other");
  const std::string script = m("script"), public_script = m("public-script");
  EXPECT_EQ(as_other_user([&] { return execute(public_script.c_str()); }), 0)
      << "the other user cannot run a 0755 script: exec does not work on this mount at all";
  EXPECT_EQ(as_other_user([&] { return execute(script.c_str()); }), EACCES);
}

TEST_F(Permissions, OtherUserCannotChangeARootFilesModeOwnerOrTimes) {
  start_mount(",allow_other");
  expect_other_user_reads_public_file();
  const std::string secret = m("secret");
  EXPECT_EQ(as_other_user([&] { return errno_unless(chmod(secret.c_str(), 0666) == 0); }), EPERM);
  EXPECT_EQ(as_other_user([&] { return errno_unless(chown(secret.c_str(), kOtherUser, kOtherUser) == 0); }),
            EPERM);
  const timespec times[2] = {{1, 0}, {1, 0}};
  EXPECT_EQ(as_other_user([&] { return errno_unless(utimensat(AT_FDCWD, secret.c_str(), times, 0) == 0); }),
            EPERM);
  struct stat st {};
  ASSERT_EQ(stat(h("secret").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_uid, 0u);
  EXPECT_NE(st.st_mtim.tv_sec, 1);
}

TEST_F(Permissions, OtherUserCannotRenameOrUnlinkInRootsDirectories) {
  start_mount(",allow_other");
  expect_other_user_reads_public_file();
  // 0700: the user may not even look inside; 0755: it may look but not change the entries.
  for (const char* dir : {"private", "readonly"}) {
    const std::string from = m(std::string(dir) + "/f"), to = m(std::string(dir) + "/g");
    const std::string out = m(std::string("moved-out-of-") + dir);
    EXPECT_EQ(as_other_user([&] { return errno_unless(rename(from.c_str(), to.c_str()) == 0); }), EACCES) << dir;
    EXPECT_EQ(as_other_user([&] { return errno_unless(rename(from.c_str(), out.c_str()) == 0); }), EACCES) << dir;
    EXPECT_EQ(as_other_user([&] { return errno_unless(unlink(from.c_str()) == 0); }), EACCES) << dir;
    EXPECT_EQ(read_file(h(std::string(dir) + "/f")), "kept") << dir;
  }
  const std::string private_dir = m("private");
  EXPECT_EQ(as_other_user([&] { return errno_unless(rmdir(private_dir.c_str()) == 0); }), EACCES);
  EXPECT_EQ(host_mode(h("private")), 0700u);
}

TEST_F(Permissions, OtherUserWritesWhereModesAllowAndOwnsWhatItCreates) {
  start_mount(",allow_other");
  ASSERT_EQ(mkdir(h("drop").c_str(), 0777), 0);
  ASSERT_EQ(chmod(h("drop").c_str(), 0777), 0);  // past the umask
  const std::string created = m("drop/mine");
  EXPECT_EQ(as_other_user([&] {
              const int fd = open(created.c_str(), O_CREAT | O_WRONLY, 0600);
              if (fd < 0) return errno;
              const int rc = errno_unless(write(fd, "mine", 4) == 4);
              close(fd);
              return rc;
            }),
            0);
  struct stat st {};
  ASSERT_EQ(stat(h("drop/mine").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, kOtherUser);
  EXPECT_EQ(read_file(h("drop/mine")), "mine");
  // Root's file in the world-writable directory stays root's to change.
  host_file("drop/roots", "root", 0600);
  const std::string roots = m("drop/roots");
  EXPECT_EQ(as_other_user([&] { return open_and_close(roots.c_str(), O_WRONLY); }), EACCES);
}

TEST_F(Permissions, NoDefaultPermissionsLeavesTheChecksToTheDevice) {
  // For a device that checks permissions itself; virtiofsd does not, so the secret leaks:
  // proof that the kernel's checks are really off.
  start_mount(",no_default_permissions,allow_other");
  const std::string options = mounted_options(mnt.path());
  EXPECT_EQ(options.find("default_permissions"), std::string::npos) << options;
  const std::string secret = m("secret");
  EXPECT_EQ(as_other_user([&] { return read_expecting(secret.c_str(), "root only"); }), 0);
}

TEST_F(Permissions, NoAllowOtherKeepsTheMountToItsOwner) {
  start_mount(",no_allow_other");
  const std::string options = mounted_options(mnt.path());
  EXPECT_EQ(options.find("allow_other"), std::string::npos) << options;
  EXPECT_NE(options.find("default_permissions"), std::string::npos) << options;
  EXPECT_EQ(read_file(m("public")), "for everyone");
  const std::string path = m("public");
  EXPECT_EQ(as_other_user([&] { return open_and_close(path.c_str(), O_RDONLY); }), EACCES);
}

}  // namespace
}  // namespace virtiofs::test
