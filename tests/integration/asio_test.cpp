// virtiofs/asio.hpp against the real virtiofsd (and the test backend where a request must be
// held): coroutines with many operations in flight checked against the host directory,
// completion on a strand, every kind of completion token, and cancellation that ends with
// operation_aborted and leaves the session healthy.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <cstring>
#include <filesystem>
#include <set>
#include <thread>

#include "integration/fixture.hpp"
#include "support/test_backend_process.hpp"
#include "virtiofs/asio.hpp"

namespace virtiofs::test {
namespace {

namespace net = boost::asio;
using asio::Connection;
using asio::error_code;
using net::awaitable;
using net::use_awaitable;
using namespace std::chrono_literals;

// Runs `coroutine` on io to its end (bounded); rethrows what it threw.
void run_coroutine(net::io_context& io, awaitable<void> coroutine,
                   std::chrono::seconds limit = 120s) {
  std::exception_ptr failure;
  bool finished = false;
  net::co_spawn(io, std::move(coroutine), [&](std::exception_ptr e) {
    failure = e;
    finished = true;
  });
  io.run_for(limit);
  io.restart();
  ASSERT_TRUE(finished) << "the coroutine did not finish within " << limit.count() << " s";
  if (failure) std::rethrow_exception(failure);
}

// Runs io until `done` or the limit; true if done.
bool run_until(net::io_context& io, const bool& done, std::chrono::milliseconds limit = 5000ms) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!done && std::chrono::steady_clock::now() < end) {
    io.run_for(10ms);
    io.restart();
  }
  return done;
}

class AsioTest : public VirtiofsdTest {
 protected:
  net::io_context io;
};

// Reads all of an open file through the Connection, one max_read piece at a time.
awaitable<std::string> read_all(Connection& fs, Inode inode, uint64_t fh, uint32_t max_read) {
  std::string data;
  for (;;) {
    std::string piece(max_read, '\0');
    const size_t n = co_await fs.async_read(inode, fh, data.size(), net::buffer(piece), use_awaitable);
    data.append(piece, 0, n);
    if (n < piece.size()) co_return data;
  }
}

TEST_F(AsioTest, ACoroutineWalksAThousandFilesWith32OperationsInFlight) {
  constexpr int kFiles = 1000, kInFlight = 32;
  std::filesystem::create_directory(host("tree"));
  for (int i = 0; i < kFiles; ++i)
    write_host("tree/f" + std::to_string(i), random_bytes(static_cast<size_t>(i * 37 % 20000), i));
  Connection fs(io, *client);
  const uint32_t max_read = client->negotiated().max_read;
  size_t files = 0, bytes = 0, in_flight = 0, most_in_flight = 0;
  std::vector<std::string> wrong;

  run_coroutine(io, [&]() -> awaitable<void> {
    // The walk: every entry of the directory, with a lookup reference each (READDIRPLUS).
    const Entry dir = co_await fs.async_lookup(kRootInode, "tree", use_awaitable);
    const OpenFile d = co_await fs.async_opendir(dir.inode, use_awaitable);
    std::vector<std::pair<DirEntry, Entry>> entries;
    for (uint64_t offset = 0;;) {
      auto batch = co_await fs.async_readdirplus(dir.inode, d.fh, offset, use_awaitable);
      if (batch.empty()) break;
      offset = batch.back().first.offset;
      for (auto& e : batch) {
        if (e.first.name != "." && e.first.name != "..")
          entries.push_back(std::move(e));
        else if (e.second.inode != 0)
          client->forget(e.second.inode, 1);
      }
    }
    co_await fs.async_releasedir(dir.inode, d.fh, use_awaitable);

    // 32 readers take the files one by one: open, read all, release, each byte checked.
    size_t next = 0;
    auto reader = [&]() -> awaitable<void> {
      while (next < entries.size()) {
        const auto& [dirent, entry] = entries[next++];
        most_in_flight = std::max(most_in_flight, ++in_flight);  // readers, one call each
        const OpenFile f = co_await fs.async_open(entry.inode, O_RDONLY, use_awaitable);
        const std::string data = co_await read_all(fs, entry.inode, f.fh, max_read);
        co_await fs.async_release(entry.inode, f.fh, 0, use_awaitable);
        --in_flight;
        if (data != read_host("tree/" + dirent.name)) wrong.push_back(dirent.name);
        client->forget(entry.inode, 1);
        ++files;
        bytes += data.size();
      }
    };
    using namespace net::experimental::awaitable_operators;
    awaitable<void> all = reader();
    for (int i = 1; i < kInFlight; ++i) all = std::move(all) && reader();
    co_await std::move(all);
    client->forget(dir.inode, 1);
  }());
  EXPECT_EQ(files, static_cast<size_t>(kFiles));
  EXPECT_TRUE(wrong.empty()) << wrong.size() << " files read back wrong, first " << wrong.front();
  EXPECT_EQ(most_in_flight, static_cast<size_t>(kInFlight));
  EXPECT_GT(bytes, 0u);
  EXPECT_FALSE(client->failure());
}


// A thread running io.run() (a library thread is none of them).
thread_local bool runs_io = false;
std::vector<std::thread> run_threads(net::io_context& io, int n) {
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i)
    threads.emplace_back([&io] {
      runs_io = true;
      io.run();
    });
  return threads;
}

// An IoBuffer's span is a buffer for the device to take, as an Asio buffer is.
static_assert(std::is_constructible_v<virtiofs::asio::ConstBytes, std::span<std::byte>>);
static_assert(std::is_constructible_v<virtiofs::asio::MutableBytes, std::span<std::byte>>);

// A completion queued on an io_context that is destroyed without running it frees the handler
// (and with it a coroutine frame, say) instead of leaking it.
TEST_F(AsioTest, ACompletionDroppedWithItsIoContextFreesTheHandler) {
  std::weak_ptr<int> alive;
  {
    net::io_context local;
    Connection fs(local, *client);
    auto sentinel = std::make_shared<int>(1);
    alive = sentinel;
    fs.async_getattr(kRootInode, [sentinel](error_code, Attr) {});
    sentinel.reset();
    // The library answers and queues the completion on `local`, which never runs. A blocking
    // call after it is answered after it (one queue, in order); then a margin for the callback
    // that posts. (Destroying `local` before that post would be the misuse the header forbids.)
    Attr attr;
    ASSERT_FALSE(client->getattr(kRootInode, attr));
    std::this_thread::sleep_for(200ms);
    EXPECT_FALSE(alive.expired()) << "the handler ran or was dropped before its io_context went";
  }
  EXPECT_TRUE(alive.expired()) << "the queued completion leaked its handler";
  EXPECT_FALSE(client->failure());
}

TEST_F(AsioTest, HandlersBoundToAStrandRunOneAtATimeOnTheIoThreads) {
  constexpr int kCalls = 2000;
  write_host("f", "0123456789");
  Entry e;
  ASSERT_FALSE(client->lookup(kRootInode, "f", e));
  Connection fs(io, *client);
  auto strand = net::make_strand(io);
  std::atomic<int> inside{0}, overlapped{0}, off_strand{0}, off_io{0}, wrong{0}, done{0};
  {
    auto work = net::make_work_guard(io);
    auto threads = run_threads(io, 4);
    for (int i = 0; i < kCalls; ++i)
      fs.async_getattr(e.inode, net::bind_executor(strand, [&, i](error_code ec, Attr a) {
        overlapped += inside++ != 0;
        off_strand += !strand.running_in_this_thread();
        off_io += !runs_io;
        wrong += ec || a.size != 10;
        if (i % 64 == 0) std::this_thread::sleep_for(100us);  // widen any overlap
        --inside;
        ++done;
      }));
    work.reset();  // io.run returns once the operations are done: they hold work themselves
    for (auto& t : threads) t.join();
  }
  EXPECT_EQ(done, kCalls) << "io.run() returned with operations pending";
  EXPECT_EQ(overlapped, 0);
  EXPECT_EQ(off_strand, 0);
  EXPECT_EQ(off_io, 0);
  EXPECT_EQ(wrong, 0);
  client->forget(e.inode, 1);
}

TEST_F(AsioTest, EveryKindOfCompletionToken) {
  write_host("f", "contents");
  Entry e;
  ASSERT_FALSE(client->lookup(kRootInode, "f", e));
  Connection fs(io, *client);

  // A plain callback: on the Connection's executor (here, inside io.run on this thread), never
  // inside the initiating call.
  bool called = false, inside_initiation = true;
  fs.async_getattr(e.inode, [&](error_code ec, Attr a) {
    EXPECT_FALSE(ec);
    EXPECT_EQ(a.size, 8u);
    EXPECT_FALSE(inside_initiation);
    EXPECT_TRUE(runs_io);
    called = true;
  });
  inside_initiation = false;
  {
    runs_io = true;
    io.run_for(10s);
    runs_io = false;
    io.restart();
  }
  EXPECT_TRUE(called);

  // A callback for a call that fails at once (bad name) also comes later, from io.run.
  error_code bad;
  called = false;
  fs.async_lookup(kRootInode, "a/b", [&](error_code ec, Entry) { bad = ec, called = true; });
  EXPECT_FALSE(called);
  io.run_for(10s);
  io.restart();
  EXPECT_TRUE(called);
  EXPECT_EQ(bad, boost::system::errc::invalid_argument);
  // The library's own errno comes in the same category as the device's, with its value.
  EXPECT_EQ(bad.value(), EINVAL);
  EXPECT_EQ(bad.category(), boost::system::system_category());

  // The same from a handler on the io_context: not inside the initiating call either.
  called = false;
  bool returned = false, called_before_return = false;
  net::post(io, [&] {
    fs.async_lookup(kRootInode, "a/b", [&](error_code, Entry) {
      called_before_return = !returned;
      called = true;
    });
    returned = true;
  });
  io.run_for(10s);
  io.restart();
  EXPECT_TRUE(called);
  EXPECT_FALSE(called_before_return) << "the handler ran inside async_lookup";

  // use_future: no io.run needed (the future's own executor).
  auto attr = fs.async_getattr(e.inode, net::use_future);
  ASSERT_EQ(attr.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(attr.get().size, 8u);
  auto missing = fs.async_lookup(kRootInode, "missing", net::use_future);
  try {
    missing.get();
    ADD_FAILURE() << "a lookup of a missing name must fail";
  } catch (const boost::system::system_error& x) {
    EXPECT_EQ(x.code(), boost::system::errc::no_such_file_or_directory);
    EXPECT_EQ(std::error_code(x.code()), std::errc::no_such_file_or_directory);
  }

  // deferred: nothing is sent until the operation is launched.
  const uint64_t sent = client->stats().requests;
  auto later = fs.async_getattr(e.inode, net::deferred);
  EXPECT_EQ(client->stats().requests, sent);
  uint64_t size = 0;
  std::move(later)([&](error_code ec, Attr a) { size = ec ? 0 : a.size; });
  io.run_for(10s);
  io.restart();
  EXPECT_EQ(size, 8u);
  EXPECT_EQ(client->stats().requests, sent + 1);

  // Inside a coroutine: deferred, as_tuple, and use_awaitable as the default token.
  run_coroutine(io, [&]() -> awaitable<void> {
    EXPECT_EQ((co_await fs.async_getattr(e.inode, net::deferred)).size, 8u);
    auto awaiting = net::use_awaitable_t<>::as_default_on(fs);
    EXPECT_EQ((co_await awaiting.async_getattr(e.inode)).size, 8u);
    auto [ec, entry] = co_await fs.async_lookup(kRootInode, "missing", net::as_tuple(use_awaitable));
    EXPECT_EQ(ec, boost::system::errc::no_such_file_or_directory);
    EXPECT_EQ(ec.category(), boost::system::system_category());
  }());
  client->forget(e.inode, 1);
}

// Every operation once, through use_awaitable, each result checked (on the host where it shows).
TEST_F(AsioTest, EveryOperationHasAnAsyncForm) {
  Connection fs(io, *client);
  run_coroutine(io, [&]() -> awaitable<void> {
    const Entry dir = co_await fs.async_mkdir(kRootInode, "d", 0755, use_awaitable);
    EXPECT_TRUE(std::filesystem::is_directory(host("d")));
    const Created c = co_await fs.async_create(dir.inode, "f", O_RDWR, 0644, use_awaitable);
    const std::string text = "hello, asio";
    EXPECT_EQ(co_await fs.async_write(c.entry.inode, c.file.fh, 0, net::buffer(text), use_awaitable),
              text.size());
    co_await fs.async_flush(c.entry.inode, c.file.fh, 0, use_awaitable);
    co_await fs.async_fsync(c.entry.inode, c.file.fh, false, use_awaitable);
    EXPECT_EQ(read_host("d/f"), text);
    std::string back(64, '\0');
    back.resize(co_await fs.async_read(c.entry.inode, c.file.fh, 0, net::buffer(back), use_awaitable));
    EXPECT_EQ(back, text);
    co_await fs.async_fallocate(c.entry.inode, c.file.fh, 0, 4096, 0, use_awaitable);
    EXPECT_EQ(std::filesystem::file_size(host("d/f")), 4096u);
    EXPECT_EQ(co_await fs.async_lseek(c.entry.inode, c.file.fh, 0, SEEK_END, use_awaitable), 4096u);
    const Created copy = co_await fs.async_create(dir.inode, "g", O_RDWR, 0644, use_awaitable);
    EXPECT_EQ(co_await fs.async_copy_file_range(c.entry.inode, c.file.fh, 0, copy.entry.inode,
                                                copy.file.fh, 0, text.size(), use_awaitable),
              text.size());
    EXPECT_EQ(read_host("d/g"), text);
    // Record locks depend on virtiofsd's options (-o posix_lock, off by default), and it takes
    // them as OFD locks (pid 0): success or ENOSYS, the round trip is what is checked here.
    const Lock lock{.start = 0, .end = 9, .type = F_WRLCK, .pid = 0};
    auto [set_ec] = co_await fs.async_setlk(c.entry.inode, c.file.fh, 7, lock, false,
                                            net::as_tuple(use_awaitable));
    EXPECT_TRUE(!set_ec || set_ec == std::errc::function_not_supported) << set_ec.message();
    auto [get_ec, seen] = co_await fs.async_getlk(c.entry.inode, c.file.fh, 7, lock,
                                                  net::as_tuple(use_awaitable));
    EXPECT_TRUE(!get_ec || get_ec == std::errc::function_not_supported) << get_ec.message();
    co_await fs.async_release(copy.entry.inode, copy.file.fh, 0, use_awaitable);
    co_await fs.async_release(c.entry.inode, c.file.fh, 0, use_awaitable);

    SetAttr mode;
    mode.valid = set::kMode;
    mode.mode = 0600;
    EXPECT_EQ((co_await fs.async_setattr(c.entry.inode, mode, use_awaitable)).mode & 0777, 0600u);
    EXPECT_EQ((co_await fs.async_getattr(c.entry.inode, use_awaitable)).mode & 0777, 0600u);
    // virtiofsd leaves permission checks to the kernel (default_permissions): ACCESS is ENOSYS.
    auto [access_ec] = co_await fs.async_access(c.entry.inode, R_OK, net::as_tuple(use_awaitable));
    EXPECT_TRUE(!access_ec || access_ec == std::errc::function_not_supported) << access_ec.message();
    const OpenFile o = co_await fs.async_open(c.entry.inode, O_RDONLY, use_awaitable);
    co_await fs.async_release(c.entry.inode, o.fh, 0, use_awaitable);
    EXPECT_GT((co_await fs.async_statfs(kRootInode, use_awaitable)).bsize, 0u);

    const std::string value = "v1";
    co_await fs.async_setxattr(c.entry.inode, "user.k", net::buffer(value), 0, use_awaitable);
    char on_host[8] = {};
    EXPECT_EQ(getxattr(host("d/f").c_str(), "user.k", on_host, sizeof(on_host)), 2);
    std::string got(8, '\0');
    got.resize(co_await fs.async_getxattr(c.entry.inode, "user.k", net::buffer(got), use_awaitable));
    EXPECT_EQ(got, value);
    std::string list(64, '\0');
    list.resize(co_await fs.async_listxattr(c.entry.inode, net::buffer(list), use_awaitable));
    EXPECT_NE(list.find("user.k"), std::string::npos);
    co_await fs.async_removexattr(c.entry.inode, "user.k", use_awaitable);

    const Entry link = co_await fs.async_symlink(dir.inode, "s", "f", use_awaitable);
    EXPECT_EQ(co_await fs.async_readlink(link.inode, use_awaitable), "f");
    const Entry hard = co_await fs.async_link(c.entry.inode, dir.inode, "h", use_awaitable);
    EXPECT_EQ(hard.attr.nlink, 2u);
    const Entry fifo = co_await fs.async_mknod(dir.inode, "p", S_IFIFO | 0644, 0, use_awaitable);
    EXPECT_TRUE(std::filesystem::is_fifo(host("d/p")));
    co_await fs.async_rename(dir.inode, "h", dir.inode, "h2", 0, use_awaitable);
    EXPECT_TRUE(std::filesystem::exists(host("d/h2")));
    const Entry found = co_await fs.async_lookup(dir.inode, "h2", use_awaitable);
    EXPECT_EQ(found.inode, c.entry.inode);

    const OpenFile d = co_await fs.async_opendir(dir.inode, use_awaitable);
    std::set<std::string> names;
    for (auto& entry : co_await fs.async_readdir(dir.inode, d.fh, 0, use_awaitable)) names.insert(entry.name);
    EXPECT_EQ(names, (std::set<std::string>{".", "..", "f", "g", "s", "h2", "p"}));
    auto plus = co_await fs.async_readdirplus(dir.inode, d.fh, 0, use_awaitable);
    EXPECT_EQ(plus.size(), names.size());
    for (auto& [dirent, entry] : plus)
      if (entry.inode != 0) client->forget(entry.inode, 1);
    co_await fs.async_fsyncdir(dir.inode, d.fh, false, use_awaitable);
    co_await fs.async_releasedir(dir.inode, d.fh, use_awaitable);

    for (const char* name : {"f", "g", "s", "h2", "p"}) co_await fs.async_unlink(dir.inode, name, use_awaitable);
    co_await fs.async_rmdir(kRootInode, "d", use_awaitable);
    EXPECT_FALSE(std::filesystem::exists(host("d")));
    for (Inode i : {c.entry.inode, copy.entry.inode, link.inode, hard.inode, fifo.inode, found.inode, dir.inode})
      client->forget(i, 1);
  }());
  EXPECT_FALSE(client->failure());
}


// The application reaps (Options::app_reaps_completions) with a CompletionReaper on the
// io_context: every handler runs on the one thread running it, straight from the reaping, and
// once the reaper stops nothing keeps io.run() going.
TEST_F(AsioTest, ACompletionReaperRunsEverythingOnTheIoThread) {
  client.reset();
  backend.reset();
  Options o;
  o.app_reaps_completions = true;
  start(o);
  constexpr int kFiles = 200, kInFlight = 32;
  for (int i = 0; i < kFiles; ++i) write_host("f" + std::to_string(i), random_bytes(100 + i, i));
  Connection fs(io, *client);
  asio::CompletionReaper reaper(io, *client);
  const auto io_thread = std::this_thread::get_id();
  bool called = false;
  std::thread::id where;
  client->getattr(kRootInode, [&](std::error_code, Attr) {
    where = std::this_thread::get_id();
    called = true;
  });
  ASSERT_TRUE(run_until(io, called)) << "the reaper did not process the completion";
  EXPECT_EQ(where, io_thread) << "the library's callback must run in the reaping";
  int next = 0, right = 0, elsewhere = 0;
  run_coroutine(io, [&]() -> awaitable<void> {
    auto reader = [&]() -> awaitable<void> {
      while (next < kFiles) {
        const std::string name = "f" + std::to_string(next++);
        const Entry e = co_await fs.async_lookup(kRootInode, name, use_awaitable);
        elsewhere += std::this_thread::get_id() != io_thread;
        const OpenFile f = co_await fs.async_open(e.inode, O_RDONLY, use_awaitable);
        std::string data(4096, '\0');
        data.resize(co_await fs.async_read(e.inode, f.fh, 0, net::buffer(data), use_awaitable));
        elsewhere += std::this_thread::get_id() != io_thread;
        co_await fs.async_release(e.inode, f.fh, 0, use_awaitable);
        right += data == read_host(name);
        client->forget(e.inode, 1);
      }
    };
    using namespace net::experimental::awaitable_operators;
    awaitable<void> all = reader();
    for (int i = 1; i < kInFlight; ++i) all = std::move(all) && reader();
    co_await std::move(all);
    reaper.stop();
  }(), 60s);
  EXPECT_EQ(right, kFiles);
  EXPECT_EQ(elsewhere, 0);
  const auto before = std::chrono::steady_clock::now();
  EXPECT_EQ(io.run_for(1s), 0u) << "a stopped reaper left work behind";
  EXPECT_LT(std::chrono::steady_clock::now() - before, 500ms) << "a stopped reaper left a wait";
  EXPECT_FALSE(client->failure());
}

// A READ the test backend holds (1.5 s, or until interrupted), with FUSE_INTERRUPT (On) or
// without (Off: the library gives the call up at once).
class AsioCancelTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    Options o;
    o.socket_path = backend.socket_path();
    o.interrupts = GetParam();
    client = Client::connect(o);
    ASSERT_FALSE(client->write_file("data", bytes(std::string("payload"))));
    ASSERT_FALSE(client->open_file("data", O_RDONLY, file));
  }
  // The session is healthy: nothing failed and a round trip works.
  void expect_healthy(Connection& fs) {
    EXPECT_FALSE(client->failure());
    auto attr = fs.async_getattr(file.inode(), net::use_future);
    ASSERT_EQ(attr.wait_for(5s), std::future_status::ready);
    EXPECT_EQ(attr.get().size, 7u);
  }
  void expect_cancelled_on_device() {
    if (GetParam())
      EXPECT_EQ(client->stats().interrupts_sent, 1u);
    else
      EXPECT_EQ(client->stats().abandoned, 1u);
  }
  TestBackend backend{{"--hold", "read", "--hold-ms", "1500"}};  // then answered: a quick close
  // Before the client: a failed test's pending call still finds them while the client closes.
  net::io_context io;
  std::string buf = std::string(16, '\0');
  std::unique_ptr<Client> client;
  File file;
};
INSTANTIATE_TEST_SUITE_P(Interrupts, AsioCancelTest, ::testing::Bool(),
                         [](const auto& param_info) { return param_info.param ? "On" : "Off"; });

TEST_P(AsioCancelTest, AHeldReadCancelledThroughItsSlotEndsWithOperationAborted) {
  Connection fs(io, *client);
  net::cancellation_signal signal;
  bool done = false;
  error_code result;
  fs.async_read(file.inode(), file.handle(), 0, net::buffer(buf),
                net::bind_cancellation_slot(signal.slot(), [&](error_code ec, size_t) {
                  result = ec;
                  done = true;
                }));
  EXPECT_FALSE(run_until(io, done, 200ms)) << "the read must be held";
  // Only terminal cancellation is offered: a request for total cancellation alone is ignored.
  signal.emit(net::cancellation_type::total);
  EXPECT_FALSE(run_until(io, done, 100ms)) << "total cancellation must be ignored";
  signal.emit(net::cancellation_type::terminal);
  ASSERT_TRUE(run_until(io, done)) << "the cancelled read never completed";
  EXPECT_EQ(result, net::error::operation_aborted) << result.message();
  expect_cancelled_on_device();
  expect_healthy(fs);
}

TEST_P(AsioCancelTest, AnAwaitableOperatorCancelsTheLoser) {
  Connection fs(io, *client);
  size_t winner = 99;
  run_coroutine(io, [&]() -> awaitable<void> {
    using namespace net::experimental::awaitable_operators;
    net::steady_timer timer(io, 100ms);
    auto result = co_await (fs.async_read(file.inode(), file.handle(), 0, net::buffer(buf), use_awaitable) ||
                            timer.async_wait(use_awaitable));
    winner = result.index();
  }(), 10s);
  EXPECT_EQ(winner, 1u) << "the timer must win over the held read";
  expect_cancelled_on_device();
  expect_healthy(fs);
}

// Against virtiofsd (no FUSE_INTERRUPT: 7.2 crashes on one): reads cancelled right after they
// were sent end aborted or with the right bytes, their late replies are dropped, and the
// session goes on.
TEST_F(AsioTest, ReadsCancelledInFlightEndCleanlyAndTheSessionGoesOn) {
  constexpr int kReads = 64;
  const std::string data = random_bytes(4096, 5);
  write_host("f", data);
  File f;
  ASSERT_FALSE(client->open_file("f", O_RDONLY, f));
  Connection fs(io, *client);
  int aborted = 0, right = 0, wrong = 0;
  // Rounds until some cancellation came before the reply (virtiofsd is quick).
  for (int round = 0; round < 20 && aborted == 0; ++round) {
    std::vector<net::cancellation_signal> signals(kReads);
    std::vector<std::string> bufs(kReads, std::string(4096, '\0'));
    for (int i = 0; i < kReads; ++i) {
      fs.async_read(f.inode(), f.handle(), 0, net::buffer(bufs[i]),
                    net::bind_cancellation_slot(signals[i].slot(), [&, i](error_code ec, size_t n) {
                      if (ec == net::error::operation_aborted)
                        i % 2 ? ++aborted : ++wrong;
                      else if (!ec && n == data.size() && bufs[i] == data)
                        ++right;
                      else
                        ++wrong;
                    }));
      if (i % 2) signals[i].emit(net::cancellation_type::terminal);
    }
    io.run_for(10s);  // until every handler ran
    io.restart();
    ASSERT_EQ(aborted + right + wrong, (round + 1) * kReads) << "a read never completed";
  }
  EXPECT_EQ(wrong, 0);
  EXPECT_GT(aborted, 0);
  // Each read given up on while the device held it was aborted (one still waiting for ring
  // space ends aborted with nothing to give up).
  EXPECT_LE(client->stats().abandoned, static_cast<uint64_t>(aborted));
  std::string back;
  EXPECT_FALSE(client->read_file("f", back));
  EXPECT_EQ(back, data);
  EXPECT_FALSE(client->failure());
}

// A coroutine cancelled before it awaits an operation: Asio throws operation_aborted at the
// co_await, and nothing reaches the device.
TEST_F(AsioTest, ACancelledCoroutineSendsNothing) {
  Connection fs(io, *client);
  net::cancellation_signal signal;
  net::steady_timer stopper(io, 20ms);
  stopper.async_wait([&](error_code) { signal.emit(net::cancellation_type::terminal); });
  uint64_t sent = 0;
  bool aborted = false, finished = false;
  net::co_spawn(io, [&]() -> awaitable<void> {
    net::steady_timer timer(io, 10s);
    auto [timer_ec] = co_await timer.async_wait(net::as_tuple(use_awaitable));
    EXPECT_EQ(timer_ec, net::error::operation_aborted);
    sent = client->stats().requests;
    try {
      co_await fs.async_getattr(kRootInode, use_awaitable);
    } catch (const boost::system::system_error& e) {
      aborted = e.code() == net::error::operation_aborted;
    }
  }, net::bind_cancellation_slot(signal.slot(), [&](std::exception_ptr) { finished = true; }));
  ASSERT_TRUE(run_until(io, finished));
  EXPECT_TRUE(aborted);
  EXPECT_EQ(client->stats().requests, sent);
  Attr a;
  EXPECT_FALSE(client->getattr(kRootInode, a));
  EXPECT_FALSE(client->failure());
}

}  // namespace
}  // namespace virtiofs::test
