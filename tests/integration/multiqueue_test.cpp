// Multiqueue, completion-driven backpressure, FORGET delivery and FUSE_INTERRUPT, against the
// test backend (tests/support/test_backend: several request queues, held requests, counts of
// what it saw), and busy-poll against the real virtiofsd.
#include <fcntl.h>

#include <atomic>
#include <future>
#include <random>
#include <stop_token>
#include <thread>

#include "integration/fixture.hpp"
#include "support/test_backend_process.hpp"

using namespace virtiofs;
using namespace virtiofs::test;
using namespace std::chrono_literals;

namespace {

std::unique_ptr<Client> connect_to(const TestBackend& backend, Options o = {}) {
  o.socket_path = backend.socket_path();
  return Client::connect(o);
}

// Options for the tests of FUSE_INTERRUPT (the test backend handles it; virtiofsd 7.2 does not).
Options interrupting(Options o = {}) {
  o.interrupts = true;
  return o;
}

// Creates `name` holding `data` through the client.
void put(Client& c, const std::string& name, const std::string& data) {
  ASSERT_FALSE(c.write_file(name, bytes(data)));
}

}  // namespace

TEST(MultiQueue, UsesEveryQueueTheDeviceOffersAndSpreadsThreadsOverThem) {
  TestBackend backend({"--queues", "4"});
  auto client = connect_to(backend);
  ASSERT_EQ(client->num_request_queues(), 4u) << "0 queues asked: all the device offers";
  constexpr int kThreads = 8, kRounds = 200;
  std::vector<std::thread> threads;
  std::atomic<int> bad{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::string name = "f" + std::to_string(t);
      const std::string data = random_bytes(10000 + t, t);
      if (client->write_file(name, bytes(data))) ++bad;
      for (int i = 0; i < kRounds; ++i) {
        std::string back;
        if (client->read_file(name, back) || back != data) ++bad;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
  client.reset();
  const BackendCounts counts = backend.counts();
  ASSERT_EQ(counts.per_queue.size(), 5u);
  uint64_t total = 0;
  for (unsigned q = 1; q <= 4; ++q) total += counts.per_queue[q];
  for (unsigned q = 1; q <= 4; ++q) {
    // Two threads per queue: each queue carries about a quarter of the work.
    EXPECT_GT(counts.per_queue[q], total / 8) << "queue " << q << " of " << total;
  }
}

TEST(MultiQueue, AskingForMoreQueuesThanOfferedIsAClearError) {
  TestBackend backend({"--queues", "2"});
  Options o;
  o.socket_path = backend.socket_path();
  o.num_request_queues = 3;
  expect_connect_error(o, std::errc::invalid_argument, "2 request queue(s), 3 asked for");
}

TEST(Backpressure, ThousandRequestsOnEightDescriptorsWithSlowReorderingDevice) {
  // The device takes 20 us per request and completes each batch backwards: the ring is full
  // nearly all the time and completions free descriptors out of order.
  TestBackend backend({"--queues", "2", "--delay-us", "20", "--reorder"});
  Options o;
  o.queue_size = 8;
  auto client = connect_to(backend, o);
  put(*client, "target", "abcd");
  expect_all_getattrs_complete(*client, "target", 4, 1000);
}

TEST(Forget, HundredThousandForgetsAllReachTheDeviceThroughASmallHiprioRing) {
  TestBackend backend;
  Options o;
  o.queue_size = 8;  // hiprio has 8 descriptors: most batches wait for room
  o.lookup_accounting = LookupAccounting::kOff;  // made-up inodes; the test backend takes them
  auto client = connect_to(backend, o);
  constexpr uint64_t kForgets = 100000;
  uint64_t nlookup_sum = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (uint64_t i = t; i < kForgets; i += 4) client->forget(1000 + i, 1 + i % 3);
    });
  for (uint64_t i = 0; i < kForgets; ++i) nlookup_sum += 1 + i % 3;
  for (auto& th : threads) th.join();
  client.reset();  // DESTROY after the FORGETs; the backend then writes its counts
  const BackendCounts counts = backend.counts();
  EXPECT_EQ(counts.forget_entries, kForgets);
  EXPECT_EQ(counts.forget_nlookup, nlookup_sum);
  EXPECT_GT(counts.per_opcode.at("batch_forget"), 1u);
}

// A stream of FORGETs is gathered (up to 1 ms, or a full batch) into a few BATCH_FORGETs, not
// one request each, and every entry still arrives.
TEST(Forget, AStreamOfForgetsIsGatheredIntoFewBatches) {
  TestBackend backend;
  Options o;
  o.lookup_accounting = LookupAccounting::kOff;  // made-up inodes; the test backend takes them
  auto client = connect_to(backend, o);
  constexpr uint64_t kForgets = 1000;
  for (uint64_t i = 0; i < kForgets; ++i) client->forget(1000 + i, 1);
  std::this_thread::sleep_for(50ms);  // the gathering's timer has long fired
  EXPECT_EQ(client->stats().forgets, kForgets) << "FORGETs still held back after the delay";
  client.reset();
  const BackendCounts counts = backend.counts();
  EXPECT_EQ(counts.forget_entries, kForgets);
  // 1000 entries fill two batches of 509; the timer sends what is left, plus whatever a slow
  // (sanitized) loop spread over several milliseconds.
  EXPECT_LE(counts.per_opcode.at("batch_forget"), 20u);
}

class InterruptTest : public ::testing::Test {
 protected:
  void open_file(Client& c, File& f, const std::string& data) {
    put(c, "data", data);
    ASSERT_FALSE(c.open_file("data", O_RDONLY, f));
  }
};

TEST_F(InterruptTest, AHeldReadEndsWithEINTRWhenStopped) {
  TestBackend backend({"--hold", "read"});  // READs wait until interrupted
  auto client = connect_to(backend, interrupting());
  File f;
  open_file(*client, f, "payload");
  std::stop_source stop;
  auto result = std::async(std::launch::async, [&] {
    std::string buf(16, '\0');
    size_t n = 0;
    return client->read(f.inode(), f.handle(), 0, std::as_writable_bytes(std::span(buf)), n,
                        stop.get_token());
  });
  EXPECT_EQ(result.wait_for(200ms), std::future_status::timeout) << "the read must be held";
  const auto asked = std::chrono::steady_clock::now();
  stop.request_stop();
  ASSERT_EQ(result.wait_for(5s), std::future_status::ready) << "interrupted read never ended";
  EXPECT_EQ(result.get(), std::errc::interrupted);
  EXPECT_LT(std::chrono::steady_clock::now() - asked, 1s);
  EXPECT_EQ(client->stats().interrupts_sent, 1u);
  EXPECT_FALSE(client->failure()) << "an interrupt is not a failure";
  std::string text;  // the session goes on working (this read is held too: use a path op)
  Attr a;
  EXPECT_FALSE(client->stat("data", a));
  f = File();
  client.reset();
  const BackendCounts counts = backend.counts();
  EXPECT_EQ(counts.interrupts, 1u);
  EXPECT_EQ(counts.interrupted, 1u);
}

// Reads are held 3 ms and then answered; stops land before, during and after that. With
// interrupts the device ends the read; without, the caller gives it up and the reply is dropped.
class InterruptRaceTest : public InterruptTest, public ::testing::WithParamInterface<bool> {};
INSTANTIATE_TEST_SUITE_P(Interrupts, InterruptRaceTest, ::testing::Bool(),
                         [](const auto& param_info) { return param_info.param ? "On" : "Off"; });

TEST_P(InterruptRaceTest, WhicheverSideWinsTheCallEndsCorrectly) {
  TestBackend backend({"--hold", "read", "--hold-ms", "3", "--queues", "2"});
  Options o;
  o.interrupts = GetParam();
  auto client = connect_to(backend, o);
  const std::string data = random_bytes(3000, 7);
  File f;
  open_file(*client, f, data);
  std::mt19937 rng(1);
  int interrupted = 0, answered = 0;
  for (int i = 0; i < 150; ++i) {
    std::stop_source stop;
    const auto delay = std::chrono::microseconds(rng() % 6000);
    auto result = std::async(std::launch::async, [&] {
      std::string buf(4096, '\0');
      size_t n = 0;
      auto ec = client->read(f.inode(), f.handle(), 0, std::as_writable_bytes(std::span(buf)), n,
                             stop.get_token());
      if (!ec && (n != data.size() || buf.substr(0, n) != data))
        ec = std::make_error_code(std::errc::bad_message);
      return ec;
    });
    std::this_thread::sleep_for(delay);
    stop.request_stop();
    ASSERT_EQ(result.wait_for(5s), std::future_status::ready) << "round " << i << " hung";
    const auto ec = result.get();
    if (ec == std::errc::interrupted)
      ++interrupted;
    else if (!ec)
      ++answered;
    else
      ADD_FAILURE() << "round " << i << ": " << ec.message();
  }
  EXPECT_GT(interrupted, 0);
  EXPECT_GT(answered, 0);
  EXPECT_FALSE(client->failure());
}

TEST_F(InterruptTest, ACallWaitingForRingSpaceEndsAtOnce) {
  // Two descriptors per queue and held reads: the third read cannot even reach the ring.
  TestBackend backend({"--hold", "read"});
  Options o = interrupting();
  o.queue_size = 2;
  auto client = connect_to(backend, o);
  File f;
  open_file(*client, f, "x");
  std::vector<std::stop_source> stops(3);
  std::vector<std::future<std::error_code>> reads;
  for (int i = 0; i < 3; ++i) {
    reads.push_back(std::async(std::launch::async, [&, i] {
      std::string buf(8, '\0');
      size_t n = 0;
      return client->read(f.inode(), f.handle(), 0, std::as_writable_bytes(std::span(buf)), n,
                          stops[i].get_token());
    }));
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_GT(client->stats().waits, 0u);
  for (auto& s : stops) s.request_stop();
  for (auto& r : reads) {
    ASSERT_EQ(r.wait_for(5s), std::future_status::ready);
    EXPECT_EQ(r.get(), std::errc::interrupted);
  }
}

// Busy-poll mode against the real virtiofsd: the same results as interrupt-driven completions.
class PollModeTest : public VirtiofsdTest {
 protected:
  void SetUp() override {}
  void blocking_and_async_calls_all_complete();
  std::vector<std::string> workload() {
    std::vector<std::string> results;
    for (int i = 0; i < 20; ++i) {
      const std::string name = "p" + std::to_string(i);
      const std::string data = random_bytes(1000 * i + 1, i);
      EXPECT_FALSE(client->write_file(name, bytes(data)));
      std::string back;
      EXPECT_FALSE(client->read_file(name, back));
      results.push_back(back);
      Attr a;
      EXPECT_FALSE(client->stat(name, a));
      results.push_back(std::to_string(a.size));
    }
    std::vector<DirEntry> list;
    EXPECT_FALSE(client->list_dir("/", list));
    results.push_back(std::to_string(list.size()));
    return results;
  }
};

TEST_F(PollModeTest, BusyPollAndEventfdGiveTheSameResults) {
  Options irq;
  irq.poll_us = 0;
  start(irq);
  const auto by_interrupt = workload();
  const auto interrupt_stats = client->stats();
  EXPECT_EQ(interrupt_stats.polled, 0u);
  client.reset();
  backend.reset();
  for (const auto& e : std::filesystem::directory_iterator(share.path())) std::filesystem::remove_all(e.path());

  Options o;
  o.poll_us = 2000;
  start(o);
  const auto by_polling = workload();
  const auto poll_stats = client->stats();
  EXPECT_EQ(by_polling, by_interrupt);
  EXPECT_GT(poll_stats.polled, 0u) << "completions must have been found by polling";
  EXPECT_LT(poll_stats.interrupts, interrupt_stats.interrupts);
}

// Blocking calls from 4 threads beside async calls on the same queue: everything completes with
// the right answer, and afterwards an async call alone still completes (interrupts are on).
void PollModeTest::blocking_and_async_calls_all_complete() {
  ASSERT_FALSE(client->write_file("f", bytes(std::string(777, 'p'))));
  Entry e;
  ASSERT_FALSE(client->lookup(kRootInode, "f", e));
  std::atomic<unsigned> failures{0};
  Countdown async_done(4 * 200);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 200; ++i) {
        Attr a;
        if (client->getattr(e.inode, a) || a.size != 777) ++failures;
        client->getattr(e.inode, [&](std::error_code ec, Attr b) {
          if (!ec && b.size != 777) ec = std::make_error_code(std::errc::io_error);
          async_done.done(ec);
        });
      }
    });
  for (auto& t : threads) t.join();
  ASSERT_TRUE(async_done.wait(std::chrono::seconds(30))) << async_done.left << " async calls never completed";
  for (auto ec : async_done.errors) EXPECT_FALSE(ec) << ec.message();
  EXPECT_EQ(failures.load(), 0u);

  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // every blocking caller is gone
  Countdown last(1);
  client->getattr(e.inode, [&](std::error_code ec, Attr) { last.done(ec); });
  ASSERT_TRUE(last.wait(std::chrono::seconds(5))) << "interrupts were left off";
  client->forget(e.inode, 1);
}

// Threads polling for their own replies (interrupts off while any polls) beside async calls that
// rely on interrupts.
TEST_F(PollModeTest, PollingCallersAndAsyncCallsAllComplete) {
  Options o;
  o.poll_us = 30;  // short: callers often give up and sleep, so both paths run
  start(o);
  blocking_and_async_calls_all_complete();
  EXPECT_GT(client->stats().polled, 0u);
}

// Adaptive polling (the default): callers spin for a learned time, then sleep on the interrupt;
// the completion thread never spins; the same answers and nothing left behind.
TEST_F(PollModeTest, AdaptiveCallersAndAsyncCallsAllComplete) {
  start();
  blocking_and_async_calls_all_complete();
  const auto by_adaptive = workload();
  EXPECT_EQ(by_adaptive.size(), 41u);
}

// Interrupt-driven: one blocking caller at a time sleeps on the queue's interrupt itself, the
// others on their condition variables, the completion thread reaps beside them.
TEST_F(PollModeTest, InterruptWaitingCallersAndAsyncCallsAllComplete) {
  Options o;
  o.poll_us = 0;
  start(o);
  blocking_and_async_calls_all_complete();
  EXPECT_GT(client->stats().callers_woken, 0u);
}

// At depth 1 the device's interrupt wakes the blocking caller itself, with no hand-off from the
// completion thread, and the answers are the device's.
TEST_F(PollModeTest, ABlockingCallIsWokenByTheDeviceItself) {
  Options o;
  o.poll_us = 0;
  start(o);
  write_host("g", std::string(4321, 'g'));
  Entry e;
  ASSERT_FALSE(client->lookup(kRootInode, "g", e));
  constexpr uint64_t kCalls = 200;
  const uint64_t before = client->stats().callers_woken;
  for (uint64_t i = 0; i < kCalls; ++i) {
    Attr a;
    ASSERT_FALSE(client->getattr(e.inode, a));
    ASSERT_EQ(a.size, 4321u);
  }
  const uint64_t woken = client->stats().callers_woken - before;
  // The device's interrupt wakes the caller and the completion thread alike, and either may
  // take the reply; how often the caller wins is up to the scheduler (under TSan it seldom
  // does). Without the caller sleeping on the interrupt itself it never counts.
  EXPECT_GT(woken, 0u) << "no blocking call was ever woken by the device itself";
  EXPECT_LE(woken, kCalls);
  client->forget(e.inode, 1);
}
