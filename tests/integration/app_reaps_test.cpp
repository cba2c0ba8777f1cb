// The application reaps (Options::app_reaps_completions) against the real virtiofsd: an event
// loop polls the completion fds and processes them; every async callback runs on that loop's
// thread with the right result, while blocking calls from another thread end on their own.
#include <fcntl.h>
#include <poll.h>

#include <atomic>
#include <thread>

#include "integration/fixture.hpp"

namespace virtiofs::test {
namespace {

class AppReapsTest : public VirtiofsdTest {
 protected:
  void SetUp() override {
    Options o;
    o.app_reaps_completions = true;
    start(o);
  }
  // One pollfd per distinct fd (queues sharing an interrupt share it).
  std::vector<pollfd> completion_fds() {
    std::vector<pollfd> fds;
    for (unsigned q = 0; q < client->num_request_queues(); ++q) {
      const int fd = client->completion_fd(q);
      if (std::none_of(fds.begin(), fds.end(), [fd](const pollfd& p) { return p.fd == fd; }))
        fds.push_back({fd, POLLIN, 0});
    }
    return fds;
  }
};

TEST_F(AppReapsTest, AThousandAsyncCallsCompleteThroughTheApplicationsPollLoop) {
  constexpr int kFiles = 10, kCalls = 1000;
  constexpr size_t kBytes = 4096;
  std::vector<std::string> contents;
  std::vector<Entry> entries(kFiles);
  std::vector<OpenFile> files(kFiles);
  for (int i = 0; i < kFiles; ++i) {
    contents.push_back(random_bytes(kBytes, static_cast<unsigned>(i)));
    write_host("f" + std::to_string(i), contents.back());
    // Blocking calls need no loop: they reap for themselves.
    ASSERT_FALSE(client->lookup(kRootInode, "f" + std::to_string(i), entries[i]));
    ASSERT_FALSE(client->open(entries[i].inode, O_RDONLY, files[i]));
  }

  // Meanwhile another thread makes blocking calls that share the queue with the loop.
  std::atomic<bool> stop{false};
  std::atomic<int> sync_calls{0}, sync_errors{0};
  std::thread blocking([&] {
    do {
      Attr a;
      if (client->getattr(entries[0].inode, a) || a.size != kBytes) ++sync_errors;
      ++sync_calls;
    } while (!stop);
  });

  const auto loop_thread = std::this_thread::get_id();
  std::vector<std::string> buffers(kCalls / 2, std::string(kBytes, '\0'));
  int done = 0, wrong = 0, elsewhere = 0;
  for (int i = 0; i < kCalls; ++i) {
    const int f = i % kFiles;
    auto check_thread = [&] { elsewhere += std::this_thread::get_id() != loop_thread; };
    if (i % 2 == 0) {
      client->getattr(entries[f].inode, [&, check_thread](std::error_code ec, Attr a) {
        check_thread();
        wrong += ec || a.size != kBytes;
        ++done;
      });
    } else {
      std::string& buf = buffers[static_cast<size_t>(i / 2)];
      client->read(entries[f].inode, files[f].fh, 0, std::as_writable_bytes(std::span(buf)),
                   [&, check_thread, f](std::error_code ec, size_t n) {
                     check_thread();
                     wrong += ec || n != kBytes || buf != contents[static_cast<size_t>(f)];
                     ++done;
                   });
    }
  }
  std::vector<pollfd> fds = completion_fds();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  size_t processed = 0;
  while (done < kCalls && std::chrono::steady_clock::now() < deadline) {
    if (poll(fds.data(), fds.size(), 100) > 0) processed += client->process_completions();
  }
  stop = true;
  blocking.join();
  EXPECT_EQ(done, kCalls) << "completions never came through the loop";
  // The loop may also have taken replies of the other thread's blocking calls (and woken it).
  EXPECT_GE(processed, static_cast<size_t>(kCalls));
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(elsewhere, 0) << "callbacks ran off the loop's thread";
  EXPECT_GT(sync_calls.load(), 0);
  EXPECT_EQ(sync_errors.load(), 0);
  for (int i = 0; i < kFiles; ++i) {
    EXPECT_FALSE(client->release(entries[i].inode, files[i].fh));
    client->forget(entries[i].inode, 1);
  }
}

}  // namespace
}  // namespace virtiofs::test
