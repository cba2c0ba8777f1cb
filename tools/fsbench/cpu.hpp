// CPU time counters for the per-operation CPU rows of virtiofs-fsbench (--cpu).
#pragma once

#include <sys/types.h>

namespace virtiofs::bench {

struct CpuSample {
  double self_us = 0;  // this process, every thread, user+system (getrusage)
  double all_us = 0;   // every CPU of the machine, busy (not idle or iowait) (/proc/stat)
  double pid_us = 0;   // another process (utime+stime of /proc/PID/stat), when one is watched
};

// pid 0: no other process.
CpuSample cpu_sample(pid_t pid);

}  // namespace virtiofs::bench
