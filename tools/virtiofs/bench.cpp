// Quick figures for the library API over the connected device. Same-run peer comparisons come
// with the benchmark suite; this prints what one process sees.
#include "bench.hpp"

#include <fcntl.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <string>

namespace {

using Clock = std::chrono::steady_clock;

double elapsed(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Keeps `depth` async GETATTRs in flight until the deadline; returns completions per second.
double getattr_rate(virtiofs::Client& fs, virtiofs::Inode ino, unsigned depth, double seconds) {
  std::mutex mu;
  std::condition_variable cv;
  std::atomic<uint64_t> done{0};
  unsigned in_flight = 0;
  bool failed = false;
  const auto t0 = Clock::now();
  const auto deadline = t0 + std::chrono::duration<double>(seconds);
  std::function<void(std::error_code, virtiofs::Attr)> on_done;
  on_done = [&](std::error_code ec, virtiofs::Attr) {
    done.fetch_add(1, std::memory_order_relaxed);
    if (!ec && Clock::now() < deadline) {
      fs.getattr(ino, on_done);
      return;
    }
    std::lock_guard lock(mu);
    failed |= static_cast<bool>(ec);
    if (--in_flight == 0) cv.notify_all();
  };
  {
    std::lock_guard lock(mu);
    in_flight = depth;
  }
  for (unsigned i = 0; i < depth; ++i) fs.getattr(ino, on_done);
  std::unique_lock lock(mu);
  cv.wait(lock, [&] { return in_flight == 0; });
  return failed ? -1 : static_cast<double>(done.load()) / elapsed(t0);
}

}  // namespace

int run_bench(virtiofs::Client& fs, double seconds) {
  const std::string name = ".virtiofs-bench.tmp";
  const size_t mib = 1 << 20;
  const size_t total = 64 * mib;
  std::string block(mib, 'b');
  virtiofs::File f;
  if (auto ec = fs.open_file(name, O_RDWR | O_CREAT | O_TRUNC, f)) {
    std::fprintf(stderr, "virtiofs: bench: cannot create %s: %s\n", name.c_str(), ec.message().c_str());
    return 1;
  }
  auto t0 = Clock::now();
  size_t n = 0;
  for (size_t off = 0; off < total; off += mib)
    if (auto ec = f.pwrite(off, std::as_bytes(std::span(block)), n)) return 1;
  const double write_mbs = total / 1e6 / elapsed(t0);
  t0 = Clock::now();
  size_t rounds = 0;
  while (elapsed(t0) < seconds || rounds == 0) {
    for (size_t off = 0; off < total; off += mib)
      if (auto ec = f.pread(off, std::as_writable_bytes(std::span(block)), n)) return 1;
    ++rounds;
  }
  const double read_mbs = rounds * total / 1e6 / elapsed(t0);
  const double qd1 = getattr_rate(fs, f.inode(), 1, seconds);
  const double qd32 = getattr_rate(fs, f.inode(), 32, seconds);
  f.close();
  fs.unlink(name);
  std::printf("getattr qd1    %10.0f ops/s  (%.1f us per round trip)\n", qd1, 1e6 / qd1);
  std::printf("getattr qd32   %10.0f ops/s\n", qd32);
  std::printf("read  1 MiB    %10.1f MB/s\n", read_mbs);
  std::printf("write 1 MiB    %10.1f MB/s\n", write_mbs);
  return 0;
}
