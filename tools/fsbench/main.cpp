// virtiofs-fsbench: the same file-system workload on several targets in one run, side by side
// with ratios. A target is LABEL=DIR (ordinary syscalls: the backing directory, a virtiofs-mount
// or passthrough_ll mount) or LABEL=socket:PATH[,poll_us=N][,api=...] (the libvirtiofs API on
// a vhost-user backend, optionally in busy-poll mode; api= picks how the stat rows run:
// callbacks at depth 1 too, or coroutines through virtiofs/asio.hpp: on an io_context fed by
// the library's completion threads or reaping itself, or resumed inline on the library's
// threads; see scripts/bench-asio.sh).
// Caches are dropped where a row says "cold" (run as root). With --rounds N every target runs N
// times, interleaved, and each figure is the median. --cpu adds under each row the CPU time per
// operation: of all CPUs (/proc/stat: fair to a kernel driver, whose work is nobody's process
// time) and of the process running libvirtiofs (this one for a socket: target, with its
// completion threads; for a mount, the process given with --pid LABEL=PID, virtiofs-mount).
// Used by scripts/bench.sh.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <sys/stat.h>
#include <thread>
#include <vector>

#include "cpu.hpp"
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
};
constexpr size_t kRowCount = sizeof(kRows) / sizeof(kRows[0]);
constexpr size_t kTreeDirs = 10;  // the tree: kTreeDirs directories of files/kTreeDirs files

// One round of one target: each row's figure and, for --cpu, the CPU time per operation (an
// operation: one stat, open+close, create+unlink, 4 KiB read, 1 MiB request or tree entry).
struct Round {
  std::vector<double> value = std::vector<double>(kRowCount);
  std::vector<double> all = std::vector<double>(kRowCount);   // every CPU's busy time (us/op)
  std::vector<double> ours = std::vector<double>(kRowCount);  // the libvirtiofs process (us/op)
};

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "virtiofs-fsbench: %s\n", what.c_str());
  std::exit(1);
}

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Where a target's libvirtiofs runs: in this process (a socket: target), in the process
// `pid` (a virtiofs-mount given with --pid), or unknown (NaN: a directory, passthrough_ll).
struct Measured {
  Target& t;
  bool in_process;
  pid_t pid;
  Round r;

  // Runs `op`, which returns the operations it did (0: failed), and records row i: ops/s
  // times `scale`, and the CPU per operation.
  template <class Op>
  void row(size_t i, Op&& op, double scale = 1) {
    const CpuSample c0 = cpu_sample(pid);
    const auto t0 = Clock::now();
    const double ops = static_cast<double>(op());
    const double elapsed = seconds_since(t0);
    const CpuSample c1 = cpu_sample(pid);
    if (ops == 0) die(std::string(kRows[i].title) + " failed");
    r.value[i] = ops * scale / elapsed;
    r.all[i] = (c1.all_us - c0.all_us) / ops;
    r.ours[i] = in_process ? (c1.self_us - c0.self_us) / ops
                : pid      ? (c1.pid_us - c0.pid_us) / ops
                           : std::nan("");
  }
};

Round measure(Target& t, const Settings& s, bool in_process, pid_t pid) {
  std::vector<std::string> names;
  for (size_t i = 0; i < s.files; ++i) names.push_back("f" + std::to_string(i));
  t.create_files(names);
  t.create_files({"one"});
  const size_t tree_files = std::max<size_t>(1, s.files / kTreeDirs);
  t.make_tree("tree", kTreeDirs, tree_files);
  Measured m{t, in_process, pid, {}};
  const size_t n = names.size();

  m.row(0, [&] {
    size_t done = 0;
    for (const auto start = Clock::now(); seconds_since(start) < s.seconds; done += 256)
      if (!t.stat_one("one", 256)) return size_t{0};
    return done;
  });
  drop_caches();
  m.row(1, [&] { return t.stat_each(names, 1) ? n : 0; });
  drop_caches();
  m.row(2, [&] { return t.stat_each(names, 32) ? n : 0; });
  m.row(3, [&] { return t.open_close("one", s.ops) ? s.ops : 0; });
  m.row(4, [&] { return t.create_unlink("c", s.ops / 2) ? s.ops / 2 : 0; });
  m.row(6, [&] { return t.write_sequential("big", s.mib) ? s.mib : 0; }, 1.048576);
  drop_caches();
  m.row(7, [&] { return t.read_sequential("big", s.mib) ? s.mib : 0; }, 1.048576);
  drop_caches();
  m.row(5, [&] { return t.read_random_4k("big", s.mib, s.seconds); });
  drop_caches();
  m.row(8, [&] {
    const size_t seen = t.walk_tree("tree"), want = kTreeDirs * (tree_files + 1);
    if (seen != want && seen != 0)
      die("tree walk saw " + std::to_string(seen) + " entries of " + std::to_string(want));
    return seen;
  });

  names.push_back("one");
  names.push_back("big");
  t.remove_files(names);
  t.remove_tree("tree", kTreeDirs, tree_files);
  return m.r;
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
        if (!t.stat_one("one", 64)) ok = false;
        done += 64;
      }
    });
  for (auto& w : workers) w.join();
  const double elapsed = seconds_since(start);
  t.remove_files({"one"});
  if (!ok) die("stat from threads failed");
  return done / elapsed;
}

// The median of `v` (not empty); NaN if any figure is.
double median(std::vector<double> v) {
  for (double x : v)
    if (std::isnan(x)) return x;
  std::sort(v.begin(), v.end());
  const size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

// LABEL=socket:PATH[,poll_us=N][,api=callback|asio|asio-reap|asio-inline] or LABEL=DIR (a work
// subdirectory is made in DIR).
std::unique_ptr<Target> open_target(const std::string& where) {
  if (where.rfind("socket:", 0) == 0) {
    std::string path = where.substr(7);
    unsigned poll_us = 0;
    Api api = Api::kDefault;
    const auto comma = path.find(',');
    for (size_t at = comma; at != std::string::npos;) {
      const size_t end = path.find(',', at + 1);
      const std::string option = path.substr(at + 1, end == std::string::npos ? end : end - at - 1);
      if (option.rfind("poll_us=", 0) == 0)
        poll_us = static_cast<unsigned>(std::stoul(option.substr(8)));
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
            "': poll_us=N, api=callback, api=asio, api=asio-reap or api=asio-inline");
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
  std::vector<std::pair<std::string, pid_t>> pids;  // --pid LABEL=PID
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
    else if (a == "--pid") {
      const std::string v = value();
      const auto eq = v.find('=');
      if (eq == std::string::npos) die("--pid needs LABEL=PID");
      pids.emplace_back(v.substr(0, eq), static_cast<pid_t>(std::stol(v.substr(eq + 1))));
    } else if (a == "--stat-threads") stat_threads = static_cast<unsigned>(std::stoul(value()));
    else if (const auto eq = a.find('='); eq != std::string::npos && eq > 0)
      targets.emplace_back(a.substr(0, eq), a.substr(eq + 1));
    else
      die("usage: virtiofs-fsbench [--mib N] [--files N] [--ops N] [--seconds S] [--rounds N] "
          "[--ratio-to LABEL] [--data FILE] [--stat-threads N] [--cpu [--pid LABEL=PID]...] "
          "LABEL=DIR|LABEL=socket:PATH[,poll_us=N][,api=callback|asio|asio-reap|asio-inline]...");
  }
  if (targets.empty()) die("no targets");
  const size_t n = targets.size();
  size_t ref = 0;
  for (size_t i = 0; i < n; ++i)
    if (targets[i].first == ratio_to) ref = i;
  std::vector<pid_t> pid_of(n, 0);
  for (auto& [label, pid] : pids) {
    size_t i = 0;
    while (i < n && targets[i].first != label) ++i;
    if (i == n) die("--pid " + label + ": no such target");
    pid_of[i] = pid;
  }

  // Every target stays open for all rounds (virtiofsd serves one connection). Each round runs
  // them all, starting one further along, so that none always runs first or last: the machine
  // drifts, and a figure is the median of its rounds.
  std::vector<std::unique_ptr<Target>> opened(n);
  std::vector<std::vector<Round>> by_round(n);  // [target][round]
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
        if (stat_threads) {
          Round r;
          r.value[0] = stat_from_threads(*opened[i], stat_threads, s.seconds);
          by_round[i].push_back(r);
        } else {
          const bool in_process = targets[i].second.rfind("socket:", 0) == 0;
          by_round[i].push_back(measure(*opened[i], s, in_process, pid_of[i]));
        }
      } catch (const std::exception& e) {
        die(targets[i].first + ": " + e.what());
      }
    }
  opened.clear();
  for (auto& [label, where] : targets)
    if (where.rfind("socket:", 0) != 0) rmdir((where + "/.fsbench").c_str());

  // A figure: a row's value, or with --cpu its CPU per operation (all CPUs, ours).
  enum Kind { kValue, kAll, kOurs };
  auto figure = [&](const Round& r, size_t row, Kind k) {
    return k == kValue ? r.value[row] : k == kAll ? r.all[row] : r.ours[row];
  };
  auto med = [&](size_t i, size_t row, Kind k) {
    std::vector<double> v;
    for (auto& r : by_round[i]) v.push_back(figure(r, row, k));
    return median(v);
  };
  const size_t rows = stat_threads ? 1 : kRowCount;
  // The printed lines: each row, and with --cpu its CPU line under it.
  std::vector<std::pair<size_t, bool>> lines;  // (row, is the CPU line)
  for (size_t row = 0; row < rows; ++row) {
    lines.emplace_back(row, false);
    if (cpu_rows && !stat_threads) lines.emplace_back(row, true);
  }

  const std::string threads_title = "stat one file, " + std::to_string(stat_threads) + " threads (ops/s)";
  const char* cpu_title = "  CPU us/op: all CPUs/libvirtiofs";
  auto title = [&](size_t row, bool cpu) {
    return cpu ? cpu_title : stat_threads ? threads_title.c_str() : kRows[row].title;
  };
  auto number = [](double v) {
    char b[32];
    if (std::isnan(v)) return std::string("-");
    std::snprintf(b, sizeof(b), v >= 100 ? "%.0f" : v >= 10 ? "%.1f" : "%.2f", v);
    return std::string(b);
  };
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
  for (auto [row, cpu] : lines) {
    std::printf("%-42s", title(row, cpu));
    for (size_t i = 0; i < n; ++i) {
      if (cpu)
        std::printf(" %15s", (number(med(i, row, kAll)) + "/" + number(med(i, row, kOurs))).c_str());
      else
        std::printf(" %15.0f", med(i, row, kValue));
    }
    std::printf("   %*s", static_cast<int>(ratio_word.size() + 1), "");
    const Kind k = cpu ? kAll : kValue;  // the CPU line's ratio: all CPUs
    for (size_t i = 0; i < n; ++i)
      if (i != ref) std::printf(" %14.2fx", med(i, row, k) / med(ref, row, k));
    std::printf("\n");
  }
  if (rounds > 1) {
    // How far a ratio moved between rounds: the lowest and highest of the per-round ratios.
    std::printf("\n%-42s   %s, lowest-highest of the rounds:\n", "", ratio_word.c_str());
    for (auto [row, cpu] : lines) {
      std::printf("%-42s", title(row, cpu));
      const Kind k = cpu ? kAll : kValue;
      for (size_t i = 0; i < n; ++i) {
        if (i == ref) continue;
        double lo = 1e300, hi = 0;
        for (unsigned round = 0; round < rounds; ++round) {
          const double q = figure(by_round[i][round], row, k) / figure(by_round[ref][round], row, k);
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
    for (auto [row, cpu] : lines) {
      for (Kind k : cpu ? std::vector<Kind>{kAll, kOurs} : std::vector<Kind>{kValue}) {
        out << (stat_threads ? "stat-threads" : kRows[row].key)
            << (k == kAll ? "-cpu" : k == kOurs ? "-cpu-ours" : "");
        for (size_t i = 0; i < n; ++i) out << " " << med(i, row, k);
        out << "\n";
      }
    }
  }
  return 0;
}
