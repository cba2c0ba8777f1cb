// The path cache alone (lib/client/path_cache.hpp), on a clock the test moves: timeouts,
// the LRU bound, a directory's names dropped with it, negative entries, pins, the epoch guard
// against stale inserts, and every reference given back.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <fcntl.h>
#include <linux/fuse.h>

#include <map>
#include <stop_token>

#include "client/connector.hpp"
#include "client/path_cache.hpp"
#include "unit/session_fixture.hpp"
#include "virtiofs/client.hpp"

using namespace virtiofs;
using client::PathCache;
using namespace std::chrono_literals;

namespace {

struct PathCacheTest : ::testing::Test {
  PathCache cache;
  PathCache::Clock::time_point now{std::chrono::hours(1)};
  std::map<Inode, uint64_t> forgotten;
  uint64_t handed = 0;  // references the "device" gave to the cache

  void start(size_t capacity) {
    cache.start(capacity, [this](Inode i, uint64_t n) { forgotten[i] += n; },
                [this] { return now; });
  }
  static Entry entry(Inode inode, uint32_t type = S_IFREG, Timespec valid = {1, 0}) {
    Entry e;
    e.inode = inode;
    e.attr.mode = type | 0644;
    e.attr.size = inode * 10;
    e.entry_valid = e.attr_valid = valid;
    return e;
  }
  // A walk's insert, its pin let go at once.
  bool put(Inode parent, std::string_view name, const Entry& e) {
    ++handed;
    if (!cache.insert(parent, name, e, cache.epoch())) return false;
    cache.unpin(e.inode);
    return true;
  }
  PathCache::Found find(Inode parent, std::string_view name, PathCache::Hit* out = nullptr) {
    PathCache::Hit hit;
    auto f = cache.find(parent, name, hit);
    if (f == PathCache::Found::kPositive) cache.unpin(hit.inode);
    if (out) *out = hit;
    return f;
  }
  uint64_t forgotten_total() const {
    uint64_t n = 0;
    for (auto [i, c] : forgotten) n += c;
    return n;
  }
};

TEST_F(PathCacheTest, NothingIsServedPastItsTimeout) {
  start(16);
  Entry e = entry(10);
  e.attr_valid = {0, 500'000'000};
  ASSERT_TRUE(put(kRootInode, "f", e));
  PathCache::Hit hit;
  ASSERT_EQ(find(kRootInode, "f", &hit), PathCache::Found::kPositive);
  EXPECT_EQ(hit.inode, 10u);
  EXPECT_TRUE(hit.attr_fresh);
  EXPECT_EQ(hit.attr.size, 100u);
  now += 499ms;
  ASSERT_EQ(find(kRootInode, "f", &hit), PathCache::Found::kPositive);
  EXPECT_TRUE(hit.attr_fresh);
  now += 1ms;  // the attributes' deadline itself: no longer served
  ASSERT_EQ(find(kRootInode, "f", &hit), PathCache::Found::kPositive);
  EXPECT_FALSE(hit.attr_fresh);
  now += 500ms;  // the name's deadline
  EXPECT_EQ(find(kRootInode, "f"), PathCache::Found::kMiss);
  EXPECT_EQ(cache.hits(), 3u);
  EXPECT_EQ(cache.misses(), 1u);
}

TEST_F(PathCacheTest, ZeroTimeoutsKeepNothing) {
  start(16);
  ++handed;
  EXPECT_FALSE(cache.insert(kRootInode, "f", entry(10, S_IFREG, {0, 0}), cache.epoch()))
      << "the caller keeps its reference";
  EXPECT_EQ(cache.size(), 0u);
  cache.insert_negative(kRootInode, "g", {0, 0}, cache.epoch());
  EXPECT_EQ(find(kRootInode, "g"), PathCache::Found::kMiss);
}

TEST_F(PathCacheTest, OffCachesNothing) {
  start(0);
  ++handed;
  EXPECT_FALSE(cache.insert(kRootInode, "f", entry(10), cache.epoch()));
  EXPECT_EQ(find(kRootInode, "f"), PathCache::Found::kMiss);
  EXPECT_EQ(cache.misses(), 0u) << "off: not even counted";
}

TEST_F(PathCacheTest, TheLeastRecentlyUsedNameGoesFirstWithItsReference) {
  start(2);
  ASSERT_TRUE(put(kRootInode, "a", entry(10)));
  ASSERT_TRUE(put(kRootInode, "b", entry(11)));
  ASSERT_EQ(find(kRootInode, "a"), PathCache::Found::kPositive);  // b is now the oldest
  ASSERT_TRUE(put(kRootInode, "c", entry(12)));
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_EQ(forgotten, (std::map<Inode, uint64_t>{{11, 1}}));
  EXPECT_EQ(find(kRootInode, "b"), PathCache::Found::kMiss);
  EXPECT_EQ(find(kRootInode, "a"), PathCache::Found::kPositive);
  EXPECT_EQ(cache.references(), 2u);
}

TEST_F(PathCacheTest, ADirectoryEvictedTakesTheNamesUnderItFirst) {
  start(3);
  ASSERT_TRUE(put(kRootInode, "d", entry(10, S_IFDIR)));
  ASSERT_TRUE(put(10, "x", entry(11)));
  ASSERT_TRUE(put(kRootInode, "e", entry(12)));
  ASSERT_EQ(find(10, "x"), PathCache::Found::kPositive);  // d is the oldest, x is not
  ASSERT_TRUE(put(kRootInode, "f", entry(13)));
  EXPECT_EQ(forgotten, (std::map<Inode, uint64_t>{{10, 1}, {11, 1}}))
      << "(10, x) must not outlive node 10's reference: the device may reuse the id";
  EXPECT_EQ(find(10, "x"), PathCache::Found::kMiss);
  EXPECT_EQ(cache.size(), 2u);
  // Nor can a name be put under a directory the cache no longer holds.
  ++handed;
  EXPECT_FALSE(cache.insert(10, "y", entry(14), cache.epoch()));
}

TEST_F(PathCacheTest, NegativeEntriesLastTheirTimeoutAndCreatingDropsThem) {
  start(16);
  cache.insert_negative(kRootInode, "n", {2, 0}, cache.epoch());
  EXPECT_EQ(find(kRootInode, "n"), PathCache::Found::kNegative);
  now += 2s;
  EXPECT_EQ(find(kRootInode, "n"), PathCache::Found::kMiss);
  cache.insert_negative(kRootInode, "n", {2, 0}, cache.epoch());
  cache.drop_name(kRootInode, "n");  // this client created it
  EXPECT_EQ(find(kRootInode, "n"), PathCache::Found::kMiss);
  EXPECT_EQ(forgotten_total(), 0u) << "a negative entry holds no reference";
}

TEST_F(PathCacheTest, AnInsertThatCrossedAChangeIsRefused) {
  start(16);
  const uint64_t sent = cache.epoch();
  cache.drop_name(kRootInode, "f");  // an unlink answered while the LOOKUP was out
  ++handed;
  EXPECT_FALSE(cache.insert(kRootInode, "f", entry(10), sent)) << "stale: the caller forgets it";
  EXPECT_EQ(find(kRootInode, "f"), PathCache::Found::kMiss);
  cache.insert_negative(kRootInode, "g", {5, 0}, sent);
  EXPECT_EQ(find(kRootInode, "g"), PathCache::Found::kMiss);
  // Attributes too: a GETATTR sent before a write must not bring the old size back.
  ASSERT_TRUE(put(kRootInode, "h", entry(11)));
  const uint64_t getattr_sent = cache.epoch();
  cache.drop_attr(11);
  Attr old;
  old.size = 1;
  cache.store_attr(11, old, {5, 0}, getattr_sent);
  PathCache::Hit hit;
  ASSERT_EQ(find(kRootInode, "h", &hit), PathCache::Found::kPositive);
  EXPECT_FALSE(hit.attr_fresh);
}

TEST_F(PathCacheTest, APinnedNodeIsForgottenOnlyWhenItsLastUserLeaves) {
  start(16);
  ASSERT_TRUE(put(kRootInode, "f", entry(10)));
  PathCache::Hit hit;
  ASSERT_EQ(cache.find(kRootInode, "f", hit), PathCache::Found::kPositive);  // pinned
  cache.drop_name(kRootInode, "f");
  EXPECT_TRUE(forgotten.empty()) << "a walk still uses node 10";
  cache.unpin(10);
  EXPECT_EQ(forgotten, (std::map<Inode, uint64_t>{{10, 1}}));
}

TEST_F(PathCacheTest, RevalidatingTheSameNodeKeepsOneReferenceAndTheNamesBelow) {
  start(16);
  ASSERT_TRUE(put(kRootInode, "d", entry(10, S_IFDIR)));
  ASSERT_TRUE(put(10, "x", entry(11)));
  now += 1s;  // d expired: a walk looks it up again and finds the same node
  ASSERT_EQ(find(kRootInode, "d"), PathCache::Found::kMiss);
  ASSERT_TRUE(put(kRootInode, "d", entry(10, S_IFDIR, {5, 0})));
  EXPECT_EQ(forgotten, (std::map<Inode, uint64_t>{{10, 1}})) << "the second reference";
  EXPECT_EQ(cache.references(), 2u);
  // x expired with the clock but its key stays valid; another node for d replaces both.
  ASSERT_TRUE(put(kRootInode, "d", entry(20, S_IFDIR)));
  EXPECT_EQ(forgotten, (std::map<Inode, uint64_t>{{10, 2}, {11, 1}}));
}

// A device that answers a name with the same node id but another file type or generation
// names another object: the old one's names below go, and the walk sees the new type.
TEST_F(PathCacheTest, TheSameNodeIdWithAnotherTypeOrGenerationIsAnotherNode) {
  start(16);
  ASSERT_TRUE(put(kRootInode, "d", entry(10, S_IFDIR)));
  ASSERT_TRUE(put(10, "x", entry(11)));
  now += 1s;
  ASSERT_TRUE(put(kRootInode, "d", entry(10, S_IFREG)));
  PathCache::Hit hit;
  ASSERT_EQ(find(kRootInode, "d", &hit), PathCache::Found::kPositive);
  EXPECT_EQ(hit.type, unsigned{S_IFREG});
  EXPECT_EQ(find(10, "x"), PathCache::Found::kMiss) << "a name under the old directory";
  ASSERT_TRUE(put(kRootInode, "e", entry(30, S_IFDIR)));
  ASSERT_TRUE(put(30, "y", entry(31)));
  Entry again = entry(30, S_IFDIR);
  again.generation = 2;  // through the inode API's LOOKUP
  cache.refresh(kRootInode, "e", again, cache.epoch());
  EXPECT_EQ(find(30, "y"), PathCache::Found::kMiss);
  EXPECT_EQ(cache.references(), 1u) << "d's (once), nothing of e's";
}

TEST_F(PathCacheTest, ClearGivesBackEveryReference) {
  start(16);
  ASSERT_TRUE(put(kRootInode, "d", entry(10, S_IFDIR)));
  ASSERT_TRUE(put(10, "x", entry(11)));
  ASSERT_TRUE(put(10, "hard", entry(11)));  // a hard link: one reference per name
  ASSERT_TRUE(put(kRootInode, "d", entry(10, S_IFDIR)));  // revalidated
  cache.insert_negative(kRootInode, "n", {5, 0}, cache.epoch());
  PathCache::Hit hit;
  ASSERT_EQ(cache.find(10, "x", hit), PathCache::Found::kPositive);  // a walk in flight
  cache.clear();
  EXPECT_EQ(cache.size(), 0u);
  cache.unpin(11);
  EXPECT_EQ(forgotten_total(), handed);
  EXPECT_EQ(forgotten, (std::map<Inode, uint64_t>{{10, 2}, {11, 2}}));
  EXPECT_EQ(cache.references(), 0u);
}

TEST_F(PathCacheTest, OwnChangesUpdateAttributesAtOnce) {
  start(16);
  ASSERT_TRUE(put(kRootInode, "f", entry(10)));
  Attr a;
  a.size = 77;
  cache.own_setattr(10, a, {5, 0}, cache.epoch());
  PathCache::Hit hit;
  ASSERT_EQ(find(kRootInode, "f", &hit), PathCache::Found::kPositive);
  ASSERT_TRUE(hit.attr_fresh);
  EXPECT_EQ(hit.attr.size, 77u);
  cache.drop_attr(10);  // a write
  ASSERT_EQ(find(kRootInode, "f", &hit), PathCache::Found::kPositive);
  EXPECT_FALSE(hit.attr_fresh);
  cache.drop_names(kRootInode, "f", kRootInode, "g");  // a rename
  EXPECT_EQ(find(kRootInode, "f"), PathCache::Found::kMiss);
  EXPECT_EQ(forgotten, (std::map<Inode, uint64_t>{{10, 1}}));
}

// The cache in a Client over the loopback device (MemFs: entry and attribute timeouts of 1 s),
// its request queue stepped by the test, calls given up on (Options::interrupts off).
class CachedClientGiveUp : public ::testing::Test {
 protected:
  void SetUp() override {
    loop = std::make_unique<test::LoopbackFs>();
    Options o;
    o.queue_size = 8;
    o.num_request_queues = 1;
    o.interrupts = false;
    o.registered_memory_bytes = 1 << 20;
    client = client::Connector::over(loop->transport(), o);
    Created c;
    ASSERT_FALSE(client->create(kRootInode, "a", O_RDWR, 0644, c));
    ASSERT_FALSE(client->release(c.entry.inode, c.file.fh));
    ASSERT_FALSE(client->forget(c.entry.inode, 1));
  }
  void TearDown() override {
    if (HasFailure()) loop->device().lose();
    loop->device().set_all_stepped(false);
    client.reset();
  }
  test::LoopbackDevice& dev() { return loop->device(); }
  std::function<void()> lose() {
    return [this] { loop->device().lose(); };
  }
  std::optional<test::DeviceChain> next_request(uint32_t opcode) {
    auto chain = test::take_one(dev(), 1);
    auto header = chain ? test::request_header(*chain) : std::nullopt;
    EXPECT_TRUE(header && header->opcode == opcode) << "expected opcode " << opcode;
    return chain;
  }
  void answer(test::DeviceChain chain) {
    std::vector<test::DeviceChain> held;
    held.push_back(std::move(chain));
    dev().answer(1, std::move(held));  // FsServer answers it for real
  }
  std::unique_ptr<test::LoopbackFs> loop;
  std::unique_ptr<Client> client;
};

// An UNLINK given up while the device holds it may still run later: a LOOKUP of the name the
// device answers before it runs the UNLINK must not be kept, or "a" is served after it is gone
// for the entry's timeout (RENAME, SETATTR, ... alike).
TEST_F(CachedClientGiveUp, AMutationTheDeviceStillHoldsKeepsCrossingRepliesOut) {
  Attr attr;
  ASSERT_FALSE(client->stat("a", attr));  // cached
  dev().set_stepped(1, true);
  std::stop_source stop;
  std::error_code removed;
  std::optional<test::DeviceChain> unlink;
  {
    test::JoinedThread caller(lose(), [&] {
      removed = client->unlink(kRootInode, "a", stop.get_token());
    });
    unlink = next_request(FUSE_UNLINK);
    ASSERT_TRUE(unlink);
    stop.request_stop();
    ASSERT_TRUE(caller.finished_within());
  }
  EXPECT_EQ(removed, std::errc::interrupted);
  std::error_code looked;
  {
    test::JoinedThread caller(lose(), [&] {
      Attr a;
      looked = client->stat("a", a);
    });
    auto lookup = next_request(FUSE_LOOKUP);
    ASSERT_TRUE(lookup);
    answer(std::move(*lookup));  // answered before the device runs the UNLINK
    ASSERT_TRUE(caller.finished_within());
  }
  EXPECT_FALSE(looked);
  answer(std::move(*unlink));  // the device removes it now; its reply is dropped
  ASSERT_TRUE(test::eventually([&] { return client->stats().replies_dropped == 1; }));
  dev().set_all_stepped(false);
  EXPECT_EQ(client->stat("a", attr), std::errc::no_such_file_or_directory);
  EXPECT_FALSE(client->failure());
}

// The giving up is counted (result) and settled (the dropped reply) on different threads, in
// either order: an error reply settles it too, and the cache stores again afterwards.
TEST_F(CachedClientGiveUp, TheCacheStoresAgainOnceTheDeviceAnswered) {
  dev().set_stepped(1, true);
  std::stop_source stop;
  std::error_code removed;
  std::optional<test::DeviceChain> unlink;
  {
    test::JoinedThread caller(lose(), [&] {
      removed = client->unlink(kRootInode, "nothing", stop.get_token());
    });
    unlink = next_request(FUSE_UNLINK);
    ASSERT_TRUE(unlink);
    stop.request_stop();
    ASSERT_TRUE(caller.finished_within());
  }
  answer(std::move(*unlink));  // ENOENT, dropped
  ASSERT_TRUE(test::eventually([&] { return client->stats().replies_dropped == 1; }));
  dev().set_all_stepped(false);
  Attr attr;
  ASSERT_FALSE(client->stat("a", attr));
  const uint64_t hits = client->stats().path_cache_hits;
  ASSERT_FALSE(client->stat("a", attr));  // within MemFs's 1 s timeout
  EXPECT_EQ(client->stats().path_cache_hits, hits + 1) << "the cache no longer stores";
}

}  // namespace
