// The path cache against the real virtiofsd in its three cache modes (its entry and attribute
// timeouts: none 0, auto 1 s, always a day): a change made on the host directory is seen no
// later than the timeout says, this client's own changes at once, and every reference the
// cache took goes back (the backend's open fds, one per node referenced, return to baseline).
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "integration/fixture.hpp"

using namespace virtiofs;
using namespace virtiofs::test;
using namespace std::chrono_literals;

namespace {

// Running or sleeping, not a zombie (virtiofsd aborts on a FORGET of more than it gave).
bool alive(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  std::getline(in, stat);
  const auto paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] != 'Z' &&
         stat[paren + 2] != 'X';
}

class PathCacheTest : public VirtiofsdTest, public ::testing::WithParamInterface<const char*> {
 protected:
  void SetUp() override {
    if (vfio_test_device()) GTEST_SKIP() << "needs virtiofsd's cache= option";
    Options o;
    o.lookup_accounting = LookupAccounting::kOn;  // a forget too many is refused, not sent
    start(o, {"-o", "xattr", "-o", std::string("cache=") + GetParam()});
  }
  std::string mode() const { return GetParam(); }
  bool exists(const std::string& path) {
    Attr a;
    return !client->stat(path, a);
  }
  uint64_t size_of(const std::string& path) {
    Attr a;
    EXPECT_FALSE(client->stat(path, a)) << path;
    return a.size;
  }
  uint64_t requests() { return client->stats().requests; }
};

TEST_P(PathCacheTest, OwnChangesAreSeenAtOnce) {
  ASSERT_FALSE(client->mkdir("d"));
  ASSERT_FALSE(client->write_file("d/f", bytes("abc")));
  EXPECT_EQ(size_of("d/f"), 3u);
  {  // a write growing the file, through a File
    File f;
    ASSERT_FALSE(client->open_file("d/f", O_WRONLY, f));
    size_t n = 0;
    ASSERT_FALSE(f.pwrite(3, bytes("defgh"), n));
    EXPECT_EQ(size_of("d/f"), 8u) << "before close";
    ASSERT_FALSE(f.close());
  }
  EXPECT_EQ(size_of("d/f"), 8u);
  Entry e;  // chmod through the inode API
  ASSERT_FALSE(client->resolve("d/f", e));
  SetAttr sa;
  sa.valid = set::kMode;
  sa.mode = 0600;
  Attr out;
  ASSERT_FALSE(client->setattr(e.inode, sa, out));
  ASSERT_FALSE(client->forget(e.inode, 1));
  Attr a;
  ASSERT_FALSE(client->stat("d/f", a));
  EXPECT_EQ(a.mode & 07777, 0600u);
  ASSERT_FALSE(client->rename("d/f", "d/g"));
  EXPECT_FALSE(exists("d/f"));
  EXPECT_EQ(size_of("d/g"), 8u);
  ASSERT_FALSE(client->link("d/g", "d/h"));
  ASSERT_FALSE(client->stat("d/g", a));
  EXPECT_EQ(a.nlink, 2u) << "link changes the target's link count";
  ASSERT_FALSE(client->unlink("d/h"));
  ASSERT_FALSE(client->stat("d/g", a));
  EXPECT_EQ(a.nlink, 1u);
  ASSERT_FALSE(client->unlink("d/g"));
  EXPECT_FALSE(exists("d/g"));
  EXPECT_FALSE(exists("d/new"));  // perhaps a negative entry now
  ASSERT_FALSE(client->write_file("d/new", bytes("x")));
  EXPECT_EQ(size_of("d/new"), 1u);
  ASSERT_FALSE(client->unlink("d/new"));
  ASSERT_FALSE(client->rmdir("d"));
  EXPECT_FALSE(exists("d"));
  ASSERT_FALSE(client->mkdir("d"));  // the same name, a new node
  EXPECT_TRUE(exists("d"));
  EXPECT_FALSE(exists("d/new"));
  EXPECT_TRUE(std::filesystem::is_directory(host("d")));
}

TEST_P(PathCacheTest, HostChangesAreSeenNoLaterThanTheTimeout) {
  if (mode() == "always") GTEST_SKIP() << "a day";
  write_host("f", "abc");
  write_host("gone", "x");
  ASSERT_EQ(size_of("f"), 3u);
  ASSERT_TRUE(exists("gone"));
  const auto changed = std::chrono::steady_clock::now();
  write_host("f", "abcdef");
  std::filesystem::remove(host("gone"));
  std::filesystem::permissions(host("f"), std::filesystem::perms::owner_read);
  if (mode() == "none") {  // no timeout: at once
    Attr a;
    ASSERT_FALSE(client->stat("f", a));
    EXPECT_EQ(a.size, 6u);
    EXPECT_EQ(a.mode & 0777, 0400u);
    EXPECT_FALSE(exists("gone"));
    return;
  }
  // auto: 1 s; polled up to the timeout and a generous slack for a busy machine.
  bool seen = false;
  while (!seen && std::chrono::steady_clock::now() - changed < 1s + 3s) {
    Attr a;
    seen = !client->stat("f", a) && a.size == 6 && (a.mode & 0777) == 0400 && !exists("gone");
    if (!seen) std::this_thread::sleep_for(20ms);
  }
  EXPECT_TRUE(seen);
}

TEST_P(PathCacheTest, AStatWithinTheTimeoutSendsNoRequest) {
  ASSERT_FALSE(client->mkdir("a"));
  ASSERT_FALSE(client->mkdir("a/b"));
  write_host("a/b/c", "x");
  Attr a;
  const auto first = std::chrono::steady_clock::now();
  ASSERT_FALSE(client->stat("a/b/c", a));
  const uint64_t before = requests();
  ASSERT_FALSE(client->stat("a/b/c", a));
  const uint64_t sent = requests() - before;
  if (mode() == "none") {
    EXPECT_GE(sent, 3u) << "nothing cached: a LOOKUP per name";
    EXPECT_EQ(client->stats().path_cache_hits, 0u);
  } else if (mode() == "always" || std::chrono::steady_clock::now() - first < 900ms) {
    EXPECT_EQ(sent, 0u);  // (auto: only asserted when both stats came within the timeout)
    EXPECT_GE(client->stats().path_cache_hits, 3u);
  }
}

TEST_P(PathCacheTest, EveryReferenceGoesBackAndTheDeviceSurvives) {
  ASSERT_FALSE(client->mkdir("w"));
  const int baseline = backend->open_fds();
  for (int i = 0; i < 50; ++i) {
    const std::string f = "w/f" + std::to_string(i % 7), g = "w/g" + std::to_string(i % 5);
    Attr a;
    ASSERT_FALSE(client->write_file(f, bytes("data")));
    ASSERT_FALSE(client->stat(f, a));
    ASSERT_FALSE(client->rename(f, g));
    (void)client->stat(f, a);
    if (i % 3 == 0) {
      ASSERT_FALSE(client->unlink(g));
    }
    ASSERT_FALSE(client->mkdir("w/d"));
    ASSERT_FALSE(client->stat("w/d", a));
    ASSERT_FALSE(client->rmdir("w/d"));
  }
  client->drop_caches();
  EXPECT_LE(wait_for_fds_at_most(*backend, baseline), baseline);
  Attr a;  // an over-forget would have killed virtiofsd
  ASSERT_FALSE(client->stat("w", a));
  EXPECT_EQ(client->failure(), std::error_code{});
  // close gives the cache's references back before DESTROY; virtiofsd must not abort.
  ASSERT_FALSE(client->stat("w/g1", a));
  client->close();
  std::this_thread::sleep_for(100ms);  // FORGET and DESTROY handled (not needed to pass)
  EXPECT_TRUE(alive(backend->pid())) << "virtiofsd aborted";
  EXPECT_FALSE(std::filesystem::exists(host("w/d")));
  EXPECT_TRUE(std::filesystem::exists(host("w/g1")));
}

// Threads racing on a few names: the client's view must match the host's afterwards (a stale
// insert would keep a name the host no longer has, or hide one it has), with nothing leaked.
TEST_P(PathCacheTest, ConcurrentChangesLeaveTheCacheTrue) {
  ASSERT_FALSE(client->mkdir("c"));
  const int baseline = backend->open_fds();
  constexpr int kNames = 4;
  auto name = [](int i) { return "c/n" + std::to_string(i); };
  std::atomic<int> unexpected{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int i = 0; i < 150; ++i) {
        const std::string a = name(rng() % kNames), b = name(rng() % kNames);
        Attr at;
        std::error_code ec;
        const unsigned op = rng() % 4;
        switch (op) {
          case 0: ec = client->write_file(a, bytes("x")); break;
          case 1: ec = client->stat(a, at); break;
          case 2: ec = client->rename(a, b); break;
          case 3: ec = client->unlink(a); break;
        }
        // Losing a race is ENOENT (or EEXIST for an exclusive create that lost one twice), or
        // virtiofsd's EIO for a name that now names a node this client does not hold (another
        // thread renamed one over it after this one looked it up: with or without a cache).
        if (ec && ec != std::errc::no_such_file_or_directory && ec != std::errc::file_exists &&
            ec != std::errc::io_error) {
          ++unexpected;
          ADD_FAILURE() << "op " << op << " " << a << " " << b << ": " << ec.message();
        }
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(unexpected.load(), 0);
  for (int i = 0; i < kNames; ++i) {
    EXPECT_EQ(exists(name(i)), std::filesystem::exists(host(name(i)))) << name(i);
  }
  client->drop_caches();
  EXPECT_LE(wait_for_fds_at_most(*backend, baseline), baseline);
  EXPECT_EQ(client->failure(), std::error_code{});
}

// An open File keeps its node by a pin in the cache, as an open file keeps its dentry:
// opening a cached name sends OPEN alone, a created file's name is cached (its unlink needs no
// LOOKUP), and a node whose name was dropped while open is forgotten only at its close.
TEST_P(PathCacheTest, OpenFilesPinTheirCachedNodes) {
  write_host("f", "abc");
  Attr a;
  // (auto: counts are only asserted when the steps came within its 1 s timeout)
  auto start = std::chrono::steady_clock::now();
  auto in_time = [&] { return mode() != "auto" || std::chrono::steady_clock::now() - start < 900ms; };
  ASSERT_FALSE(client->stat("f", a));
  const int baseline = backend->open_fds();  // with a cache: f's node among them
  uint64_t before = requests();
  File f;
  ASSERT_FALSE(client->open_file("f", O_RDONLY, f));
  const uint64_t to_open = requests() - before;
  if (mode() == "none") {
    EXPECT_EQ(to_open, 2u) << "nothing cached: LOOKUP, OPEN";
  } else if (in_time()) {
    EXPECT_EQ(to_open, 1u) << "a cached name: OPEN alone";
  }
  client->drop_caches();  // the name goes; the open file still holds the node
  std::string data(3, '\0');
  size_t n = 0;
  ASSERT_FALSE(f.pread(0, std::as_writable_bytes(std::span(data)), n));
  EXPECT_EQ(data, "abc");
  ASSERT_FALSE(f.close());
  const int after = mode() == "none" ? baseline : baseline - 1;
  EXPECT_LE(wait_for_fds_at_most(*backend, after), after)
      << "the node goes back once the file is closed";

  start = std::chrono::steady_clock::now();
  before = requests();
  ASSERT_FALSE(client->open_file("g", O_CREAT | O_EXCL | O_WRONLY, f));
  ASSERT_FALSE(f.close());
  ASSERT_FALSE(client->unlink("g"));
  const uint64_t sent = requests() - before;
  // CREATE, FLUSH, RELEASE, UNLINK; without a cache also the LOOKUP unlink needs.
  if (mode() == "none" || in_time()) {
    EXPECT_EQ(sent, mode() == "none" ? 5u : 4u);
  }
  EXPECT_FALSE(std::filesystem::exists(host("g")));
  client->close();
  EXPECT_TRUE(alive(backend->pid())) << "virtiofsd aborted";
}

TEST_P(PathCacheTest, OffCachesNothing) {
  client.reset();
  backend.reset();
  Options o;
  o.path_cache_entries = 0;
  start(o, {"-o", std::string("cache=") + GetParam()});
  write_host("f", "x");
  Attr a;
  ASSERT_FALSE(client->stat("f", a));
  const uint64_t before = requests();
  ASSERT_FALSE(client->stat("f", a));
  EXPECT_EQ(requests() - before, 1u) << "a LOOKUP, as without a cache";
  EXPECT_EQ(client->stats().path_cache_hits + client->stats().path_cache_misses, 0u);
}

// OPEN (and CREATE) with O_TRUNC through the inode API truncates on the device: the cached
// size must go with it, as the kernel's fuse_finish_open invalidates the attributes.
TEST_P(PathCacheTest, InodeOpenWithTruncDropsTheCachedSize) {
  write_host("f", "abcdef");
  ASSERT_EQ(size_of("f"), 6u);
  Entry e;
  ASSERT_FALSE(client->resolve("f", e));
  OpenFile of;
  ASSERT_FALSE(client->open(e.inode, O_WRONLY | O_TRUNC, of));
  ASSERT_FALSE(client->release(e.inode, of.fh));
  ASSERT_FALSE(client->forget(e.inode, 1));
  ASSERT_EQ(std::filesystem::file_size(host("f")), 0u);
  EXPECT_EQ(size_of("f"), 0u) << "open(O_TRUNC)";

  write_host("g", "abcdef");
  std::filesystem::create_hard_link(host("g"), host("h"));
  ASSERT_EQ(size_of("g"), 6u);
  Created c;  // through a name the cache does not hold
  ASSERT_FALSE(client->create(kRootInode, "h", O_WRONLY | O_TRUNC, 0644, c));
  ASSERT_FALSE(client->release(c.entry.inode, c.file.fh));
  ASSERT_FALSE(client->forget(c.entry.inode, 1));
  ASSERT_EQ(std::filesystem::file_size(host("g")), 0u);
  EXPECT_EQ(size_of("g"), 0u) << "create(O_TRUNC) of an existing name";
}

// Removing a name the cache does not hold (through the inode API) of a node it holds under
// another name: the link count the cache keeps for that node goes.
TEST_P(PathCacheTest, RemovingAnUncachedHardLinkDropsTheLinkCount) {
  write_host("a", "x");
  std::filesystem::create_hard_link(host("a"), host("b"));
  std::filesystem::create_hard_link(host("a"), host("c"));
  write_host("other", "y");
  Attr a;
  ASSERT_FALSE(client->stat("a", a));
  ASSERT_EQ(a.nlink, 3u);
  ASSERT_FALSE(client->unlink(kRootInode, "b"));
  ASSERT_FALSE(client->stat("a", a));
  EXPECT_EQ(a.nlink, 2u) << "unlink";
  Entry other;  // virtiofsd renames only a node the driver holds
  ASSERT_FALSE(client->resolve("other", other));
  ASSERT_FALSE(client->rename(kRootInode, "other", kRootInode, "c"));  // c's node loses a link
  ASSERT_FALSE(client->forget(other.inode, 1));
  ASSERT_FALSE(client->stat("a", a));
  EXPECT_EQ(a.nlink, 1u) << "rename over it";
}

// With lookup accounting on, the cache's references are not the caller's: a forget of more
// than the caller was handed is refused, or virtiofsd would free a node the cache still names.
TEST_P(PathCacheTest, AForgetOfTheCachesReferenceIsRefused) {
  write_host("f", "abc");
  Entry e;
  ASSERT_FALSE(client->resolve("f", e));  // one reference of the caller's
  EXPECT_EQ(client->forget(e.inode, 2), std::errc::invalid_argument);
  EXPECT_FALSE(client->forget(e.inode, 1));
  EXPECT_EQ(client->forget(e.inode, 1), std::errc::invalid_argument);
  EXPECT_EQ(size_of("f"), 3u);
}

INSTANTIATE_TEST_SUITE_P(Cache, PathCacheTest, ::testing::Values("none", "auto", "always"),
                         [](const ::testing::TestParamInfo<const char*>& p) {
                           return std::string(p.param);
                         });

}  // namespace
