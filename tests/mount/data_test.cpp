// Data integrity, concurrency and real workloads through a real mount.
#include <sys/stat.h>
#include <sys/wait.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <thread>

#include "mount/fixture.hpp"

namespace virtiofs::test {
namespace {

using Data = MountTest;
namespace fs = std::filesystem;

TEST_F(Data, RandomFilesFromZeroTo64MiBArriveIntact) {
  const size_t sizes[] = {0, 1, 4095, 4096, 4097, 8191, 65535, 65537, (1 << 20) - 1, (1 << 20) + 1,
                          3 * (1 << 20) + 77, 16 << 20, 64 << 20};
  unsigned seed = 100;
  for (size_t size : sizes) {
    const std::string name = "rand-" + std::to_string(size);
    const std::string data = random_bytes(size, ++seed);
    // Written with odd-sized writes so requests are not page aligned.
    int fd = open(m(name).c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
    ASSERT_GE(fd, 0);
    size_t off = 0;
    while (off < data.size()) {
      const size_t n = std::min<size_t>(data.size() - off, 1000003);
      ASSERT_EQ(write(fd, data.data() + off, n), static_cast<ssize_t>(n));
      off += n;
    }
    ASSERT_EQ(close(fd), 0);
    const std::string host = read_file(h(name));
    ASSERT_EQ(host.size(), size) << name;
    EXPECT_TRUE(host == data) << name << " differs on the host";
  }
}

TEST_F(Data, HostFilesReadBackThroughTheMount) {
  unsigned seed = 200;
  for (size_t size : {size_t{0}, size_t{1}, size_t{4096}, size_t{65536 + 3}, size_t{(1 << 20) + 5},
                      size_t{20 << 20}}) {
    const std::string name = "host-" + std::to_string(size);
    const std::string data = random_bytes(size, ++seed);
    write_file(h(name), data);
    const std::string through = read_file(m(name));
    ASSERT_EQ(through.size(), size);
    EXPECT_TRUE(through == data) << name;
  }
}

// A ring of 16 still carries the kernel's 1 MiB READs and WRITEs (one indirect descriptor each,
// the table longer than the ring): O_DIRECT makes the kernel send them at that size.
class SmallRingMount : public MountTest {
 protected:
  void SetUp() override { start_mount(",queue_size=16"); }
};

TEST_F(SmallRingMount, DirectOneMebibyteReadsAndWritesOnARingOfSixteen) {
  constexpr size_t kMiB = 1 << 20;
  const std::string data = random_bytes(4 * kMiB, 77);
  write_file(h("in"), data);
  void* raw = nullptr;
  ASSERT_EQ(posix_memalign(&raw, 4096, kMiB), 0);
  std::unique_ptr<char, decltype(&free)> buf(static_cast<char*>(raw), free);

  int fd = open(m("in").c_str(), O_RDONLY | O_DIRECT);
  ASSERT_GE(fd, 0) << strerror(errno);
  for (size_t off = 0; off < data.size(); off += kMiB) {
    ASSERT_EQ(pread(fd, buf.get(), kMiB, static_cast<off_t>(off)), static_cast<ssize_t>(kMiB))
        << "at " << off << ": " << strerror(errno);
    EXPECT_EQ(std::memcmp(buf.get(), data.data() + off, kMiB), 0) << "at " << off;
  }
  close(fd);

  fd = open(m("out").c_str(), O_CREAT | O_WRONLY | O_DIRECT, 0644);
  ASSERT_GE(fd, 0) << strerror(errno);
  std::memcpy(buf.get(), data.data(), kMiB);
  ASSERT_EQ(pwrite(fd, buf.get(), kMiB, 0), static_cast<ssize_t>(kMiB)) << strerror(errno);
  close(fd);
  EXPECT_TRUE(read_file(h("out")) == data.substr(0, kMiB));
}

// 8 processes, each with its own files plus a shared directory where they race to create,
// rename and unlink. Each verifies every byte it reads of its own files.
TEST_F(Data, EightProcessesMixedWorkloadNoErrorsNoCorruptionNoLeakedNodes) {
  fs::create_directory(m("shared"));
  const int baseline_fds = backend->open_fds();
  constexpr int kProcs = 8;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(6);
  std::vector<pid_t> kids;
  for (int p = 0; p < kProcs; ++p) {
    pid_t pid = fork();
    if (pid == 0) {
      std::mt19937 rng(p * 7919);
      const std::string mine = m("proc" + std::to_string(p));
      if (mkdir(mine.c_str(), 0755) != 0) _exit(10);
      std::vector<std::string> contents(8);
      int failures = 0;
      while (std::chrono::steady_clock::now() < deadline && failures == 0) {
        const int slot = static_cast<int>(rng() % contents.size());
        const std::string path = mine + "/f" + std::to_string(slot);
        switch (rng() % 6) {
          case 0:
          case 1: {  // write a whole file
            std::string data = random_bytes(rng() % 300000, static_cast<unsigned>(rng()));
            std::ofstream(path, std::ios::binary | std::ios::trunc) << data;
            contents[slot] = data;
            break;
          }
          case 2: {  // read and verify
            if (contents[slot].empty() && !fs::exists(path)) break;
            std::ifstream in(path, std::ios::binary);
            std::string got((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
            if (got != contents[slot]) failures = 1;
            break;
          }
          case 3: {  // rename within my directory, contents follow
            const int other = static_cast<int>(rng() % contents.size());
            if (other == slot || !fs::exists(path)) break;
            if (rename(path.c_str(), (mine + "/f" + std::to_string(other)).c_str()) != 0) failures = 2;
            contents[other] = contents[slot];
            contents[slot].clear();
            break;
          }
          case 4: {  // unlink
            if (!fs::exists(path)) break;
            if (unlink(path.c_str()) != 0) failures = 3;
            contents[slot].clear();
            break;
          }
          case 5: {  // shared directory: create, rename over, unlink; races are expected
            const std::string a = m("shared/s" + std::to_string(rng() % 16));
            const std::string b = m("shared/s" + std::to_string(rng() % 16));
            int fd = open(a.c_str(), O_CREAT | O_WRONLY, 0644);
            if (fd < 0) { failures = 4; break; }
            close(fd);
            if (rename(a.c_str(), b.c_str()) != 0 && errno != ENOENT) failures = 5;
            if (unlink(b.c_str()) != 0 && errno != ENOENT) failures = 6;
            break;
          }
        }
      }
      _exit(failures);
    }
    kids.push_back(pid);
  }
  for (pid_t k : kids) {
    int status = 0;
    waitpid(k, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << "worker failed with code " << WEXITSTATUS(status);
  }
  // Everything in the mount matches the host.
  for (int p = 0; p < kProcs; ++p) {
    for (auto& e : fs::directory_iterator(h("proc" + std::to_string(p)))) {
      const std::string rel = "proc" + std::to_string(p) + "/" + e.path().filename().string();
      EXPECT_TRUE(read_file(m(rel)) == read_file(h(rel))) << rel;
    }
  }
  // Evicting the kernel's inodes sends FORGETs; the backend then drops the fds it held for
  // them. Leaked nodes would keep it far above where it started.
  fs::remove_all(m("shared"));
  for (int p = 0; p < kProcs; ++p) fs::remove_all(m("proc" + std::to_string(p)));
  int fds = 0;
  for (int i = 0; i < 100; ++i) {
    sync();
    std::ofstream("/proc/sys/vm/drop_caches") << "2";
    fds = backend->open_fds();
    if (fds <= baseline_fds + 2) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_LE(fds, baseline_fds + 2) << "the backend still holds nodes the kernel forgot";
}

TEST_F(Data, TarExtractOfFiveThousandFilesMatchesOnTheHost) {
  TempDir src;
  for (int d = 0; d < 50; ++d) {
    fs::create_directories(src / ("tree/d" + std::to_string(d)));
    for (int f = 0; f < 100; ++f)
      std::ofstream(src / ("tree/d" + std::to_string(d) + "/f" + std::to_string(f)))
          << random_bytes((d * 100 + f) % 5000, d * 100 + f);
  }
  const std::string tarball = src / "tree.tar";
  ASSERT_EQ(sh("tar -C " + src.path() + " -cf " + tarball + " tree").status, 0);
  auto extract = sh("tar -C " + mnt.path() + " -xf " + tarball);
  ASSERT_EQ(extract.status, 0) << extract.output;
  auto diff = sh("diff -r " + (src / "tree") + " " + h("tree"));
  EXPECT_EQ(diff.status, 0) << diff.output.substr(0, 2000);
  size_t files = 0;
  for (auto& e : fs::recursive_directory_iterator(h("tree"))) files += e.is_regular_file();
  EXPECT_EQ(files, 5000u);
}

TEST_F(Data, GitInitAddCommitOnTheMount) {
  fs::create_directories(m("repo/src"));
  for (int i = 0; i < 200; ++i) write_file(m("repo/src/file" + std::to_string(i) + ".txt"), random_bytes(1000 + i, i));
  const std::string git = "git -c user.name=t -c user.email=t@example.com -c init.defaultBranch=main -C ";
  auto r = sh(git + m("repo") + " init -q && " + git + m("repo") + " add -A && " + git + m("repo") +
              " commit -qm first");
  ASSERT_EQ(r.status, 0) << r.output;
  // The host sees a sound repository with the commit.
  auto fsck = sh("git -C " + h("repo") + " fsck --strict 2>&1 && git -C " + h("repo") + " log --oneline");
  ASSERT_EQ(fsck.status, 0) << fsck.output;
  EXPECT_NE(fsck.output.find("first"), std::string::npos);
  auto count = sh("git -C " + h("repo") + " ls-files | wc -l");
  EXPECT_EQ(std::stoi(count.output), 200);
}

}  // namespace
}  // namespace virtiofs::test
