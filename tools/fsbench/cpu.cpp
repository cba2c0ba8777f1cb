#include "cpu.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

namespace virtiofs::bench {

namespace {

double tick_us() { return 1e6 / static_cast<double>(sysconf(_SC_CLK_TCK)); }

// Busy time of all CPUs: user nice system irq softirq steal (guest time is inside user).
// Guest-wide in a VM, so it holds the kernel driver's work and any daemon's alike.
double all_busy_us() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  double user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
  in >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal;
  return (user + nice + system + irq + softirq + steal) * tick_us();
}

// utime+stime of a whole process (all its threads, the gone ones too).
double process_us(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(in, line);
  const auto paren = line.rfind(')');  // the name may hold spaces and parentheses
  if (paren == std::string::npos) return 0;
  std::istringstream rest(line.substr(paren + 2));
  std::string field;
  double utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {  // fields 14 and 15 (1-based)
    if (i == 14) utime = std::stod(field);
    if (i == 15) stime = std::stod(field);
  }
  return (utime + stime) * tick_us();
}

}  // namespace

CpuSample cpu_sample(pid_t pid) {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto us = [](const timeval& t) { return t.tv_sec * 1e6 + t.tv_usec; };
  return {us(u.ru_utime) + us(u.ru_stime), all_busy_us(), pid ? process_us(pid) : 0};
}

}  // namespace virtiofs::bench
