// The Client's verdict on replies the session passes up, over the loopback device: a stepped
// request queue is answered by hand with exact bytes where FsServer would answer correctly.
#include <gtest/gtest.h>

#include <dirent.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <sys/stat.h>

#include <array>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <vector>

#include "client/connector.hpp"
#include "support/chain_bytes.hpp"
#include "unit/session_fixture.hpp"
#include "virtiofs/client.hpp"

using namespace virtiofs;
using namespace virtiofs::test;

namespace {

template <class T>
std::span<const std::byte> raw(const T& value) {
  return std::as_bytes(std::span(&value, 1));
}

// What an asynchronous call's callback reported.
struct AsyncResult {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  std::error_code ec;
  void set(std::error_code e) {
    std::lock_guard lock(mu);
    ec = e;
    done = true;
    cv.notify_all();
  }
  bool wait() {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, kBound, [&] { return done; });
  }
};

class ClientReplyChecks : public ::testing::Test {
 protected:
  void SetUp() override {
    loop = std::make_unique<LoopbackFs>();
    Options o;
    o.queue_size = 8;
    o.num_request_queues = 1;
    client = client::Connector::over(loop->transport(), o);
  }
  void TearDown() override {
    // A failed test may have left calls with a stepped device: losing it ends them at once.
    if (HasFailure()) loop->device().lose();
    loop->device().set_all_stepped(false);
    client.reset();
  }

  // Takes the next request on the stepped request queue; nullopt when none comes.
  std::optional<DeviceChain> next_request(uint32_t opcode) {
    auto chain = take_one(loop->device(), 1);
    auto header = chain ? request_header(*chain) : std::nullopt;
    EXPECT_TRUE(header && header->opcode == opcode) << "expected opcode " << opcode;
    return chain;
  }
  // Answers `chain` with a success header followed by exactly `payload`.
  void answer(const DeviceChain& chain, std::span<const std::byte> payload) {
    const uint32_t len = scatter(chain, make_reply(request_header(chain)->unique, 0, payload));
    loop->device().complete(1, chain.head, len);
  }
  std::function<void()> lose() {
    return [this] { loop->device().lose(); };
  }

  AsyncResult async;  // outlives the client: a late callback still finds it
  std::unique_ptr<LoopbackFs> loop;
  std::unique_ptr<Client> client;
};

// ---- WRITE that claims more than it was given ----

TEST_F(ClientReplyChecks, SyncWriteCountBeyondWhatWasSentIsEioAndFailsTheClient) {
  loop->device().set_stepped(1, true);
  const std::string data = "0123456789";
  std::error_code ec;
  size_t written = 0;
  JoinedThread writer(lose(), [&] { ec = client->write(2, 3, 0, bytes_of(data), written); });
  auto chain = next_request(FUSE_WRITE);
  ASSERT_TRUE(chain);
  fuse_write_out out{};
  out.size = static_cast<uint32_t>(data.size() + 1);
  answer(*chain, raw(out));
  ASSERT_TRUE(writer.finished_within());
  EXPECT_EQ(ec, std::errc::io_error);
  EXPECT_EQ(client->failure(), std::errc::io_error);
}

TEST_F(ClientReplyChecks, AsyncWriteCountBeyondWhatWasSentIsEioAndFailsTheClient) {
  loop->device().set_stepped(1, true);
  static const std::string data = "0123456789";  // outlives any late callback
  client->write(2, 3, 0, bytes_of(data), [this](std::error_code ec, size_t) { async.set(ec); });
  auto chain = next_request(FUSE_WRITE);
  ASSERT_TRUE(chain);
  fuse_write_out out{};
  out.size = static_cast<uint32_t>(data.size() + 1);
  answer(*chain, raw(out));
  ASSERT_TRUE(async.wait());
  EXPECT_EQ(async.ec, std::errc::io_error);
  EXPECT_EQ(client->failure(), std::errc::io_error);
}

// ---- fixed-size replies ----

TEST_F(ClientReplyChecks, GetattrReplyShorterThanItsStructIsEioAndFailsTheClient) {
  loop->device().set_stepped(1, true);
  std::error_code ec;
  Attr attr;
  JoinedThread caller(lose(), [&] { ec = client->getattr(kRootInode, attr); });
  auto chain = next_request(FUSE_GETATTR);
  ASSERT_TRUE(chain);
  static_assert(sizeof(fuse_attr_out) > 40);
  const std::array<std::byte, 40> truncated{};
  answer(*chain, truncated);
  ASSERT_TRUE(caller.finished_within());
  EXPECT_EQ(ec, std::errc::io_error);
  EXPECT_EQ(client->failure(), std::errc::io_error);
}

// FUSE: node id 0 in an entry is a negative entry, not a node: the name does not exist.
TEST_F(ClientReplyChecks, LookupAnsweredWithNodeIdZeroIsEnoentAndTheClientStaysHealthy) {
  loop->device().set_stepped(1, true);
  std::error_code ec;
  Entry entry;
  JoinedThread caller(lose(), [&] { ec = client->lookup(kRootInode, "ghost", entry); });
  auto chain = next_request(FUSE_LOOKUP);
  ASSERT_TRUE(chain);
  fuse_entry_out negative{};
  negative.entry_valid = 1;
  answer(*chain, raw(negative));
  ASSERT_TRUE(caller.finished_within());
  EXPECT_EQ(ec, std::errc::no_such_file_or_directory);
  EXPECT_FALSE(client->failure()) << client->failure().message();
}

// ---- READDIRPLUS ----

// Appends one direntplus record: entry for `nodeid`, then the dirent named `name`, padded.
void add_direntplus(std::vector<std::byte>& buf, uint64_t nodeid, const std::string& name,
                    uint64_t off) {
  fuse_entry_out e{};
  e.nodeid = nodeid;
  e.attr.ino = nodeid;
  e.attr.mode = S_IFREG | 0644;
  fuse_dirent d{};
  d.ino = nodeid;
  d.off = off;
  d.namelen = static_cast<uint32_t>(name.size());
  d.type = DT_REG;
  const size_t at = buf.size();
  buf.resize(at + sizeof(e) + FUSE_DIRENT_ALIGN(FUSE_NAME_OFFSET + name.size()));
  std::memcpy(buf.data() + at, &e, sizeof(e));
  std::memcpy(buf.data() + at + sizeof(e), &d, FUSE_NAME_OFFSET);
  std::memcpy(buf.data() + at + sizeof(e) + FUSE_NAME_OFFSET, name.data(), name.size());
}

// Two good records hand out two references; the third is cut short. The call fails with EIO,
// and the two references must go back to the device, not leak.
// The session flushes them before it fails (Session::device_misbehaved).
TEST_F(ClientReplyChecks, BadReaddirplusRecordForgetsTheEntriesBeforeIt) {
  loop->device().set_stepped(1, true);
  std::error_code ec;
  std::vector<std::pair<DirEntry, Entry>> out;
  JoinedThread caller(lose(), [&] { ec = client->readdirplus(kRootInode, 7, 0, out); });
  auto chain = next_request(FUSE_READDIRPLUS);
  ASSERT_TRUE(chain);
  std::vector<std::byte> records;
  add_direntplus(records, 1001, "a", 1);
  add_direntplus(records, 1002, "b", 2);
  add_direntplus(records, 1003, "c", 3);
  records.resize(records.size() - 12);  // the last record ends inside its name's header
  answer(*chain, records);
  ASSERT_TRUE(caller.finished_within());
  EXPECT_EQ(ec, std::errc::io_error);
  EXPECT_TRUE(out.empty());
  EXPECT_TRUE(eventually([&] { return loop->stat("forget_entries") == 2; }))
      << "FORGET entries the device saw: " << loop->stat("forget_entries");
}

// The stop of a read the device answers anyway: client_cancel_test.cpp.

}  // namespace
