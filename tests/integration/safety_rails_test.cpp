// Safety rails against the real virtiofsd: lookup accounting refuses a forget the device would
// abort on, paths are normalised, and IoBuffers outlive their Client.
#include <fcntl.h>
#include <sys/stat.h>

#include <cstring>
#include <filesystem>
#include <thread>

#include "integration/fixture.hpp"

using namespace virtiofs;
using namespace virtiofs::test;
using namespace std::chrono_literals;

namespace {

class AccountingTest : public VirtiofsdTest {
 protected:
  void SetUp() override {
    Options o;
    o.lookup_accounting = LookupAccounting::kOn;
    start(o);
  }
  // A round trip after FORGETs had time to go out (they gather for at most a millisecond):
  // the device still answers, and the client saw no failure.
  void expect_device_alive(Inode inode) {
    std::this_thread::sleep_for(50ms);
    Attr attr;
    EXPECT_FALSE(client->getattr(inode, attr));
    EXPECT_FALSE(client->failure()) << client->failure().message();
  }
};

// virtiofsd asserts its count never goes below zero: a FORGET of 5 on one reference would
// abort it later, failing the client far from the cause. Refused, nothing goes out.
TEST_F(AccountingTest, ForgetBeyondTheLookupsIsEinvalAndTheDeviceLives) {
  write_host("f", "x");
  Entry e;
  ASSERT_FALSE(client->lookup(kRootInode, "f", e));
  EXPECT_EQ(client->forget(e.inode, 5), std::errc::invalid_argument);
  expect_device_alive(e.inode);
  EXPECT_FALSE(client->forget(e.inode, 1));
  EXPECT_EQ(client->forget(e.inode, 1), std::errc::invalid_argument) << "given back already";
  expect_device_alive(kRootInode);
}

TEST_F(AccountingTest, EveryEntryReplyIsCounted) {
  write_host("f", "x");
  Entry d, n, s, l;
  Created c;
  ASSERT_FALSE(client->mkdir(kRootInode, "d", 0755, d));
  ASSERT_FALSE(client->mknod(kRootInode, "n", S_IFREG | 0644, 0, n));
  ASSERT_FALSE(client->symlink(kRootInode, "s", "f", s));
  ASSERT_FALSE(client->create(kRootInode, "c", O_RDWR, 0644, c));
  ASSERT_FALSE(client->release(c.entry.inode, c.file.fh));
  ASSERT_FALSE(client->link(c.entry.inode, kRootInode, "l", l));
  ASSERT_EQ(l.inode, c.entry.inode);
  for (Inode ino : {d.inode, n.inode, s.inode}) {
    EXPECT_EQ(client->forget(ino, 2), std::errc::invalid_argument);
    EXPECT_FALSE(client->forget(ino, 1));
  }
  EXPECT_FALSE(client->forget(c.entry.inode, 2)) << "CREATE's reference and LINK's";
  EXPECT_EQ(client->forget(c.entry.inode, 1), std::errc::invalid_argument);
  expect_device_alive(kRootInode);
}

// READDIRPLUS hands out a reference with every entry that has a node id.
TEST_F(AccountingTest, ReaddirplusEntriesAreCountedWithLookups) {
  write_host("a", "1");
  write_host("b", "2");
  Entry a;
  ASSERT_FALSE(client->lookup(kRootInode, "a", a));
  OpenFile dir;
  ASSERT_FALSE(client->opendir(kRootInode, dir));
  std::vector<std::pair<DirEntry, Entry>> entries;
  ASSERT_FALSE(client->readdirplus(kRootInode, dir.fh, 0, entries));
  ASSERT_FALSE(client->releasedir(kRootInode, dir.fh));
  Inode b = 0;
  int with_node = 0;
  for (auto& [d, e] : entries) {
    if (d.name == "b") b = e.inode;
    if (e.inode) ++with_node;
  }
  ASSERT_NE(b, 0u);
  EXPECT_EQ(with_node, 2) << "virtiofsd gives '.' and '..' no node";
  EXPECT_EQ(client->forget(a.inode, 3), std::errc::invalid_argument);
  EXPECT_FALSE(client->forget(a.inode, 2)) << "LOOKUP's reference and READDIRPLUS's";
  EXPECT_EQ(client->forget(b, 2), std::errc::invalid_argument);
  EXPECT_FALSE(client->forget(b, 1));
  expect_device_alive(kRootInode);
}

// Path conveniences forget exactly what they looked up: with accounting on, none of their
// forgets is refused, so every node goes back (virtiofsd's fd table) and the device lives.
TEST_F(AccountingTest, PathWalksGiveBackExactlyWhatTheyTook) {
  if (!backend) GTEST_SKIP() << "needs virtiofsd's fd table";
  ASSERT_FALSE(client->mkdir("a"));
  ASSERT_FALSE(client->mkdir("a/b/"));
  const int before = backend->open_fds();
  for (int i = 0; i < 50; ++i) {
    const std::string f = "a/b/f" + std::to_string(i);
    Attr attr;
    ASSERT_FALSE(client->write_file(f, bytes("x")));
    ASSERT_FALSE(client->stat("a/./b/../b//f" + std::to_string(i), attr));
    ASSERT_FALSE(client->rename(f, "a/../a/b/g" + std::to_string(i)));
  }
  int now = 0;
  for (int i = 0; i < 200 && (now = backend->open_fds()) > before; ++i)
    std::this_thread::sleep_for(10ms);
  EXPECT_LE(now, before) << "the backend still holds nodes the path walks took";
  expect_device_alive(kRootInode);
}

// ---- paths ----

class PathTest : public VirtiofsdTest {
 protected:
  void SetUp() override {
    VirtiofsdTest::SetUp();
    std::filesystem::create_directories(host("d0/s0"));
    write_host("d0/s0/f0", "data");
    std::filesystem::create_directory_symlink("s0", host("d0/ln"));
  }
  Inode ino_of(const std::string& path) {
    Attr attr;
    auto ec = client->stat(path, attr);
    EXPECT_FALSE(ec) << path << ": " << ec.message();
    return attr.ino;
  }
  std::error_code stat_error(const std::string& path) {
    Attr attr;
    return client->stat(path, attr);
  }
};

TEST_F(PathTest, RepeatedSlashesAndDotsNameTheSameFile) {
  const Inode f0 = ino_of("d0/s0/f0");
  ASSERT_NE(f0, 0u);
  EXPECT_EQ(ino_of("d0//s0/./f0"), f0);
  EXPECT_EQ(ino_of("/d0/s0/f0"), f0);
  EXPECT_EQ(ino_of("./d0///s0/././f0"), f0);
  EXPECT_EQ(ino_of("d0/s0/"), ino_of("d0/s0"));
  std::vector<DirEntry> list;
  ASSERT_FALSE(client->list_dir("d0//s0/", list));
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].name, "f0");
}

TEST_F(PathTest, TheRootHasManySpellings) {
  const Inode root = ino_of("");
  for (const char* p : {"/", "//", ".", "./", "..", "/..", "d0/..", "d0/s0/../..", "../../d0/.."})
    EXPECT_EQ(ino_of(p), root) << p;
}

// ".." goes back along the walk, which follows no symlink: through a symlink it is ENOTDIR,
// never the lexical guess ("d0/ln/.." is not "d0").
TEST_F(PathTest, DotDotReturnsAlongTheWalkAndNeverThroughASymlink) {
  EXPECT_EQ(ino_of("d0/s0/../s0/f0"), ino_of("d0/s0/f0"));
  EXPECT_EQ(ino_of("d0/s0/.."), ino_of("d0"));
  EXPECT_EQ(stat_error("d0/ln/.."), std::errc::not_a_directory);
  EXPECT_EQ(stat_error("d0/ln/f0"), std::errc::not_a_directory);
  EXPECT_EQ(stat_error("d0/s0/f0/.."), std::errc::not_a_directory);
  EXPECT_EQ(stat_error("d0/nothing/.."), std::errc::no_such_file_or_directory);
}

TEST_F(PathTest, TrailingSlashAsksForADirectory) {
  EXPECT_EQ(stat_error("d0/s0/f0/"), std::errc::not_a_directory);
  EXPECT_EQ(stat_error("d0/s0/f0/."), std::errc::not_a_directory);
  EXPECT_EQ(stat_error("d0/ln/"), std::errc::not_a_directory) << "symlinks are not followed";
  ASSERT_FALSE(client->mkdir("x/"));
  EXPECT_TRUE(std::filesystem::is_directory(host("x")));
  ASSERT_FALSE(client->rename("x/", "y/"));
  EXPECT_TRUE(std::filesystem::is_directory(host("y")));
  EXPECT_EQ(client->unlink("d0/s0/f0/"), std::errc::not_a_directory);
  EXPECT_EQ(client->rename("d0/s0/f0", "g/"), std::errc::not_a_directory);
  EXPECT_TRUE(std::filesystem::exists(host("d0/s0/f0"))) << "nothing removed or moved";
  EXPECT_EQ(client->symlink("f0", "d0/l2/"), std::errc::not_a_directory);
  EXPECT_EQ(client->link("d0/s0/f0", "d0/h/"), std::errc::not_a_directory);
  EXPECT_EQ(client->write_file("w/", bytes("x")), std::errc::is_a_directory);
  EXPECT_FALSE(std::filesystem::exists(host("w")));
  ASSERT_FALSE(client->rmdir("y/"));
  EXPECT_FALSE(std::filesystem::exists(host("y")));
}

TEST_F(PathTest, CreatingOrRemovingTheRootOrADotIsRefused) {
  EXPECT_EQ(client->mkdir("/"), std::errc::file_exists);
  EXPECT_EQ(client->mkdir(""), std::errc::file_exists);
  EXPECT_EQ(client->rmdir("/"), std::errc::device_or_resource_busy);
  EXPECT_EQ(client->unlink(""), std::errc::device_or_resource_busy);
  EXPECT_EQ(client->rename("/", "z"), std::errc::device_or_resource_busy);
  EXPECT_EQ(client->rmdir("d0/s0/."), std::errc::invalid_argument);
  EXPECT_EQ(client->rmdir("d0/s0/.."), std::errc::invalid_argument);
  EXPECT_EQ(client->mkdir("d0/."), std::errc::invalid_argument);
  EXPECT_TRUE(std::filesystem::exists(host("d0/s0")));
}

TEST_F(PathTest, NameOverNameMaxIsEnametoolong) {
  EXPECT_EQ(stat_error("d0/" + std::string(256, 'n')), std::errc::filename_too_long);
  EXPECT_EQ(client->mkdir(std::string(256, 'n')), std::errc::filename_too_long);
  EXPECT_EQ(stat_error("d0/" + std::string(255, 'n')), std::errc::no_such_file_or_directory);
}

// ---- IoBuffer lifetime ----

class BufferTest : public VirtiofsdTest {
 protected:
  void SetUp() override {
    Options o;
    o.registered_memory_bytes = 4 << 20;
    start(o);
  }
};

// Destroyed after its Client, a buffer once hung in the pool's freed mutex: now the pool and
// the mapping live as long as the last buffer (ASan sees no use after free).
TEST_F(BufferTest, ABufferOutlivesItsClient) {
  IoBuffer buffer = client->allocate_buffer(1 << 20);
  const std::string data = random_bytes(buffer.size(), 7);
  std::memcpy(buffer.data(), data.data(), data.size());
  ASSERT_FALSE(client->write_file("f", buffer.span()));
  client.reset();
  backend.reset();
  EXPECT_EQ(std::memcmp(buffer.data(), data.data(), data.size()), 0) << "the memory stayed";
  std::memset(buffer.data(), 0, buffer.size());
  buffer = IoBuffer();
}

}  // namespace
