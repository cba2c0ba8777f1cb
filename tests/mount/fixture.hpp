// A real virtiofsd on a temporary directory, mounted through virtiofs-mount -o socket= at a
// temporary mount point. Tests act on the mount with ordinary syscalls and check the host
// directory itself (and the other way round).
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>

#include "support/mount.hpp"
#include "support/virtiofsd.hpp"

namespace virtiofs::test {

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
inline void write_file(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
  ASSERT_TRUE(out.good()) << path;
}
inline std::string random_bytes(size_t n, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t v = rng();
    std::memcpy(&s[i], &v, 8);
  }
  for (; i < n; ++i) s[i] = static_cast<char>(rng());
  return s;
}

class MountTest : public ::testing::Test {
 protected:
  void SetUp() override { start_mount(); }
  void TearDown() override {
    if (!mount) return;  // skipped, or the mount failed (and said so)
    EXPECT_EQ(mount->stop(), 0) << "virtiofs-mount did not stop cleanly";
    EXPECT_EQ(mounted_type(mnt.path()), "");
    mount.reset();
    backend.reset();
  }

  // Serves the share with virtiofsd and mounts it with `-o socket=...` followed by `options`
  // (",opt,..."), `flags` (e.g. -d) before them, the tool's stderr to `log_path` if given.
  void start_mount(const std::string& options = "", std::vector<std::string> flags = {},
                   const std::string& log_path = {}) {
    backend = std::make_unique<Virtiofsd>(share.path(), std::vector<std::string>{"-o", "xattr"});
    flags.insert(flags.end(), {"-o", "socket=" + backend->socket_path() + options, "testfs"});
    mount = std::make_unique<ForegroundMount>(mnt.path(), flags, log_path);
  }

  std::string m(const std::string& rel) const { return mnt / rel; }
  std::string h(const std::string& rel) const { return share / rel; }

  TempDir share;
  TempDir mnt;
  std::unique_ptr<Virtiofsd> backend;
  std::unique_ptr<ForegroundMount> mount;
};

// A mount with its -d log kept: virtiofsd (-o xattr and `backend_args`), then virtiofs-mount -d
// with `-o socket=...` and `options` (",opt,..."); stop() returns what it logged.
class LoggedMountTest : public ::testing::Test {
 public:
  void start_backend(std::vector<std::string> backend_args = {}) {
    backend_args.insert(backend_args.begin(), {"-o", "xattr"});
    backend = std::make_unique<Virtiofsd>(share.path(), backend_args);
  }
  void mount_with(const std::string& options) {
    if (!backend) start_backend();
    mount = std::make_unique<ForegroundMount>(
        mnt.path(),
        std::vector<std::string>{"-d", "-o", "socket=" + backend->socket_path() + options, "testfs"},
        log_path());
  }
  std::string stop() {
    EXPECT_EQ(mount->stop(), 0) << "virtiofs-mount did not stop cleanly";
    EXPECT_EQ(mounted_type(mnt.path()), "");
    mount.reset();
    return read_file(log_path());
  }
  std::string log_path() const { return logs / "mount.log"; }
  std::string m(const std::string& rel) const { return mnt / rel; }
  std::string h(const std::string& rel) const { return share / rel; }

  TempDir share, mnt, logs;
  std::unique_ptr<Virtiofsd> backend;
  std::unique_ptr<ForegroundMount> mount;
};

}  // namespace virtiofs::test
