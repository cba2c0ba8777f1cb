// Backpressure, FORGET delivery, device loss and bad input, against the real virtiofsd.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>

#include "integration/fixture.hpp"

using namespace virtiofs;
using namespace virtiofs::test;
using namespace std::chrono_literals;

namespace {

}  // namespace

class SmallRingTest : public VirtiofsdTest {
 protected:
  void SetUp() override {
    Options o;
    o.queue_size = 8;
    start(o);
  }
};

TEST_F(SmallRingTest, ThousandRequestsOnAnEightDescriptorRingAllComplete) {
  write_host("target", "abc");
  expect_all_getattrs_complete(*client, "target", 3, 1000);
}

TEST_F(SmallRingTest, ConcurrentWritersOnAFullRing) {
  // Several threads, each writing its own file in 64 KiB pieces: large requests compete for
  // ring descriptors and buffer chunks.
  constexpr int kThreads = 4;
  std::vector<std::string> data(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    data[t] = random_bytes(2 << 20, 100 + t);
    threads.emplace_back([&, t] {
      File f;
      ASSERT_FALSE(client->open_file("w" + std::to_string(t), O_RDWR | O_CREAT, f));
      for (size_t off = 0; off < data[t].size(); off += 65536) {
        size_t n;
        ASSERT_FALSE(f.pwrite(off, bytes(data[t]).subspan(off, 65536), n));
      }
      ASSERT_FALSE(f.close());
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(read_host("w" + std::to_string(t)), data[t]);
}

// An indirect table may be longer than the ring: virtiofsd takes a 1 MiB READ and WRITE (18
// segments) on a ring of 8, at the size INIT negotiated.
TEST_F(SmallRingTest, OneMebibyteWriteAndReadOnAnEightDescriptorRing) {
  ASSERT_EQ(client->negotiated().max_write, 1u << 20);
  const std::string data = random_bytes(1 << 20, 7);
  File f;
  ASSERT_FALSE(client->open_file("big", O_RDWR | O_CREAT, f));
  size_t n = 0;
  ASSERT_FALSE(f.pwrite(0, bytes(data), n));
  EXPECT_EQ(n, data.size());
  EXPECT_EQ(read_host("big"), data);
  std::string back(data.size(), '\0');
  ASSERT_FALSE(f.pread(0, std::as_writable_bytes(std::span(back)), n));
  EXPECT_EQ(n, data.size());
  EXPECT_EQ(back, data);
  EXPECT_FALSE(f.close());
}

using ForgetTest = VirtiofsdTest;

TEST_F(ForgetTest, ForgetsReachTheDevice) {
  // virtiofsd holds an O_PATH fd for every node the driver references and closes it when the
  // FORGETs bring the count to zero: its fd table shows whether our FORGETs arrived.
  constexpr int kFiles = 300;
  for (int i = 0; i < kFiles; ++i) write_host("n" + std::to_string(i), "");
  const int before = backend->open_fds();
  ASSERT_GT(before, 0);
  std::vector<Entry> entries(kFiles);
  for (int i = 0; i < kFiles; ++i) {
    ASSERT_FALSE(client->lookup(kRootInode, "n" + std::to_string(i), entries[i]));
    // Twice: the count goes to 2 and must come back down by 2.
    ASSERT_FALSE(client->lookup(kRootInode, "n" + std::to_string(i), entries[i]));
  }
  EXPECT_GE(backend->open_fds(), before + kFiles);
  for (auto& e : entries) client->forget(e.inode, 2);
  EXPECT_LE(wait_for_fds_at_most(*backend, before), before) << "the backend still holds nodes we forgot";
  EXPECT_GE(client->stats().forgets, static_cast<uint64_t>(kFiles));
}

TEST_F(ForgetTest, PathWalksLeakNoReferences) {
  ASSERT_FALSE(client->mkdir("a"));
  ASSERT_FALSE(client->mkdir("a/b"));
  const int before = backend->open_fds();
  for (int i = 0; i < 200; ++i) {
    Attr attr;
    ASSERT_FALSE(client->write_file("a/b/f" + std::to_string(i), bytes("x")));
    ASSERT_FALSE(client->stat("a/b/f" + std::to_string(i), attr));
  }
  client->drop_caches();  // the path cache holds the names it keeps: given back here
  EXPECT_LE(wait_for_fds_at_most(*backend, before), before);
}

using DeviceLossTest = VirtiofsdTest;

TEST_F(DeviceLossTest, BackendKilledMidRunFailsEverythingWithENOTCONN) {
  write_host("t", "data");
  Entry e;
  ASSERT_FALSE(client->lookup(kRootInode, "t", e));
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> ok{0}, notconn{0}, other{0};
  std::vector<std::thread> load;
  for (int t = 0; t < 2; ++t)
    load.emplace_back([&] {
      while (!stop) {
        Attr a;
        auto ec = client->getattr(e.inode, a);
        if (!ec) {
          ++ok;
        } else if (ec == std::errc::not_connected) {
          ++notconn;
        } else {
          ++other;
        }
      }
    });
  // Async requests in flight at the moment of death.
  Countdown pending(200);
  std::this_thread::sleep_for(50ms);
  for (int i = 0; i < 200; ++i)
    client->getattr(e.inode, [&](std::error_code ec, Attr) { pending.done(ec); });
  backend->kill_now();
  const auto killed_at = std::chrono::steady_clock::now();
  ASSERT_TRUE(pending.wait(1000ms)) << "pending requests must end within a second";
  EXPECT_LT(std::chrono::steady_clock::now() - killed_at, 1000ms);
  std::this_thread::sleep_for(50ms);
  stop = true;
  for (auto& th : load) th.join();
  EXPECT_GT(ok.load(), 0u);
  EXPECT_GT(notconn.load(), 0u);
  EXPECT_EQ(other.load(), 0u);
  for (auto ec : pending.errors) EXPECT_TRUE(!ec || ec == std::errc::not_connected) << ec.message();
  // Later calls fail at once.
  Attr a;
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(client->getattr(e.inode, a), std::errc::not_connected);
  EXPECT_EQ(client->stat("t", a), std::errc::not_connected);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 100ms);
  EXPECT_EQ(client->failure(), std::errc::not_connected);
}

TEST(BadInput, MissingSocketIsAClearError) {
  Options o;
  o.socket_path = "/nonexistent-dir/vfsd.sock";
  expect_connect_error(o, std::errc::no_such_file_or_directory, "/nonexistent-dir/vfsd.sock");
}

TEST(BadInput, SocketPathThatIsARegularFile) {
  TempDir dir;
  std::ofstream(dir / "file") << "not a socket";
  Options o;
  o.socket_path = dir / "file";
  EXPECT_THROW(Client::connect(o), std::system_error);
}

TEST(BadInput, PeerThatIsNotVhostUserTimesOutOrFails) {
  // A UNIX socket whose peer accepts and says nothing: connect must fail, not hang.
  TempDir dir;
  const std::string path = dir / "silent.sock";
  // Made once the peer listens: the socket file alone exists from bind(), before listen().
  const std::string ready = dir / "listening";
  pid_t child = fork();
  if (child == 0) {
    execlp("python3", "python3", "-c",
           ("import socket,time\ns=socket.socket(socket.AF_UNIX)\ns.bind('" + path +
            "')\ns.listen(1)\nopen('" + ready + "','w').close()\nc,_=s.accept()\ntime.sleep(30)")
               .c_str(),
           nullptr);
    _exit(127);
  }
  for (int i = 0; i < 500 && ::access(ready.c_str(), F_OK) != 0; ++i) std::this_thread::sleep_for(10ms);
  Options o;
  o.socket_path = path;
  const auto t0 = std::chrono::steady_clock::now();
  expect_connect_error(o, std::errc::timed_out, "did not reply");
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
}

TEST(BadInput, QueueSizeMustBeAPowerOfTwo) {
  TempDir share;
  Virtiofsd backend(share.path());
  Options o;
  o.socket_path = backend.socket_path();
  o.queue_size = 100;
  expect_connect_error(o, std::errc::invalid_argument, "power of two");
}

TEST(BadInput, MoreRequestQueuesThanTheBackendHas) {
  TempDir share;
  Virtiofsd backend(share.path());
  Options o;
  o.socket_path = backend.socket_path();
  o.num_request_queues = 2;  // Debian's virtiofsd has one
  EXPECT_THROW(Client::connect(o), std::system_error);
}

// ---- the command-line client ----

namespace {
struct CliRun {
  int status;
  std::string out;
};
CliRun run_cli(const std::string& args) {
  std::string cmd = std::string(VIRTIOFS_CLI) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}
}  // namespace

TEST(Cli, PutCatLsStatRmAgainstTheRealBackend) {
  TempDir share, local;
  std::ofstream(local / "in.txt") << "cli data\n";
  auto with_backend = [&](const std::string& args) {
    Virtiofsd backend(share.path());  // virtiofsd serves one connection, then exits
    return run_cli("--socket " + backend.socket_path() + " " + args);
  };
  EXPECT_EQ(with_backend("put " + (local / "in.txt") + " copy.txt").status, 0);
  std::ifstream in(share / "copy.txt");
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "cli data");
  CliRun cat = with_backend("cat copy.txt");
  EXPECT_EQ(cat.status, 0);
  EXPECT_EQ(cat.out, "cli data\n");
  EXPECT_EQ(with_backend("mkdir sub").status, 0);
  CliRun ls = with_backend("ls");
  EXPECT_NE(ls.out.find("copy.txt"), std::string::npos);
  EXPECT_NE(ls.out.find("sub"), std::string::npos);
  CliRun st = with_backend("stat copy.txt");
  EXPECT_NE(st.out.find("Size: 9 "), std::string::npos) << st.out;
  EXPECT_EQ(with_backend("rm copy.txt").status, 0);
  EXPECT_NE(::access((share / "copy.txt").c_str(), F_OK), 0);
  CliRun missing = with_backend("cat nothing");
  EXPECT_EQ(missing.status, 1);
  EXPECT_NE(missing.out.find("No such file or directory"), std::string::npos);
}

TEST(Cli, BadSocketIsAOneLineError) {
  CliRun r = run_cli("--socket /nonexistent/s.sock ls");
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
  EXPECT_NE(r.out.find("/nonexistent/s.sock"), std::string::npos);
  CliRun usage = run_cli("--bogus");
  EXPECT_EQ(usage.status, 2);
}
