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
  void SetUp() override {
    backend = std::make_unique<Virtiofsd>(share.path(), std::vector<std::string>{"-o", "xattr"});
    mount = std::make_unique<ForegroundMount>(
        mnt.path(), std::vector<std::string>{"-o", "socket=" + backend->socket_path(), "testfs"});
  }
  void TearDown() override {
    EXPECT_EQ(mount->stop(), 0) << "virtiofs-mount did not stop cleanly";
    EXPECT_EQ(mounted_type(mnt.path()), "");
    mount.reset();
    backend.reset();
  }

  std::string m(const std::string& rel) const { return mnt / rel; }
  std::string h(const std::string& rel) const { return share / rel; }

  TempDir share;
  TempDir mnt;
  std::unique_ptr<Virtiofsd> backend;
  std::unique_ptr<ForegroundMount> mount;
};

}  // namespace virtiofs::test
