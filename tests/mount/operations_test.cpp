// Every operation of the core list driven through a real mount with ordinary syscalls, each
// result checked on the host directory (and host changes checked through the mount).
#include <dirent.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <linux/fs.h>

#include <cstring>
#include <filesystem>
#include <set>
#include <chrono>
#include <thread>

#include "mount/fixture.hpp"

namespace virtiofs::test {
namespace {

using Ops = MountTest;

TEST_F(Ops, PwriteAtOddOffsetsAndReadBack) {
  int fd = open(m("odd").c_str(), O_CREAT | O_RDWR, 0644);
  ASSERT_GE(fd, 0);
  const std::string a = random_bytes(70001, 1), b = random_bytes(333, 2);
  ASSERT_EQ(pwrite(fd, a.data(), a.size(), 13), static_cast<ssize_t>(a.size()));
  ASSERT_EQ(pwrite(fd, b.data(), b.size(), 65531), static_cast<ssize_t>(b.size()));
  std::string expect(13, '\0');
  expect += a;
  expect.replace(65531, b.size(), b);
  std::string got(expect.size(), '\0');
  ASSERT_EQ(pread(fd, got.data(), got.size(), 0), static_cast<ssize_t>(got.size()));
  close(fd);
  EXPECT_EQ(got, expect);
  EXPECT_EQ(read_file(h("odd")), expect);
}

TEST_F(Ops, HostWritesAreSeenThroughTheMount) {
  const std::string data = random_bytes(200000, 3);
  write_file(h("from-host"), data);
  EXPECT_EQ(read_file(m("from-host")), data);
}

TEST_F(Ops, RandomPageReadsWithNoPageCacheGetExactlyWhatWasAsked) {
  // One page per READ (no readahead, caches dropped): virtiofsd 7.2 fills all the reply room it
  // is given, so the bridge must give READ exactly the room the kernel asked for.
  const std::string data = random_bytes(4 << 20, 11);
  write_file(h("pages"), data);
  sync();
  std::ofstream("/proc/sys/vm/drop_caches") << "3";
  int fd = open(m("pages").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM);
  std::mt19937 rng(5);
  char buf[4096];
  for (int i = 0; i < 300; ++i) {
    const off_t off = static_cast<off_t>(rng() % 1024) * 4096;
    ASSERT_EQ(pread(fd, buf, sizeof(buf), off), 4096) << "read " << i << ": " << std::strerror(errno);
    ASSERT_EQ(std::memcmp(buf, data.data() + off, sizeof(buf)), 0) << "read " << i;
  }
  close(fd);
}

TEST_F(Ops, TruncateGrowsAndShrinks) {
  write_file(m("t"), "0123456789");
  ASSERT_EQ(truncate(m("t").c_str(), 4), 0);
  EXPECT_EQ(read_file(h("t")), "0123");
  int fd = open(m("t").c_str(), O_RDWR);
  ASSERT_EQ(ftruncate(fd, 100000), 0);
  close(fd);
  struct stat st {};
  ASSERT_EQ(stat(h("t").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 100000);
  ASSERT_EQ(open(m("t").c_str(), O_WRONLY | O_TRUNC) >= 0, true);
  EXPECT_EQ(read_file(h("t")), "");
}

TEST_F(Ops, RenameOverExistingNoReplaceAndExchange) {
  write_file(m("a"), "A");
  write_file(m("b"), "B");
  ASSERT_EQ(rename(m("a").c_str(), m("b").c_str()), 0);
  EXPECT_FALSE(std::filesystem::exists(h("a")));
  EXPECT_EQ(read_file(h("b")), "A");
  write_file(m("c"), "C");
  EXPECT_EQ(renameat2(AT_FDCWD, m("c").c_str(), AT_FDCWD, m("b").c_str(), RENAME_NOREPLACE), -1);
  EXPECT_EQ(errno, EEXIST);
  ASSERT_EQ(renameat2(AT_FDCWD, m("c").c_str(), AT_FDCWD, m("b").c_str(), RENAME_EXCHANGE), 0);
  EXPECT_EQ(read_file(h("b")), "C");
  EXPECT_EQ(read_file(h("c")), "A");
}

TEST_F(Ops, HardLinksShareTheInode) {
  write_file(m("orig"), "linked");
  ASSERT_EQ(link(m("orig").c_str(), m("alias").c_str()), 0);
  struct stat a {}, b {};
  ASSERT_EQ(stat(h("orig").c_str(), &a), 0);
  ASSERT_EQ(stat(h("alias").c_str(), &b), 0);
  EXPECT_EQ(a.st_ino, b.st_ino);
  EXPECT_EQ(a.st_nlink, 2u);
  ASSERT_EQ(stat(m("alias").c_str(), &b), 0);
  EXPECT_EQ(b.st_nlink, 2u);
  ASSERT_EQ(unlink(m("orig").c_str()), 0);
  EXPECT_EQ(read_file(h("alias")), "linked");
}

TEST_F(Ops, SymlinksBothWays) {
  ASSERT_EQ(symlink("target/of/link", m("l1").c_str()), 0);
  char buf[256] = {};
  ASSERT_GT(readlink(h("l1").c_str(), buf, sizeof(buf)), 0);
  EXPECT_STREQ(buf, "target/of/link");
  ASSERT_EQ(symlink("../elsewhere", h("l2").c_str()), 0);
  std::memset(buf, 0, sizeof(buf));
  ASSERT_GT(readlink(m("l2").c_str(), buf, sizeof(buf)), 0);
  EXPECT_STREQ(buf, "../elsewhere");
  write_file(m("real"), "via link");
  ASSERT_EQ(symlink("real", m("l3").c_str()), 0);
  EXPECT_EQ(read_file(m("l3")), "via link");
}

TEST_F(Ops, MkdirTreesAndRmdir) {
  std::filesystem::create_directories(m("p/q/r/s/t"));
  EXPECT_TRUE(std::filesystem::is_directory(h("p/q/r/s/t")));
  write_file(m("p/q/r/s/t/leaf"), "deep");
  EXPECT_EQ(read_file(h("p/q/r/s/t/leaf")), "deep");
  EXPECT_EQ(rmdir(m("p/q").c_str()), -1);
  EXPECT_EQ(errno, ENOTEMPTY);
  EXPECT_EQ(std::filesystem::remove_all(m("p")), 6u);
  EXPECT_FALSE(std::filesystem::exists(h("p")));
}

TEST_F(Ops, ReaddirOfTenThousandEntriesBothWays) {
  std::filesystem::create_directory(h("many"));
  for (int i = 0; i < 10000; ++i) close(open(h("many/f" + std::to_string(i)).c_str(), O_CREAT | O_WRONLY, 0644));
  std::set<std::string> seen;
  DIR* d = opendir(m("many").c_str());
  ASSERT_NE(d, nullptr);
  while (dirent* e = readdir(d))
    if (e->d_name[0] != '.') seen.insert(e->d_name);
  closedir(d);
  EXPECT_EQ(seen.size(), 10000u);
  EXPECT_TRUE(seen.count("f0") && seen.count("f9999"));

  std::filesystem::create_directory(m("made"));
  for (int i = 0; i < 2000; ++i) close(open(m("made/g" + std::to_string(i)).c_str(), O_CREAT | O_WRONLY, 0644));
  size_t n = 0;
  for (auto& e : std::filesystem::directory_iterator(h("made"))) n += e.is_regular_file();
  EXPECT_EQ(n, 2000u);
}

TEST_F(Ops, ExtendedAttributes) {
  write_file(m("x"), "x");
  ASSERT_EQ(setxattr(m("x").c_str(), "user.color", "blue", 4, 0), 0);
  char buf[64] = {};
  ASSERT_EQ(getxattr(h("x").c_str(), "user.color", buf, sizeof(buf)), 4);
  EXPECT_STREQ(buf, "blue");
  ASSERT_EQ(setxattr(h("x").c_str(), "user.size", "big", 3, 0), 0);
  std::memset(buf, 0, sizeof(buf));
  ASSERT_EQ(getxattr(m("x").c_str(), "user.size", buf, sizeof(buf)), 3);
  EXPECT_STREQ(buf, "big");
  char list[256] = {};
  ssize_t n = listxattr(m("x").c_str(), list, sizeof(list));
  ASSERT_GT(n, 0);
  EXPECT_NE(std::string(list, n).find("user.color"), std::string::npos);
  ASSERT_EQ(removexattr(m("x").c_str(), "user.color"), 0);
  EXPECT_EQ(getxattr(h("x").c_str(), "user.color", buf, sizeof(buf)), -1);
  EXPECT_EQ(errno, ENODATA);
  // A 60 KiB value spills past the request head into a payload chunk; the device answers
  // whatever the host file system says about it (ext4 takes at most a block).
  const std::string big = random_bytes(60000, 9);
  write_file(h("y"), "y");
  const int host_rc = setxattr(h("y").c_str(), "user.big", big.data(), big.size(), 0);
  const int host_errno = errno;
  const int mount_rc = setxattr(m("x").c_str(), "user.big", big.data(), big.size(), 0);
  EXPECT_EQ(mount_rc, host_rc);
  if (mount_rc == 0) {
    std::string back(big.size(), '\0');
    ASSERT_EQ(getxattr(h("x").c_str(), "user.big", back.data(), back.size()), static_cast<ssize_t>(big.size()));
    EXPECT_EQ(back, big);
  } else {
    EXPECT_EQ(errno, host_errno);
  }
}

TEST_F(Ops, ChmodChownUtimens) {
  write_file(m("perm"), "p");
  ASSERT_EQ(chmod(m("perm").c_str(), 0600), 0);
  ASSERT_EQ(chown(m("perm").c_str(), 1234, 5678), 0);
  timespec times[2] = {{1000000000, 123}, {1200000000, 456000}};
  ASSERT_EQ(utimensat(AT_FDCWD, m("perm").c_str(), times, 0), 0);
  struct stat st {};
  ASSERT_EQ(stat(h("perm").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_uid, 1234u);
  EXPECT_EQ(st.st_gid, 5678u);
  EXPECT_EQ(st.st_atim.tv_sec, 1000000000);
  EXPECT_EQ(st.st_mtim.tv_sec, 1200000000);
  EXPECT_EQ(st.st_mtim.tv_nsec, 456000);
}

TEST_F(Ops, FallocateAndSeekDataHole) {
  int fd = open(m("sparse").c_str(), O_CREAT | O_RDWR, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(fallocate(fd, 0, 0, 1 << 20), 0);
  struct stat st {};
  ASSERT_EQ(stat(h("sparse").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 1 << 20);
  EXPECT_GE(st.st_blocks * 512, 1 << 20);
  close(fd);

  // A hole, then data at 4 MiB, written on the host.
  fd = open(h("holes").c_str(), O_CREAT | O_RDWR, 0644);
  ASSERT_EQ(pwrite(fd, "data", 4, 4 << 20), 4);
  close(fd);
  fd = open(m("holes").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(lseek(fd, 0, SEEK_HOLE), 0);
  EXPECT_EQ(lseek(fd, 0, SEEK_DATA), 4 << 20);
  close(fd);
}

TEST_F(Ops, CopyFileRange) {
  const std::string data = random_bytes(300000, 4);
  write_file(m("src"), data);
  int in = open(m("src").c_str(), O_RDONLY), out = open(m("dst").c_str(), O_CREAT | O_WRONLY, 0644);
  ASSERT_GE(in, 0);
  ASSERT_GE(out, 0);
  size_t left = data.size();
  while (left > 0) {
    ssize_t n = copy_file_range(in, nullptr, out, nullptr, left, 0);
    ASSERT_GT(n, 0) << std::strerror(errno);
    left -= static_cast<size_t>(n);
  }
  close(in);
  close(out);
  EXPECT_EQ(read_file(h("dst")), data);
}

TEST_F(Ops, FlockAndFcntlLocksConflictAcrossProcesses) {
  write_file(m("lockfile"), "l");
  int fd = open(m("lockfile").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(flock(fd, LOCK_EX | LOCK_NB), 0);
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_len = 10;
  ASSERT_EQ(fcntl(fd, F_SETLK, &fl), 0);
  pid_t child = fork();
  if (child == 0) {
    int cfd = open(m("lockfile").c_str(), O_RDWR);
    int flock_blocked = flock(cfd, LOCK_EX | LOCK_NB) == -1 && errno == EWOULDBLOCK;
    struct flock c {};
    c.l_type = F_WRLCK;
    c.l_whence = SEEK_SET;
    c.l_len = 10;
    int posix_blocked = fcntl(cfd, F_SETLK, &c) == -1 && (errno == EAGAIN || errno == EACCES);
    _exit(flock_blocked && posix_blocked ? 0 : 1);
  }
  int status = 0;
  waitpid(child, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  close(fd);
}

TEST_F(Ops, StatAndStatfsMatchTheHost) {
  write_file(m("s"), std::string(12345, 's'));
  struct stat a {}, b {};
  ASSERT_EQ(stat(m("s").c_str(), &a), 0);
  ASSERT_EQ(stat(h("s").c_str(), &b), 0);
  EXPECT_EQ(a.st_size, b.st_size);
  EXPECT_EQ(a.st_ino, b.st_ino);
  EXPECT_EQ(a.st_mode, b.st_mode);
  struct statvfs va {}, vb {};
  ASSERT_EQ(statvfs(mnt.path().c_str(), &va), 0);
  ASSERT_EQ(statvfs(share.path().c_str(), &vb), 0);
  EXPECT_EQ(va.f_blocks * va.f_frsize, vb.f_blocks * vb.f_frsize);
}

TEST_F(Ops, MknodFifoAndUnlink) {
  ASSERT_EQ(mkfifo(m("fifo").c_str(), 0644), 0);
  struct stat st {};
  ASSERT_EQ(stat(h("fifo").c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
  ASSERT_EQ(unlink(m("fifo").c_str()), 0);
  EXPECT_FALSE(std::filesystem::exists(h("fifo")));
}

TEST_F(Ops, UnsupportedRequestsFailAtOnce) {
  write_file(m("plain"), "p");
  int fd = open(m("plain").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  int flags = 0;
  // FUSE_IOCTL is answered ENOSYS by the bridge; the kernel reports ENOTTY.
  EXPECT_EQ(ioctl(fd, FS_IOC_GETFLAGS, &flags), -1);
  EXPECT_TRUE(errno == ENOTTY || errno == ENOSYS) << std::strerror(errno);
  close(fd);
}

}  // namespace
}  // namespace virtiofs::test

namespace virtiofs::test {
namespace {

// Signals while requests are at the device make the kernel send INTERRUPT. Without
// -o interrupts the bridge answers ENOSYS (virtiofsd 7.2 cannot take them) and the kernel stops
// interrupting: every request completes with its real result, the data is whole and the mount
// stays healthy.
TEST_F(Ops, InterruptsDuringLargeWritesLoseNothing) {
  const std::string block = random_bytes(8 << 20, 77);
  // Installed before fork so that no signal reaches the writer before it has the handler.
  struct sigaction sa {}, old {};
  sa.sa_handler = [](int) {};
  sigaction(SIGUSR1, &sa, &old);  // no SA_RESTART: the kernel must interrupt
  pid_t writer = fork();
  if (writer == 0) {
    int fd = open(m("interrupted").c_str(), O_CREAT | O_RDWR, 0644);
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(1500);
    int rounds = 0;
    while (std::chrono::steady_clock::now() < end) {
      size_t off = 0;
      while (off < block.size()) {  // short writes and EINTR are allowed; carry on from there
        ssize_t n = pwrite(fd, block.data() + off, block.size() - off, static_cast<off_t>(off));
        if (n < 0 && errno != EINTR) _exit(1);
        if (n > 0) off += static_cast<size_t>(n);
      }
      ++rounds;
    }
    close(fd);
    _exit(rounds > 0 ? 0 : 2);
  }
  for (int i = 0; i < 1500; ++i) {
    kill(writer, SIGUSR1);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  int status = 0;
  waitpid(writer, &status, 0);
  sigaction(SIGUSR1, &old, nullptr);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "writer failed: status " << status;
  EXPECT_TRUE(read_file(h("interrupted")) == block);
  write_file(m("after"), "still healthy");
  EXPECT_EQ(read_file(h("after")), "still healthy");
}

}  // namespace
}  // namespace virtiofs::test
