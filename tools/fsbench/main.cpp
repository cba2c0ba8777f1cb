// virtiofs-fsbench: the same file-system workload on several targets in one run, side by side
// with ratios. A target is LABEL=DIR (ordinary syscalls: the backing directory, a virtiofs-mount
// or passthrough_ll mount) or LABEL=socket:PATH[,poll_us=N][,api=...] (the libvirtiofs API on
// a vhost-user backend; poll_us=N sets Options::poll_us, left out the library's default wait;
// api= picks how the stat rows run: callbacks at depth 1 too, or coroutines through
// virtiofs/asio.hpp: on an io_context fed by the library's completion threads or reaping
// itself, or resumed inline on the library's threads; see scripts/bench-asio.sh).
// Each row is what an application does; on a directory with syscalls, on the library with its
// path API in the default api (whatever either caches between calls counts):
//   stat one file, repeated   stat(path) / Client::stat(path), again and again
//   stat, cold, depth 1       stat(path) / Client::stat(path) of each of --files names once
//   stat, cold, depth 32      32 threads of stat(path) / 32 LOOKUPs in flight in the directory
//                             (callbacks or coroutines on the inode API: no async path API)
//   open+close                open(path, O_RDONLY) + close / Client::open_file + File::close
//   create+unlink             open(O_CREAT|O_EXCL|O_WRONLY) + close + unlink(path), the same
//                             through open_file, File::close and Client::unlink(path)
//   the read/write rows       one open file (File), 1 MiB or 4 KiB requests
//   tree walk                 readdir + stat of every entry (READDIRPLUS on the library)
// --data FILE writes the medians (a row per line, a column per target) and FILE.rounds every
// round's figures (scripts/bench-goals.sh reads both).
// Caches are dropped where a row says "cold" (run as root): the kernel's, and on the library
// its path cache as well (Client::drop_caches). With --rounds N every target runs N
// times, interleaved, and each figure is the median. --cpu adds, for every row, the CPU time per
// operation of this process (for the library, its completion threads included) and of the
// target's servers named with ,cpu_pids=PID[:PID...] (a FUSE daemon, virtiofsd), the servers'
// part alone (their process CPU clocks, in ns), and the busy
// time of all CPUs per operation (/proc/stat: fair to a kernel driver, whose work is no
// process's; scripts/bench-guest.sh reads it in a guest). Used by scripts/bench.sh,
// scripts/bench-levers.sh and scripts/bench-guest.sh.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <sys/resource.h>
#include <sys/stat.h>
#include <thread>
#include <vector>

#include "target.hpp"

using namespace virtiofs::bench;

namespace {

using Clock = std::chrono::steady_clock;

struct Settings {
  size_t mib = 256;
  size_t files = 5000;
  size_t ops = 2000;
  double seconds = 1.0;
};

struct Row {
  const char* key;    // short name, for the data file
  const char* title;  // for people
};
const Row kRows[] = {
    {"stat-repeat", "stat one file, repeated (ops/s)"},
    {"stat-cold-qd1", "stat, cold, depth 1 (ops/s)"},
    {"stat-cold-qd32", "stat, cold, depth 32 (ops/s)"},
    {"open-close", "open+close (ops/s)"},
    {"create-unlink", "create+unlink (ops/s)"},
    {"randread-4k", "4 KiB random read, depth 1 (IOPS)"},
    {"seqwrite-1m", "1 MiB sequential write (MB/s)"},
    {"seqread-1m", "1 MiB sequential read, cold (MB/s)"},
    {"tree-walk", "tree walk, cold, readdir+stat (entries/s)"},
    // With --cpu, one per row above, in the same order: CPU time (user+system, all threads) of
    // this process and of the target's cpu_pids while the row ran, per operation (per MB for
    // the MB/s rows).
    {"stat-repeat-cpu", "  CPU: stat one file (us/op)"},
    {"stat-cold-qd1-cpu", "  CPU: stat, cold, depth 1 (us/op)"},
    {"stat-cold-qd32-cpu", "  CPU: stat, cold, depth 32 (us/op)"},
    {"open-close-cpu", "  CPU: open+close (us/op)"},
    {"create-unlink-cpu", "  CPU: create+unlink (us/op)"},
    {"randread-4k-cpu", "  CPU: 4 KiB random read (us/op)"},
    {"seqwrite-1m-cpu", "  CPU: 1 MiB seq. write (us/MB)"},
    {"seqread-1m-cpu", "  CPU: 1 MiB seq. read (us/MB)"},
    {"tree-walk-cpu", "  CPU: tree walk (us/entry)"},
    // And the busy time of all CPUs (user nice system irq softirq steal, /proc/stat) per
    // operation: in a guest it holds a kernel driver's work as well as a daemon's.
    {"stat-repeat-all", "  all CPUs: stat one file (us/op)"},
    {"stat-cold-qd1-all", "  all CPUs: stat, cold, depth 1 (us/op)"},
    {"stat-cold-qd32-all", "  all CPUs: stat, cold, depth 32 (us/op)"},
    {"open-close-all", "  all CPUs: open+close (us/op)"},
    {"create-unlink-all", "  all CPUs: create+unlink (us/op)"},
    {"randread-4k-all", "  all CPUs: 4 KiB random read (us/op)"},
    {"seqwrite-1m-all", "  all CPUs: 1 MiB seq. write (us/MB)"},
    {"seqread-1m-all", "  all CPUs: 1 MiB seq. read (us/MB)"},
    {"tree-walk-all", "  all CPUs: tree walk (us/entry)"},
    // And the target's servers' part of the CPU rows (cpu_pids alone: virtiofsd, a FUSE
    // daemon); the CPU row minus this is this process's own.
    {"stat-repeat-srv", "  servers' CPU: stat one file (us/op)"},
    {"stat-cold-qd1-srv", "  servers' CPU: stat, cold, depth 1 (us/op)"},
    {"stat-cold-qd32-srv", "  servers' CPU: stat, cold, depth 32 (us/op)"},
    {"open-close-srv", "  servers' CPU: open+close (us/op)"},
    {"create-unlink-srv", "  servers' CPU: create+unlink (us/op)"},
    {"randread-4k-srv", "  servers' CPU: 4 KiB random read (us/op)"},
    {"seqwrite-1m-srv", "  servers' CPU: 1 MiB seq. write (us/MB)"},
    {"seqread-1m-srv", "  servers' CPU: 1 MiB seq. read (us/MB)"},
    {"tree-walk-srv", "  servers' CPU: tree walk (us/entry)"},
};
constexpr size_t kRowCount = sizeof(kRows) / sizeof(kRows[0]);
// The figures, then their CPU rows, their all-CPU rows, their servers' CPU rows.
constexpr size_t kFigures = kRowCount / 4;
constexpr size_t kTreeDirs = 10;            // the tree: kTreeDirs directories of files/kTreeDirs

// CPU time used so far by this process (every thread, user and system), in us (ns clock).
double self_cpu_us() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

// CPU time used so far by the processes `pids` (all their threads, dead ones included), in us:
// from their process CPU clocks (ns), or /proc/PID/stat's clock ticks where that is refused.
double servers_cpu_us(const std::vector<int>& pids) {
  double total = 0;
  static const double tick_us = 1e6 / static_cast<double>(sysconf(_SC_CLK_TCK));
  for (int pid : pids) {
    clockid_t clock;
    timespec ts;
    if (clock_getcpuclockid(pid, &clock) == 0 && clock_gettime(clock, &ts) == 0) {
      total += ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
      continue;
    }
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    std::getline(in, line);
    const size_t paren = line.rfind(')');  // the command name may hold spaces
    if (paren == std::string::npos) continue;
    std::istringstream fields(line.substr(paren + 2));
    std::string skip;
    for (int i = 3; i < 14; ++i) fields >> skip;  // state .. cmajflt
    double utime = 0, stime = 0;
    fields >> utime >> stime;
    total += (utime + stime) * tick_us;
  }
  return total;
}

// Busy time of all CPUs so far, in us (guest time is inside user). Not steal: in a guest that
// is time the host ran something else.
double all_cpus_us() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  double user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0;
  in >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq;
  return (user + nice + system + irq + softirq) * 1e6 / static_cast<double>(sysconf(_SC_CLK_TCK));
}

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "virtiofs-fsbench: %s\n", what.c_str());
  std::exit(1);
}

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Runs `op` and returns `units` per second; dies naming the row if it fails.
template <class Op>
double rate(const char* row, double units, Op&& op) {
  const auto t = Clock::now();
  if (!op()) die(std::string(row) + " failed");
  return units / seconds_since(t);
}

std::vector<double> measure(Target& t, const Settings& s) {
  std::vector<std::string> names;
  for (size_t i = 0; i < s.files; ++i) names.push_back("f" + std::to_string(i));
  t.create_files(names);
  t.create_files({"one"});
  const size_t tree_files = std::max<size_t>(1, s.files / kTreeDirs);
  t.make_tree("tree", kTreeDirs, tree_files);
  std::vector<double> r(kRowCount);
  // Row `row`'s figure, and its CPU per unit of work beside it: ours with the servers', all
  // CPUs', the servers' alone.
  double self = 0, servers = 0, all = 0;
  auto start_cpu = [&] {
    self = self_cpu_us();
    servers = servers_cpu_us(t.cpu_pids);
    all = all_cpus_us();
  };
  auto charge = [&](size_t row, double units) {
    const double servers_used = servers_cpu_us(t.cpu_pids) - servers;
    r[kFigures + row] = (self_cpu_us() - self + servers_used) / units;
    r[2 * kFigures + row] = (all_cpus_us() - all) / units;
    r[3 * kFigures + row] = servers_used / units;
  };
  auto timed = [&](size_t row, double units, auto&& op) {
    start_cpu();
    r[row] = rate(kRows[row].title, units, op);
    charge(row, units);
  };

  size_t n = 0;
  start_cpu();
  const auto start = Clock::now();
  while (seconds_since(start) < s.seconds) {
    if (!t.stat_one("one", 256)) die("stat failed");
    n += 256;
  }
  r[0] = n / seconds_since(start);
  charge(0, n);
  t.drop_caches();
  timed(1, names.size(), [&] { return t.stat_each(names, 1); });
  t.drop_caches();
  timed(2, names.size(), [&] { return t.stat_each(names, 32); });
  // The library's RELEASEs (and their FORGETs) and the kernel's asynchronous ones for a FUSE
  // mount may still be pending when these two rows stop the clock: their last few spill into
  // the next row's time and CPU (there is no public way to wait for them but Client::close).
  timed(3, s.ops, [&] { return t.open_close("one", s.ops); });
  timed(4, s.ops / 2, [&] { return t.create_unlink("c", s.ops / 2); });
  timed(6, s.mib * 1.048576, [&] { return t.write_sequential("big", s.mib); });
  t.drop_caches();
  timed(7, s.mib * 1.048576, [&] { return t.read_sequential("big", s.mib); });
  t.drop_caches();
  start_cpu();
  const auto t0 = Clock::now();
  const size_t reads = t.read_random_4k("big", s.mib, s.seconds);
  if (reads == 0) die("4 KiB random read failed");
  r[5] = reads / seconds_since(t0);
  charge(5, reads);
  t.drop_caches();
  start_cpu();
  const auto t1 = Clock::now();
  const size_t seen = t.walk_tree("tree"), want = kTreeDirs * (tree_files + 1);
  if (seen != want)
    die("tree walk saw " + std::to_string(seen) + " entries of " + std::to_string(want));
  r[8] = seen / seconds_since(t1);
  charge(8, seen);

  names.push_back("one");
  names.push_back("big");
  t.remove_files(names);
  t.remove_tree("tree", kTreeDirs, tree_files);
  return r;
}

// GETATTR (stat) of one file from `threads` threads for `seconds`: ops/s. On the library each
// thread keeps to one request queue, so this shows how throughput follows the queue count.
double stat_from_threads(Target& t, unsigned threads, double seconds) {
  t.create_files({"one"});
  std::atomic<uint64_t> done{0};
  std::atomic<bool> ok{true};
  const auto start = Clock::now();
  std::vector<std::thread> workers;
  for (unsigned i = 0; i < threads; ++i)
    workers.emplace_back([&] {
      while (seconds_since(start) < seconds) {
        if (!t.getattr_repeat("one", 64)) ok = false;
        done += 64;
      }
    });
  for (auto& w : workers) w.join();
  const double elapsed = seconds_since(start);
  t.remove_files({"one"});
  if (!ok) die("stat from threads failed");
  return done / elapsed;
}

// The median of `v` (not empty).
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

// LABEL=socket:PATH[,poll_us=N][,api=blocking|callback|asio|...] or LABEL=DIR (a work
// subdirectory is made in DIR); either with ,cpu_pids=PID[:PID...] at the end (--cpu).
std::unique_ptr<Target> open_target_at(const std::string& where);
std::unique_ptr<Target> open_target(std::string where) {
  std::vector<int> pids;
  if (const size_t at = where.find(",cpu_pids="); at != std::string::npos) {
    std::istringstream list(where.substr(at + 10));
    for (std::string pid; std::getline(list, pid, ':');) pids.push_back(std::stoi(pid));
    where.resize(at);
  }
  std::unique_ptr<Target> target = open_target_at(where);
  target->cpu_pids = std::move(pids);
  return target;
}

std::unique_ptr<Target> open_target_at(const std::string& where) {
  if (where.rfind("socket:", 0) == 0) {
    std::string path = where.substr(7);
    std::optional<unsigned> poll_us;  // not given: the library's default
    Api api = Api::kDefault;
    const auto comma = path.find(',');
    for (size_t at = comma; at != std::string::npos;) {
      const size_t end = path.find(',', at + 1);
      const std::string option = path.substr(at + 1, end == std::string::npos ? end : end - at - 1);
      if (option.rfind("poll_us=", 0) == 0)
        poll_us = static_cast<unsigned>(std::stoul(option.substr(8)));
      else if (option == "api=blocking")
        api = Api::kBlocking;
      else if (option == "api=callback")
        api = Api::kCallback;
      else if (option == "api=asio")
        api = Api::kAsio;
      else if (option == "api=asio-reap")
        api = Api::kAsioReap;
      else if (option == "api=asio-inline")
        api = Api::kAsioInline;
      else
        die("unknown target option '" + option +
            "': poll_us=N, api=blocking, api=callback, api=asio, api=asio-reap or api=asio-inline");
      at = end;
    }
    if (comma != std::string::npos) path.resize(comma);
    return library_target(path, poll_us, api);
  }
  const std::string work = where + "/.fsbench";
  mkdir(work.c_str(), 0755);
  return directory_target(work);
}

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  unsigned stat_threads = 0;  // set: only the threads row
  unsigned rounds = 1;
  bool cpu_rows = false;
  std::string ratio_to, data_path;
  std::vector<std::pair<std::string, std::string>> targets;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&] {
      if (i + 1 >= argc) die(a + " needs a value");
      return std::string(argv[++i]);
    };
    if (a == "--mib") s.mib = std::stoul(value());
    else if (a == "--files") s.files = std::stoul(value());
    else if (a == "--ops") s.ops = std::stoul(value());
    else if (a == "--seconds") s.seconds = std::stod(value());
    else if (a == "--rounds") rounds = std::max(1u, static_cast<unsigned>(std::stoul(value())));
    else if (a == "--ratio-to") ratio_to = value();
    else if (a == "--data") data_path = value();
    else if (a == "--cpu") cpu_rows = true;
    else if (a == "--stat-threads") stat_threads = static_cast<unsigned>(std::stoul(value()));
    else if (const auto eq = a.find('='); eq != std::string::npos && eq > 0)
      targets.emplace_back(a.substr(0, eq), a.substr(eq + 1));
    else
      die("usage: virtiofs-fsbench [--mib N] [--files N] [--ops N] [--seconds S] [--rounds N] "
          "[--ratio-to LABEL] [--data FILE] [--stat-threads N] [--cpu] "
          "LABEL=DIR|LABEL=socket:PATH[,poll_us=N][,api=blocking|callback|asio|asio-reap|asio-inline]...");
  }
  if (targets.empty()) die("no targets");
  const size_t n = targets.size();
  size_t ref = 0;
  for (size_t i = 0; i < n; ++i)
    if (targets[i].first == ratio_to) ref = i;

  // Every target stays open for all rounds (virtiofsd serves one connection). Each round runs
  // them all, starting one further along, so that none always runs first or last: the machine
  // drifts, and a figure is the median of its rounds.
  std::vector<std::unique_ptr<Target>> opened(n);
  std::vector<std::vector<std::vector<double>>> by_round(n);  // [target][round][row]
  for (size_t i = 0; i < n; ++i) {
    try {
      opened[i] = open_target(targets[i].second);
    } catch (const std::exception& e) {
      die(targets[i].first + ": " + e.what());
    }
  }
  for (unsigned round = 0; round < rounds; ++round)
    for (size_t k = 0; k < n; ++k) {
      const size_t i = (k + round) % n;
      try {
        by_round[i].push_back(stat_threads ? std::vector<double>{stat_from_threads(*opened[i], stat_threads, s.seconds)}
                                           : measure(*opened[i], s));
      } catch (const std::exception& e) {
        die(targets[i].first + ": " + e.what());
      }
    }
  opened.clear();
  for (auto& [label, where] : targets)
    if (where.rfind("socket:", 0) != 0) rmdir((where + "/.fsbench").c_str());

  const size_t rows = stat_threads ? 1 : cpu_rows ? kRowCount : kFigures;
  std::vector<std::vector<double>> results(n, std::vector<double>(rows));  // medians
  for (size_t i = 0; i < n; ++i)
    for (size_t row = 0; row < rows; ++row) {
      std::vector<double> v;
      for (auto& r : by_round[i]) v.push_back(r[row]);
      results[i][row] = median(v);
    }

  const std::string threads_title = "stat one file, " + std::to_string(stat_threads) + " threads (ops/s)";
  auto title = [&](size_t row) { return stat_threads ? threads_title.c_str() : kRows[row].title; };
  auto header = [&](const char* first, const std::string& what) {
    std::printf("%-42s", first);
    for (auto& [label, where] : targets) std::printf(" %15s", label.c_str());
    std::printf("   %s:", what.c_str());
    for (size_t i = 0; i < n; ++i)
      if (i != ref) std::printf(" %15s", targets[i].first.c_str());
    std::printf("\n");
  };
  const std::string ratio_word = "ratio to " + targets[ref].first;
  header(rounds > 1 ? ("median of " + std::to_string(rounds) + " rounds").c_str() : "", ratio_word);
  for (size_t row = 0; row < rows; ++row) {
    std::printf("%-42s", title(row));
    const bool cpu_row = !stat_threads && row >= kFigures;
    for (auto& r : results) std::printf(cpu_row ? " %15.1f" : " %15.0f", r[row]);
    std::printf("   %*s", static_cast<int>(ratio_word.size() + 1), "");
    for (size_t i = 0; i < n; ++i)
      if (i != ref) {
        // A zero reference (CPU rows come in 10 ms ticks) gives no ratio: "-", not nan/inf.
        const double ratio = results[i][row] / results[ref][row];
        if (std::isfinite(ratio)) std::printf(" %14.2fx", ratio);
        else std::printf(" %15s", "-");
      }
    std::printf("\n");
  }
  if (rounds > 1) {
    // How far a ratio moved between rounds: the lowest and highest of the per-round ratios.
    std::printf("\n%-42s   %s, lowest-highest of the rounds:\n", "", ratio_word.c_str());
    for (size_t row = 0; row < rows; ++row) {
      std::printf("%-42s", title(row));
      for (size_t i = 0; i < n; ++i) {
        if (i == ref) continue;
        double lo = 1e300, hi = 0;
        for (unsigned round = 0; round < rounds; ++round) {
          const double q = by_round[i][round][row] / by_round[ref][round][row];
          if (!std::isfinite(q)) continue;  // a CPU figure below the clock tick's resolution
          lo = std::min(lo, q);
          hi = std::max(hi, q);
        }
        char cell[32];
        std::snprintf(cell, sizeof(cell), lo <= hi ? "%.2f-%.2fx" : "-", lo, hi);
        std::printf(" %15s", cell);
      }
      std::printf("\n");
    }
  }
  if (!data_path.empty()) {
    std::ofstream out(data_path);
    out << "row";
    for (auto& [label, where] : targets) out << " " << label;
    out << "\n";
    for (size_t row = 0; row < rows; ++row) {
      out << (stat_threads ? "stat-threads" : kRows[row].key);
      for (auto& r : results) out << " " << r[row];
      out << "\n";
    }
    // Beside it, every round's figure: "row label value-of-round-1 ...", for ranges.
    std::ofstream each(data_path + ".rounds");
    for (size_t row = 0; row < rows; ++row)
      for (size_t i = 0; i < n; ++i) {
        each << (stat_threads ? "stat-threads" : kRows[row].key) << " " << targets[i].first;
        for (auto& r : by_round[i]) each << " " << r[row];
        each << "\n";
      }
  }
  return 0;
}
