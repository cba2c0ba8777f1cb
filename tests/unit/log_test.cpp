// The log sink (virtiofs/log.hpp): the library's messages reach the sink the application set,
// and swapping sinks while other threads log is safe.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "client/connector.hpp"
#include "log/log.hpp"
#include "support/loopback_fs.hpp"
#include "virtiofs/client.hpp"
#include "virtiofs/log.hpp"

using namespace virtiofs;
using namespace virtiofs::test;

namespace {

// Collects what the library says; restores the default sink when the test ends.
struct CollectedLog {
  std::mutex mu;
  std::vector<std::pair<LogLevel, std::string>> lines;
  CollectedLog() {
    set_log_sink([this](LogLevel level, std::string_view message) {
      std::lock_guard lock(mu);
      lines.emplace_back(level, std::string(message));
    });
  }
  ~CollectedLog() { set_log_sink(nullptr); }
  bool has(LogLevel level, const std::string& part) {
    std::lock_guard lock(mu);
    for (auto& [l, text] : lines)
      if (l == level && text.find(part) != std::string::npos) return true;
    return false;
  }
  std::string all() {
    std::lock_guard lock(mu);
    std::string s;
    for (auto& [l, text] : lines) s += std::string(log_level_name(l)) + ": " + text + "\n";
    return s;
  }
};

// A GETATTR the device answers with `fault` fails with EIO, and the sink gets an error
// message holding `text`.
void expect_fault_logged(const std::string& fault, const std::string& text) {
  CollectedLog log;
  LoopbackFsOptions d;
  d.faults = {fault};
  LoopbackFs loop(d);
  Options o;
  o.queue_size = 8;
  auto client = client::Connector::over(loop.transport(), o);
  Attr a;
  EXPECT_EQ(client->getattr(kRootInode, a), std::errc::io_error);
  EXPECT_TRUE(log.has(LogLevel::kError, text)) << log.all();
  client.reset();
}

TEST(LogSink, TheDevicesProtocolBreachReachesTheSink) {
  expect_fault_logged("used-id-not-in-flight@getattr",
                      "the device broke the protocol on queue 1: used id");
}

TEST(LogSink, AMalformedReplyIsDescribed) {
  expect_fault_logged("header-len-mismatch@getattr", "malformed reply to request");
}

TEST(LogSink, LongMessagesArriveWholeWithoutTheirNewline) {
  CollectedLog log;
  const std::string big(3000, 'x');
  log::warn("start %s end\n", big.c_str());
  EXPECT_TRUE(log.has(LogLevel::kWarning, "start " + big + " end")) << log.all().size();
  std::lock_guard lock(log.mu);
  ASSERT_FALSE(log.lines.empty());
  EXPECT_EQ(log.lines.back().second.back(), 'd');
}

// Threads log while the sink is swapped under them: each message reaches exactly one sink, and
// a replaced sink is never called once set_log_sink has returned.
TEST(LogSink, SwappingWhileOtherThreadsLogIsSafe) {
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> delivered{0}, late_calls{0};
  std::vector<std::thread> loggers;
  std::atomic<uint64_t> sent{0};
  set_log_sink([&delivered](LogLevel, std::string_view m) {
    if (m == "message 1") delivered.fetch_add(1);
  });
  for (int t = 0; t < 3; ++t)
    loggers.emplace_back([&] {
      while (!stop.load()) {
        log::info("message %d", 1);
        sent.fetch_add(1);
      }
    });
  // Enough rounds that the loggers are well under way while sinks change (bounded in time).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  for (int round = 0; (round < 200 || sent.load() < 20000) && std::chrono::steady_clock::now() < deadline;
       ++round) {
    auto retired = std::make_shared<std::atomic<bool>>(false);
    set_log_sink([retired, &delivered, &late_calls](LogLevel, std::string_view m) {
      if (retired->load()) late_calls.fetch_add(1);
      if (m == "message 1") delivered.fetch_add(1);
    });
    std::this_thread::yield();
    set_log_sink([&delivered](LogLevel, std::string_view m) {
      if (m == "message 1") delivered.fetch_add(1);
    });
    retired->store(true);  // the first sink is replaced: nothing may call it any more
  }
  stop = true;
  for (auto& t : loggers) t.join();
  set_log_sink(nullptr);
  EXPECT_EQ(late_calls.load(), 0u);
  EXPECT_EQ(delivered.load(), sent.load()) << "every message went to exactly one sink";
  EXPECT_GE(sent.load(), 20000u) << "the loggers hardly ran";
}

}  // namespace
