// virtiofs-dirbench: the same file-system workload on several directories in one run, side by
// side with ratios against the first. Used by scripts/bench-mount.sh to put a virtiofs-mount
// mount next to its backing directory. Ordinary syscalls only; caches dropped where it matters.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

void drop_caches() {
  sync();
  std::ofstream("/proc/sys/vm/drop_caches") << "3";
}

void die(const std::string& what) {
  std::fprintf(stderr, "virtiofs-dirbench: %s: %s\n", what.c_str(), std::strerror(errno));
  std::exit(1);
}

struct Result {
  double stat_warm, stat_cold, write_mbs, read_mbs;
};

Result measure(const std::string& dir, size_t file_mib, int cold_files) {
  Result r{};
  const std::string work = dir + "/.dirbench";
  mkdir(work.c_str(), 0755);
  const std::string one = work + "/one";
  close(open(one.c_str(), O_CREAT | O_WRONLY, 0644));

  // stat of one file for a second: attributes as the kernel caches them.
  struct stat st;
  size_t n = 0;
  auto t = Clock::now();
  while (seconds_since(t) < 1.0) {
    for (int i = 0; i < 256; ++i) stat(one.c_str(), &st);
    n += 256;
  }
  r.stat_warm = n / seconds_since(t);

  // stat of many files after dropping caches: one LOOKUP round trip each through FUSE.
  for (int i = 0; i < cold_files; ++i)
    close(open((work + "/f" + std::to_string(i)).c_str(), O_CREAT | O_WRONLY, 0644));
  drop_caches();
  t = Clock::now();
  for (int i = 0; i < cold_files; ++i)
    if (stat((work + "/f" + std::to_string(i)).c_str(), &st) != 0) die("stat");
  r.stat_cold = cold_files / seconds_since(t);

  // 1 MiB sequential writes, then reads after dropping caches.
  std::vector<char> block(1 << 20, 'v');
  const std::string big = work + "/big";
  int fd = open(big.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
  if (fd < 0) die("open " + big);
  t = Clock::now();
  for (size_t i = 0; i < file_mib; ++i)
    if (write(fd, block.data(), block.size()) != static_cast<ssize_t>(block.size())) die("write");
  fsync(fd);
  close(fd);
  r.write_mbs = file_mib * 1.048576 / seconds_since(t);
  drop_caches();
  fd = open(big.c_str(), O_RDONLY);
  t = Clock::now();
  while (read(fd, block.data(), block.size()) > 0) {
  }
  r.read_mbs = file_mib * 1.048576 / seconds_since(t);
  close(fd);

  for (int i = 0; i < cold_files; ++i) unlink((work + "/f" + std::to_string(i)).c_str());
  unlink(big.c_str());
  unlink(one.c_str());
  rmdir(work.c_str());
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: virtiofs-dirbench [--mib N] [--files N] LABEL=DIR...\n");
    return 2;
  }
  size_t mib = 256;
  int files = 5000;
  std::vector<std::pair<std::string, std::string>> dirs;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--mib" && i + 1 < argc) {
      mib = std::stoul(argv[++i]);
    } else if (a == "--files" && i + 1 < argc) {
      files = std::stoi(argv[++i]);
    } else {
      auto eq = a.find('=');
      dirs.emplace_back(eq == std::string::npos ? a : a.substr(0, eq),
                        eq == std::string::npos ? a : a.substr(eq + 1));
    }
  }
  std::vector<Result> results;
  for (auto& [label, dir] : dirs) results.push_back(measure(dir, mib, files));

  std::printf("%-34s", "");
  for (auto& [label, dir] : dirs) std::printf(" %14s", label.c_str());
  std::printf("   (ratio to %s)\n", dirs[0].first.c_str());
  auto row = [&](const char* name, double Result::*field, const char* fmt) {
    std::printf("%-34s", name);
    for (auto& r : results) std::printf(fmt, r.*field);
    std::printf("  ");
    for (size_t i = 1; i < results.size(); ++i) std::printf(" %6.2fx", results[i].*field / results[0].*field);
    std::printf("\n");
  };
  row("stat, attributes cached (ops/s)", &Result::stat_warm, " %14.0f");
  row("stat, caches dropped (ops/s)", &Result::stat_cold, " %14.0f");
  row("1 MiB sequential write (MB/s)", &Result::write_mbs, " %14.0f");
  row("1 MiB sequential read (MB/s)", &Result::read_mbs, " %14.0f");
  return 0;
}
