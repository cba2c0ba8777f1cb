#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <random>
#include <string_view>
#include <thread>

#include "target.hpp"

namespace virtiofs::bench {

void drop_caches() {
  sync();
  std::ofstream("/proc/sys/vm/drop_caches") << "3";
}

void Target::drop_caches() { bench::drop_caches(); }

namespace {

class DirectoryTarget final : public Target {
 public:
  explicit DirectoryTarget(std::string dir) : dir_(std::move(dir)) {}

  void create_files(const std::vector<std::string>& names) override {
    for (auto& n : names) close(open(path(n).c_str(), O_CREAT | O_WRONLY, 0644));
  }
  void remove_files(const std::vector<std::string>& names) override {
    for (auto& n : names) unlink(path(n).c_str());
  }
  bool stat_one(const std::string& name, size_t count) override {
    struct stat st;
    const std::string p = path(name);
    for (size_t i = 0; i < count; ++i)
      if (stat(p.c_str(), &st) != 0) return false;
    return true;
  }
  bool stat_each(const std::vector<std::string>& names, unsigned depth) override {
    std::atomic<size_t> next{0};
    std::atomic<bool> ok{true};
    auto worker = [&] {
      struct stat st;
      for (size_t i; (i = next.fetch_add(1)) < names.size();)
        if (stat(path(names[i]).c_str(), &st) != 0) ok = false;
    };
    std::vector<std::thread> threads;
    for (unsigned t = 1; t < depth; ++t) threads.emplace_back(worker);
    worker();
    for (auto& t : threads) t.join();
    return ok;
  }
  bool open_close(const std::string& name, size_t count) override {
    const std::string p = path(name);
    for (size_t i = 0; i < count; ++i) {
      int fd = open(p.c_str(), O_RDONLY);
      if (fd < 0) return false;
      close(fd);
    }
    return true;
  }
  bool create_unlink(const std::string& prefix, size_t count) override {
    for (size_t i = 0; i < count; ++i) {
      const std::string p = path(prefix + std::to_string(i));
      int fd = open(p.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644);
      if (fd < 0) return false;
      close(fd);
      if (unlink(p.c_str()) != 0) return false;
    }
    return true;
  }
  bool write_sequential(const std::string& name, size_t mib) override {
    std::vector<char> block(1 << 20, 'v');
    int fd = open(path(name).c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
    if (fd < 0) return false;
    bool ok = true;
    for (size_t i = 0; i < mib && ok; ++i)
      ok = write(fd, block.data(), block.size()) == static_cast<ssize_t>(block.size());
    ok = ok && fsync(fd) == 0;
    close(fd);
    return ok;
  }
  bool read_sequential(const std::string& name, size_t mib) override {
    std::vector<char> block(1 << 20);
    int fd = open(path(name).c_str(), O_RDONLY);
    if (fd < 0) return false;
    size_t total = 0;
    ssize_t n;
    while ((n = read(fd, block.data(), block.size())) > 0) total += static_cast<size_t>(n);
    close(fd);
    return total == mib << 20;
  }
  size_t read_random_4k(const std::string& name, size_t mib, double seconds) override {
    int fd = open(path(name).c_str(), O_RDONLY);
    if (fd < 0) return 0;
    posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM);  // no readahead: each read is one request
    char buf[4096];
    std::mt19937_64 rng(42);
    const uint64_t blocks = (mib << 20) / 4096;
    size_t done = 0;
    const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (std::chrono::steady_clock::now() < end) {
      for (int i = 0; i < 16; ++i, ++done)
        if (pread(fd, buf, sizeof(buf), static_cast<off_t>((rng() % blocks) * 4096)) != 4096) {
          perror("virtiofs-fsbench: 4 KiB pread");
          close(fd);
          return 0;
        }
    }
    close(fd);
    return done;
  }
  void make_tree(const std::string& name, size_t dirs, size_t files) override {
    mkdir(path(name).c_str(), 0755);
    for (size_t d = 0; d < dirs; ++d) {
      const std::string dir = path(name) + "/d" + std::to_string(d);
      mkdir(dir.c_str(), 0755);
      for (size_t f = 0; f < files; ++f)
        close(open((dir + "/f" + std::to_string(f)).c_str(), O_CREAT | O_WRONLY, 0644));
    }
  }
  void remove_tree(const std::string& name, size_t dirs, size_t files) override {
    for (size_t d = 0; d < dirs; ++d) {
      const std::string dir = path(name) + "/d" + std::to_string(d);
      for (size_t f = 0; f < files; ++f) unlink((dir + "/f" + std::to_string(f)).c_str());
      rmdir(dir.c_str());
    }
    rmdir(path(name).c_str());
  }
  size_t walk_tree(const std::string& name) override { return walk(path(name)); }

 private:
  // Entries below dir (0 when something failed).
  static size_t walk(const std::string& dir) {
    DIR* d = opendir(dir.c_str());
    if (!d) return 0;
    size_t seen = 0;
    bool ok = true;
    while (dirent* e = readdir(d)) {
      if (std::string_view n = e->d_name; n == "." || n == "..") continue;
      struct stat st;
      if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) { ok = false; break; }
      ++seen;
      if (S_ISDIR(st.st_mode)) {
        const size_t below = walk(dir + "/" + e->d_name);
        if (below == 0) { ok = false; break; }
        seen += below;
      }
    }
    closedir(d);
    return ok ? seen : 0;
  }

  std::string path(const std::string& name) const { return dir_ + "/" + name; }
  std::string dir_;
};

}  // namespace

std::unique_ptr<Target> directory_target(const std::string& dir) {
  return std::make_unique<DirectoryTarget>(dir);
}

}  // namespace virtiofs::bench
