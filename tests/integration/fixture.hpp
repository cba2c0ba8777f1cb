// A real virtiofsd on a temporary directory, a Client connected to it, and helpers that check
// results on the host directory itself with ordinary syscalls.
//
// In the VM rig (tests/vm) the same tests run against the VFIO-owned virtio-fs device instead:
// VIRTIOFS_TEST_PCI_DEVICE names it and VIRTIOFS_TEST_HOST_VIEW is the guest kernel's cache=none
// view of the host directory that device serves (emptied before each test).
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

#include "support/virtiofsd.hpp"
#include "virtiofs/client.hpp"

namespace virtiofs::test {

// Where the device's files are seen directly: a fresh temporary directory, or the VM rig's view.
class ShareView {
 public:
  ShareView() {
    if (const char* view = std::getenv("VIRTIOFS_TEST_HOST_VIEW")) {
      path_ = view;
      for (const auto& e : std::filesystem::directory_iterator(path_)) std::filesystem::remove_all(e.path());
    } else {
      temp_ = std::make_unique<TempDir>();
      path_ = temp_->path();
    }
  }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& rel) const { return path_ + "/" + rel; }

 private:
  std::unique_ptr<TempDir> temp_;
  std::string path_;
};

inline const char* vfio_test_device() { return std::getenv("VIRTIOFS_TEST_PCI_DEVICE"); }

// FORGET has no reply: polls the backend's fd table (one per node it holds) until it is back to
// `baseline` (bounded: 2 s), and returns what it last read.
inline int wait_for_fds_at_most(const Virtiofsd& backend, int baseline) {
  int now = 0;
  for (int i = 0; i < 200; ++i) {
    now = backend.open_fds();
    if (now <= baseline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return now;
}

class VirtiofsdTest : public ::testing::Test {
 protected:
  void SetUp() override { start(); }
  void start(Options options = {}, std::vector<std::string> backend_options = {"-o", "xattr"}) {
    if (const char* device = vfio_test_device()) {
      options.pci_device = device;
    } else {
      backend = std::make_unique<Virtiofsd>(share.path(), backend_options);
      options.socket_path = backend->socket_path();
    }
    client = Client::connect(options);
  }
  void TearDown() override {
    client.reset();
    backend.reset();
  }

  std::string host(const std::string& rel) const { return share / rel; }
  std::string read_host(const std::string& rel) const {
    std::ifstream in(host(rel), std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  void write_host(const std::string& rel, const std::string& data) const {
    std::ofstream(host(rel), std::ios::binary) << data;
  }

  ShareView share;
  std::unique_ptr<Virtiofsd> backend;  // null in the VM rig
  std::unique_ptr<Client> client;
};

// Counts async completions and lets a test wait for all of them, bounded.
struct Countdown {
  std::mutex mu;
  std::condition_variable cv;
  size_t left;
  std::vector<std::error_code> errors;
  explicit Countdown(size_t n) : left(n) {}
  void done(std::error_code ec) {
    std::lock_guard lock(mu);
    errors.push_back(ec);
    if (--left == 0) cv.notify_all();
  }
  bool wait(std::chrono::milliseconds limit) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, limit, [&] { return left == 0; });
  }
};

// connect must fail with `code` and a message that contains `mention`.
inline void expect_connect_error(const Options& o, std::errc code, const std::string& mention) {
  try {
    Client::connect(o);
    ADD_FAILURE() << "connect must throw";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    EXPECT_NE(std::string(e.what()).find(mention), std::string::npos) << e.what();
  }
}

// `count` async GETATTRs of `name` at once, far more than the ring holds: every one must
// complete with the right size, and some must have waited for ring space.
inline void expect_all_getattrs_complete(Client& client, const std::string& name, uint64_t size,
                                         int count) {
  Entry e;
  ASSERT_FALSE(client.lookup(kRootInode, name, e));
  Countdown all(static_cast<size_t>(count));
  for (int i = 0; i < count; ++i)
    client.getattr(e.inode, [&](std::error_code ec, Attr a) {
      if (!ec && a.size != size) ec = std::make_error_code(std::errc::io_error);
      all.done(ec);
    });
  ASSERT_TRUE(all.wait(std::chrono::seconds(60))) << all.left << " requests never completed";
  for (auto ec : all.errors) EXPECT_FALSE(ec) << ec.message();
  EXPECT_GT(client.stats().waits, 0u) << "the ring must have been full at some point";
  client.forget(e.inode, 1);
}

inline std::string random_bytes(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

inline std::span<const std::byte> bytes(const std::string& s) {
  return std::as_bytes(std::span(s.data(), s.size()));
}

}  // namespace virtiofs::test
