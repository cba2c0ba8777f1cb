// The Client's safety rails over the in-process loopback device: lookup accounting (the ledger
// itself, and forget with it on and off) and IoBuffers that outlive their Client.
#include <gtest/gtest.h>

#include <fcntl.h>

#include <cstring>
#include <thread>
#include <vector>

#include "client/connector.hpp"
#include "client/lookup_ledger.hpp"
#include "unit/session_fixture.hpp"
#include "virtiofs/client.hpp"

using namespace virtiofs;
using namespace virtiofs::test;
using client::LookupLedger;

namespace {

// ---- the ledger alone ----

TEST(LookupLedger, CountsAddsAndTakesAndForgetsEmptyEntries) {
  LookupLedger ledger;
  ledger.start(true);
  ledger.add(7);
  ledger.add(7, 2);
  EXPECT_EQ(ledger.held(7), 3u);
  EXPECT_FALSE(ledger.take(7, 4)) << "more than held";
  EXPECT_EQ(ledger.held(7), 3u) << "a refused take changes nothing";
  EXPECT_TRUE(ledger.take(7, 2));
  EXPECT_TRUE(ledger.take(7, 1));
  EXPECT_EQ(ledger.held(7), 0u);
  EXPECT_FALSE(ledger.take(7, 1)) << "the emptied entry is gone";
  EXPECT_FALSE(ledger.take(8, 1)) << "never looked up";
}

TEST(LookupLedger, NeitherTheRootNorInodeZeroIsCounted) {
  LookupLedger ledger;
  ledger.start(true);
  ledger.add(kRootInode, 5);
  ledger.add(0, 5);
  EXPECT_EQ(ledger.held(kRootInode), 0u);
  EXPECT_EQ(ledger.held(0), 0u);
}

TEST(LookupLedger, OffStoresNothingAndRefusesNothing) {
  LookupLedger ledger;
  ledger.start(false);
  EXPECT_FALSE(ledger.on());
  ledger.add(7);
  EXPECT_EQ(ledger.held(7), 0u);
  EXPECT_TRUE(ledger.take(7, 100));
}

TEST(LookupLedger, RepliesCountedThroughNoteReferences) {
  LookupLedger ledger;
  ledger.start(true);
  Entry e;
  e.inode = 11;
  Created c;
  c.entry.inode = 12;
  client::note_references(ledger, e);
  client::note_references(ledger, c);
  client::note_references(ledger, Attr{});  // names no node
  client::note_references(ledger, Entry{});  // a negative entry (inode 0)
  EXPECT_EQ(ledger.held(11), 1u);
  EXPECT_EQ(ledger.held(12), 1u);
}

// Threads adding and taking on shared inodes: every take matches an add, so all end at zero.
TEST(LookupLedger, ConcurrentAddsAndTakesBalance) {
  LookupLedger ledger;
  ledger.start(true);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (Inode i = 0; i < 20000; ++i) {
        ledger.add(2 + i % 64);
        EXPECT_TRUE(ledger.take(2 + i % 64, 1));
      }
    });
  for (auto& th : threads) th.join();
  for (Inode i = 2; i < 66; ++i) EXPECT_EQ(ledger.held(i), 0u);
}

// kDefault is decided by the library's build; the tests are built the same way.
TEST(LookupLedger, DefaultIsOnExactlyInDebugBuilds) {
#ifdef NDEBUG
  EXPECT_FALSE(client::lookup_accounting_on(LookupAccounting::kDefault));
#else
  EXPECT_TRUE(client::lookup_accounting_on(LookupAccounting::kDefault));
#endif
  EXPECT_TRUE(client::lookup_accounting_on(LookupAccounting::kOn));
  EXPECT_FALSE(client::lookup_accounting_on(LookupAccounting::kOff));
}

// ---- forget over the loopback device (MemFs counts what reaches it, and survives a bad
// forget, unlike virtiofsd) ----

class LoopbackClient : public ::testing::Test {
 protected:
  void connect(Options o) {
    loop = std::make_unique<LoopbackFs>();
    o.queue_size = 8;
    o.num_request_queues = 1;
    client = client::Connector::over(loop->transport(), o);
  }
  void TearDown() override {
    client.reset();
    loop.reset();
  }
  Inode create_file(const char* name) {
    Created c;
    EXPECT_FALSE(client->create(kRootInode, name, O_RDWR, 0644, c));
    EXPECT_FALSE(client->release(c.entry.inode, c.file.fh));
    return c.entry.inode;
  }
  std::unique_ptr<LoopbackFs> loop;
  std::unique_ptr<Client> client;
};

TEST_F(LoopbackClient, AccountingOnRefusesAForgetBeyondTheLookupsAndSendsNothing) {
  Options o;
  o.lookup_accounting = LookupAccounting::kOn;
  connect(o);
  const Inode ino = create_file("f");
  EXPECT_EQ(client->forget(ino, 5), std::errc::invalid_argument);
  std::this_thread::sleep_for(20ms);  // FORGETs gather for at most a millisecond
  EXPECT_EQ(client->stats().forgets, 0u);
  EXPECT_EQ(loop->fs().lookups(ino), 1u);
  EXPECT_FALSE(client->forget(ino, 1));
  EXPECT_TRUE(eventually([&] { return loop->fs().lookups(ino) == 0u; }));
  EXPECT_EQ(client->forget(ino, 1), std::errc::invalid_argument) << "all given back already";
  EXPECT_FALSE(client->forget(kRootInode, 3)) << "the root: a no-op, never refused";
}

// Off, forget is passed through: the device gets what the caller said, right or wrong.
TEST_F(LoopbackClient, AccountingOffPassesEveryForgetThrough) {
  Options o;
  o.lookup_accounting = LookupAccounting::kOff;
  connect(o);
  const Inode ino = create_file("f");
  EXPECT_FALSE(client->forget(ino, 5));
  EXPECT_FALSE(client->forget(4242, 1));
  EXPECT_TRUE(eventually([&] { return loop->stat("forget_nlookup") == 6; }))
      << "nlookup the device saw: " << loop->stat("forget_nlookup");
}

// Async replies go through the same verdict, so they are counted too.
TEST_F(LoopbackClient, AccountingCountsAsyncEntries) {
  Options o;
  o.lookup_accounting = LookupAccounting::kOn;
  connect(o);
  const Inode ino = create_file("f");
  std::mutex mu;
  std::condition_variable cv;
  int done = 0;
  for (int i = 0; i < 2; ++i)
    client->lookup(kRootInode, "f", [&](std::error_code ec, Entry e) {
      EXPECT_FALSE(ec);
      EXPECT_EQ(e.inode, ino);
      std::lock_guard lock(mu);
      ++done;
      cv.notify_all();
    });
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, kBound, [&] { return done == 2; }));
  }
  EXPECT_EQ(client->forget(ino, 4), std::errc::invalid_argument);
  EXPECT_FALSE(client->forget(ino, 3)) << "CREATE's reference and two LOOKUPs'";
}

// ---- IoBuffer lifetime ----

TEST_F(LoopbackClient, IoBufferOutlivesItsClient) {
  Options o;
  o.registered_memory_bytes = 1 << 20;
  connect(o);
  IoBuffer buffer = client->allocate_buffer(64 << 10);
  IoBuffer moved_later = client->allocate_buffer(4096);
  client.reset();
  // The memory is still mapped: writing and reading it is fine (ASan and the MMU agree).
  std::memset(buffer.data(), 0xa5, buffer.size());
  EXPECT_EQ(buffer.span()[buffer.size() - 1], std::byte{0xa5});
  buffer = std::move(moved_later);  // gives the first back to the orphaned pool
  EXPECT_EQ(buffer.size(), 4096u);
  buffer = IoBuffer();  // the last one: the pool and the mapping go now
  EXPECT_EQ(buffer.data(), nullptr);
}

TEST_F(LoopbackClient, ABufferGivenBackIsHandedOutAgain) {
  Options o;
  o.registered_memory_bytes = 256 << 10;
  connect(o);
  std::byte* first = nullptr;
  {
    IoBuffer all = client->allocate_buffer(256 << 10);
    first = all.data();
    EXPECT_THROW(client->allocate_buffer(4096), std::system_error) << "all of it is lent out";
  }
  IoBuffer again = client->allocate_buffer(256 << 10);
  EXPECT_EQ(again.data(), first);
}

}  // namespace
