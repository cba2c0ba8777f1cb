// Every file-system operation through the library against the real virtiofsd, each result
// checked on the host directory.
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>
#include <future>
#include <set>

#include "integration/fixture.hpp"

using namespace virtiofs;
using namespace virtiofs::test;

using ClientTest = VirtiofsdTest;

TEST_F(ClientTest, InitNegotiatedWithTheBackend) {
  const Negotiated& n = client->negotiated();
  EXPECT_EQ(n.major, 7u);
  EXPECT_GE(n.minor, 27u);
  EXPECT_GE(n.max_write, 4096u);
  EXPECT_LE(n.max_write, 1u << 20);
}

TEST_F(ClientTest, WriteAndReadBackFromOneByteToFourMiB) {
  // Sizes cross the inline area, chunk boundaries and max_write.
  const size_t sizes[] = {1, 4095, 4096, 8000, 65537, (1u << 20) + 7, 4u << 20};
  unsigned seed = 1;
  for (size_t size : sizes) {
    const std::string name = "file-" + std::to_string(size);
    const std::string data = random_bytes(size, seed++);
    ASSERT_FALSE(client->write_file(name, bytes(data))) << size;
    EXPECT_EQ(read_host(name), data) << "host copy differs at size " << size;
    std::string back;
    ASSERT_FALSE(client->read_file(name, back)) << size;
    EXPECT_EQ(back, data) << "read-back differs at size " << size;
  }
}

// O_CREAT on an existing name opens it (virtiofsd 7.2 aborts on a non-exclusive CREATE of an
// existing file: the client must never send one); O_EXCL still refuses.
TEST_F(ClientTest, WriteFileOverAnExistingFile) {
  for (const std::string text : {"first version, longer", "second"}) {
    ASSERT_FALSE(client->write_file("again.txt", bytes(text)));
    EXPECT_EQ(read_host("again.txt"), text);
  }
  File f;
  EXPECT_EQ(client->open_file("again.txt", O_WRONLY | O_CREAT | O_EXCL, f), std::errc::file_exists);
  std::string back;
  ASSERT_FALSE(client->read_file("again.txt", back));
  EXPECT_EQ(back, "second");
  EXPECT_FALSE(client->failure());
}

TEST_F(ClientTest, ReadsFilesWrittenOnTheHost) {
  const std::string data = random_bytes(3 << 20, 99);
  write_host("from-host.bin", data);
  std::string back;
  ASSERT_FALSE(client->read_file("from-host.bin", back));
  EXPECT_EQ(back, data);
}

TEST_F(ClientTest, StatMatchesTheHost) {
  write_host("s.txt", "12345");
  ASSERT_EQ(::chmod(host("s.txt").c_str(), 0640), 0);
  Attr a;
  ASSERT_FALSE(client->stat("s.txt", a));
  struct stat st;
  ASSERT_EQ(::stat(host("s.txt").c_str(), &st), 0);
  EXPECT_EQ(a.size, 5u);
  EXPECT_EQ(a.ino, st.st_ino);
  EXPECT_EQ(a.mode, st.st_mode);
  EXPECT_EQ(a.mtime.sec, static_cast<uint64_t>(st.st_mtim.tv_sec));
  EXPECT_EQ(client->stat("missing", a), std::errc::no_such_file_or_directory);
}

TEST_F(ClientTest, MkdirRmdirUnlink) {
  ASSERT_FALSE(client->mkdir("d"));
  ASSERT_FALSE(client->mkdir("d/e", 0700));
  struct stat st;
  ASSERT_EQ(::stat(host("d/e").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  EXPECT_EQ(client->mkdir("d"), std::errc::file_exists);
  EXPECT_EQ(client->rmdir("d"), std::errc::directory_not_empty);
  ASSERT_FALSE(client->write_file("d/e/f", bytes("x")));
  ASSERT_FALSE(client->unlink("d/e/f"));
  EXPECT_NE(::access(host("d/e/f").c_str(), F_OK), 0);
  ASSERT_FALSE(client->rmdir("d/e"));
  ASSERT_FALSE(client->rmdir("d"));
  EXPECT_NE(::access(host("d").c_str(), F_OK), 0);
  EXPECT_EQ(client->unlink("nothing"), std::errc::no_such_file_or_directory);
}

TEST_F(ClientTest, RenameIncludingOverExisting) {
  write_host("a", "A");
  write_host("b", "B");
  ASSERT_FALSE(client->mkdir("dir"));
  ASSERT_FALSE(client->rename("a", "dir/a2"));
  EXPECT_EQ(read_host("dir/a2"), "A");
  EXPECT_NE(::access(host("a").c_str(), F_OK), 0);
  ASSERT_FALSE(client->rename("dir/a2", "b"));  // replaces b
  EXPECT_EQ(read_host("b"), "A");

  // RENAME2 with RENAME_NOREPLACE refuses to replace.
  write_host("c", "C");
  Entry b, c;
  ASSERT_FALSE(client->lookup(kRootInode, "b", b));
  ASSERT_FALSE(client->lookup(kRootInode, "c", c));
  EXPECT_EQ(client->rename(kRootInode, "b", kRootInode, "c", RENAME_NOREPLACE),
            std::errc::file_exists);
  ASSERT_FALSE(client->rename(kRootInode, "b", kRootInode, "c", RENAME_EXCHANGE));
  EXPECT_EQ(read_host("c"), "A");
  EXPECT_EQ(read_host("b"), "C");
  client->forget(b.inode, 1);
  client->forget(c.inode, 1);
}

TEST_F(ClientTest, HardLinksAndSymlinks) {
  write_host("orig", "data");
  ASSERT_FALSE(client->link("orig", "hard"));
  struct stat st1, st2;
  ASSERT_EQ(::stat(host("orig").c_str(), &st1), 0);
  ASSERT_EQ(::stat(host("hard").c_str(), &st2), 0);
  EXPECT_EQ(st1.st_ino, st2.st_ino);
  EXPECT_EQ(st1.st_nlink, 2u);

  ASSERT_FALSE(client->symlink("orig", "soft"));
  char buf[64] = {};
  ASSERT_EQ(::readlink(host("soft").c_str(), buf, sizeof(buf)), 4);
  EXPECT_STREQ(buf, "orig");
  std::string target;
  ASSERT_FALSE(client->readlink("soft", target));
  EXPECT_EQ(target, "orig");
  ASSERT_EQ(::symlink("elsewhere/x", host("hostlink").c_str()), 0);
  ASSERT_FALSE(client->readlink("hostlink", target));
  EXPECT_EQ(target, "elsewhere/x");
}

TEST_F(ClientTest, ReaddirOfTenThousandEntries) {
  ASSERT_EQ(::mkdir(host("big").c_str(), 0755), 0);
  std::set<std::string> expected;
  for (int i = 0; i < 10000; ++i) {
    std::string name = "entry-" + std::to_string(i);
    int fd = ::open(host("big/" + name).c_str(), O_CREAT | O_WRONLY, 0644);
    ASSERT_GE(fd, 0);
    ::close(fd);
    expected.insert(name);
  }
  std::vector<DirEntry> entries;
  ASSERT_FALSE(client->list_dir("big", entries));
  std::set<std::string> got;
  for (auto& e : entries) got.insert(e.name);
  EXPECT_EQ(entries.size(), 10000u) << "no duplicates, none missing";
  EXPECT_EQ(got, expected);
}

TEST_F(ClientTest, ReaddirplusHandsOutReferences) {
  write_host("p1", "1");
  write_host("p2", "2");
  Entry root;
  OpenFile dir;
  ASSERT_FALSE(client->opendir(kRootInode, dir));
  std::vector<std::pair<DirEntry, Entry>> out;
  ASSERT_FALSE(client->readdirplus(kRootInode, dir.fh, 0, out));
  std::set<std::string> names;
  for (auto& [d, e] : out) {
    names.insert(d.name);
    if (d.name == "p1") {
      EXPECT_NE(e.inode, 0u);
      EXPECT_EQ(e.attr.size, 1u);
    }
    client->forget(e.inode, 1);
  }
  EXPECT_TRUE(names.count("p1") && names.count("p2"));
  EXPECT_FALSE(client->releasedir(kRootInode, dir.fh));
}

TEST_F(ClientTest, Xattrs) {
  write_host("x", "");
  Entry e;
  ASSERT_FALSE(client->lookup(kRootInode, "x", e));
  const std::string value = "some value";
  ASSERT_FALSE(client->setxattr(e.inode, "user.test", bytes(value)));
  char buf[64] = {};
  ASSERT_EQ(::getxattr(host("x").c_str(), "user.test", buf, sizeof(buf)),
            static_cast<ssize_t>(value.size()));
  EXPECT_EQ(std::string(buf), value);

  size_t size = 0;
  ASSERT_FALSE(client->getxattr(e.inode, "user.test", {}, size));
  EXPECT_EQ(size, value.size());
  std::string got(size, '\0');
  ASSERT_FALSE(client->getxattr(e.inode, "user.test", std::as_writable_bytes(std::span(got)), size));
  EXPECT_EQ(got, value);

  ASSERT_EQ(::setxattr(host("x").c_str(), "user.fromhost", "v", 1, 0), 0);
  ASSERT_FALSE(client->listxattr(e.inode, {}, size));
  std::string list(size, '\0');
  ASSERT_FALSE(client->listxattr(e.inode, std::as_writable_bytes(std::span(list)), size));
  EXPECT_NE(list.find("user.test"), std::string::npos);
  EXPECT_NE(list.find("user.fromhost"), std::string::npos);

  ASSERT_FALSE(client->removexattr(e.inode, "user.test"));
  EXPECT_LT(::getxattr(host("x").c_str(), "user.test", buf, sizeof(buf)), 0);
  EXPECT_EQ(client->getxattr(e.inode, "user.test", {}, size), std::errc::no_message_available);
  client->forget(e.inode, 1);
}

TEST_F(ClientTest, CreateOpenSetattrAndFileOps) {
  Created c;
  ASSERT_FALSE(client->create(kRootInode, "f", O_RDWR | O_CREAT | O_EXCL, 0600, c));
  Created again;
  EXPECT_EQ(client->create(kRootInode, "f", O_RDWR | O_CREAT | O_EXCL, 0600, again),
            std::errc::file_exists);
  const Inode ino = c.entry.inode;
  const uint64_t fh = c.file.fh;
  const std::string data = random_bytes(100000, 5);
  size_t done = 0;
  ASSERT_FALSE(client->write(ino, fh, 0, bytes(data), done));
  EXPECT_EQ(done, data.size());
  ASSERT_FALSE(client->fsync(ino, fh, false));
  ASSERT_FALSE(client->flush(ino, fh));
  EXPECT_EQ(read_host("f"), data);

  // Truncate, chmod, utimens through SETATTR.
  SetAttr sa;
  sa.valid = set::kSize | set::kMode | set::kMtime;
  sa.size = 1000;
  sa.mode = 0604;
  sa.mtime = {1234567890, 0};
  Attr after;
  ASSERT_FALSE(client->setattr(ino, sa, after));
  struct stat st;
  ASSERT_EQ(::stat(host("f").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 1000);
  EXPECT_EQ(st.st_mode & 0777, 0604u);
  EXPECT_EQ(st.st_mtim.tv_sec, 1234567890);
  EXPECT_EQ(after.size, 1000u);

  // fallocate, then SEEK_DATA / SEEK_HOLE on a sparse file.
  ASSERT_FALSE(client->fallocate(ino, fh, 0, 8192));
  ASSERT_EQ(::stat(host("f").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 8192);
  ASSERT_FALSE(client->write(ino, fh, 1 << 20, bytes("tail"), done));
  uint64_t pos = 0;
  ASSERT_FALSE(client->lseek(ino, fh, 0, SEEK_HOLE, pos));
  const int hfd = ::open(host("f").c_str(), O_RDONLY);
  const off_t host_hole = ::lseek(hfd, 0, SEEK_HOLE);
  EXPECT_EQ(pos, static_cast<uint64_t>(host_hole));
  EXPECT_LT(pos, 1u << 20);
  ASSERT_FALSE(client->lseek(ino, fh, pos, SEEK_DATA, pos));
  EXPECT_EQ(pos, static_cast<uint64_t>(::lseek(hfd, host_hole, SEEK_DATA)));
  ::close(hfd);

  // copy_file_range into a second file.
  Created c2;
  ASSERT_FALSE(client->create(kRootInode, "g", O_RDWR | O_CREAT, 0644, c2));
  uint64_t copied = 0;
  ASSERT_FALSE(client->copy_file_range(ino, fh, 0, c2.entry.inode, c2.file.fh, 0, 1000, copied));
  EXPECT_EQ(copied, 1000u);
  EXPECT_EQ(read_host("g"), data.substr(0, 1000));

  // QEMU 7.2's virtiofsd has no ACCESS handler: the round trip must end with its ENOSYS.
  auto access_ec = client->access(ino, R_OK);
  EXPECT_TRUE(!access_ec || access_ec == std::errc::function_not_supported) << access_ec.message();
  StatFs sfs;
  ASSERT_FALSE(client->statfs(kRootInode, sfs));
  EXPECT_GT(sfs.blocks, 0u);
  EXPECT_GT(sfs.bsize, 0u);

  std::string small(10, '\0');
  ASSERT_FALSE(client->read(ino, fh, 0, std::as_writable_bytes(std::span(small)), done));
  EXPECT_EQ(done, 10u);
  EXPECT_EQ(small, data.substr(0, 10));

  EXPECT_FALSE(client->release(ino, fh));
  EXPECT_FALSE(client->release(c2.entry.inode, c2.file.fh));
  client->forget(ino, 1);
  client->forget(c2.entry.inode, 1);
}

TEST_F(ClientTest, MknodMakesAFifo) {
  Entry e;
  ASSERT_FALSE(client->mknod(kRootInode, "fifo", S_IFIFO | 0644, 0, e));
  struct stat st;
  ASSERT_EQ(::lstat(host("fifo").c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
  client->forget(e.inode, 1);
}

TEST_F(ClientTest, DirectoryFsyncAndOpenFileObject) {
  OpenFile dir;
  ASSERT_FALSE(client->opendir(kRootInode, dir));
  EXPECT_FALSE(client->fsyncdir(kRootInode, dir.fh));
  EXPECT_FALSE(client->releasedir(kRootInode, dir.fh));

  File f;
  ASSERT_FALSE(client->open_file("obj", O_RDWR | O_CREAT, f));
  size_t done = 0;
  ASSERT_FALSE(f.pwrite(3, bytes("abc"), done));
  Attr a;
  ASSERT_FALSE(f.stat(a));
  EXPECT_EQ(a.size, 6u);
  ASSERT_FALSE(f.close());
  EXPECT_EQ(read_host("obj"), std::string("\0\0\0abc", 6));
  EXPECT_EQ(client->open_file("nope", O_RDONLY, f), std::errc::no_such_file_or_directory);
}

TEST_F(ClientTest, AsyncOperationsComplete) {
  write_host("async.txt", "hello async");
  std::promise<Entry> looked_up;
  client->lookup(kRootInode, "async.txt", [&](std::error_code ec, Entry e) {
    EXPECT_FALSE(ec);
    looked_up.set_value(e);
  });
  Entry e = looked_up.get_future().get();
  std::promise<OpenFile> opened;
  client->open(e.inode, O_RDONLY, [&](std::error_code ec, OpenFile f) {
    EXPECT_FALSE(ec);
    opened.set_value(f);
  });
  OpenFile f = opened.get_future().get();
  std::string buf(64, '\0');
  std::promise<size_t> read;
  client->read(e.inode, f.fh, 0, std::as_writable_bytes(std::span(buf)),
               [&](std::error_code ec, size_t n) {
                 EXPECT_FALSE(ec);
                 read.set_value(n);
               });
  buf.resize(read.get_future().get());
  EXPECT_EQ(buf, "hello async");
  std::promise<std::error_code> missing;
  client->lookup(kRootInode, "absent", [&](std::error_code ec, Entry) { missing.set_value(ec); });
  EXPECT_EQ(missing.get_future().get(), std::errc::no_such_file_or_directory);
  std::promise<std::error_code> released;
  client->release(e.inode, f.fh, 0, [&](std::error_code ec) { released.set_value(ec); });
  EXPECT_FALSE(released.get_future().get());
  client->forget(e.inode, 1);
}

// ".." at the root is the root (the share's, not the host's): "../x" is the share's own x.
TEST_F(ClientTest, PathsCannotEscapeTheShare) {
  write_host("passwd", "inside");
  Attr a, inside, root;
  ASSERT_FALSE(client->stat("passwd", inside));
  ASSERT_FALSE(client->stat("../passwd", a));
  EXPECT_EQ(a.ino, inside.ino);
  ASSERT_FALSE(client->stat("../../../passwd", a));
  EXPECT_EQ(a.ino, inside.ino);
  EXPECT_EQ(client->stat("../etc", a), std::errc::no_such_file_or_directory);
  ASSERT_FALSE(client->stat("/", root));
  EXPECT_TRUE(S_ISDIR(root.mode));
  ASSERT_FALSE(client->stat("../..", a));
  EXPECT_EQ(a.ino, root.ino);
}

// ---- registered memory: reads and writes with no copy ----

class RegisteredMemoryTest : public VirtiofsdTest {
 protected:
  void SetUp() override {
    Options o;
    o.registered_memory_bytes = 8 << 20;
    start(o);
  }
};

TEST_F(RegisteredMemoryTest, WritesAndReadsMoveStraightBetweenBuffersAndDevice) {
  IoBuffer out = client->allocate_buffer(3 << 20);
  IoBuffer in = client->allocate_buffer(3 << 20);
  const std::string data = random_bytes(out.size(), 21);
  std::memcpy(out.data(), data.data(), data.size());
  File f;
  ASSERT_FALSE(client->open_file("zc", O_RDWR | O_CREAT, f));
  const uint64_t before = client->stats().zero_copy_bytes;
  size_t n = 0;
  ASSERT_FALSE(f.pwrite(0, out.span(), n));  // 3 requests of 1 MiB, each a direct descriptor
  ASSERT_EQ(n, data.size());
  EXPECT_EQ(read_host("zc"), data);
  ASSERT_FALSE(f.pread(0, in.span(), n));
  ASSERT_EQ(n, data.size());
  EXPECT_EQ(std::memcmp(in.data(), data.data(), n), 0);
  EXPECT_EQ(client->stats().zero_copy_bytes - before, 2 * data.size())
      << "every payload byte must have moved without a copy";
  // Ordinary memory still works, through the copy path.
  std::string plain(4096, '\0');
  ASSERT_FALSE(f.pread(0, std::as_writable_bytes(std::span(plain)), n));
  EXPECT_EQ(plain, data.substr(0, 4096));
  EXPECT_EQ(client->stats().zero_copy_bytes - before, 2 * data.size());
  // A READ near the end moves what the device wrote, not the buffer offered.
  ASSERT_FALSE(f.pread(data.size() - 100, in.span(), n));
  ASSERT_EQ(n, 100u);
  EXPECT_EQ(client->stats().zero_copy_bytes - before, 2 * data.size() + 100);
}

TEST_F(RegisteredMemoryTest, BuffersAreRecycledAndExhaustionIsAClearError) {
  {
    IoBuffer a = client->allocate_buffer(6 << 20);
    EXPECT_THROW(client->allocate_buffer(4 << 20), std::system_error);
  }
  IoBuffer b = client->allocate_buffer(8 << 20);  // the first came back and merged
  EXPECT_EQ(b.size(), size_t{8} << 20);
}
