// Test fixture support for real FUSE mounts through virtiofs-mount: running the tool, waiting
// for the mount, finding its processes, and unmounting the way users do.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace virtiofs::test {

struct RunResult {
  int status = -1;     // exit status, or 128+signal
  std::string output;  // stdout and stderr
};

// Runs argv (argv[0] looked up on PATH) and waits, for at most timeout_ms (then SIGKILL, 137).
RunResult run(const std::vector<std::string>& argv, int timeout_ms = 30000);
// The same through /bin/sh -c.
RunResult sh(const std::string& command, int timeout_ms = 120000);

// The fstype of what is mounted exactly at `path` in this mount namespace, or "" if nothing.
std::string mounted_type(const std::string& path);
// The file system's own options (mountinfo's super options, e.g. "rw,user_id=0,group_id=0,
// default_permissions,allow_other") of what is mounted exactly at `path`, or "" if nothing.
std::string mounted_options(const std::string& path);
// Waits for mounted_type(path) to become `want` ("" = gone); true if it did within timeout_ms.
bool wait_mount_state(const std::string& path, const std::string& want, int timeout_ms);

// Processes whose command line contains `needle` (as one argument or inside one).
std::vector<pid_t> pids_with_arg(const std::string& needle);
// Whether pid has gone (exited; zombies count as gone) within timeout_ms.
bool wait_gone(pid_t pid, int timeout_ms);

// Path of the virtiofs-mount binary under test.
const char* mount_binary();

// virtiofs-mount running in the foreground (-f) as a child of the test, mounted at mountpoint.
class ForegroundMount {
 public:
  // `log_path`: where the tool's stderr goes (default: the test's own).
  ForegroundMount(const std::string& mountpoint, std::vector<std::string> args,
                  const std::string& log_path = {});
  ~ForegroundMount();
  pid_t pid() const { return pid_; }
  // Waits for the tool to exit; returns its exit status (or -1 after timeout_ms).
  int wait(int timeout_ms);
  // SIGTERM, as a service manager stops it; returns the exit status (0: clean, sanitizers quiet).
  int stop();
  const std::string& mountpoint() const { return mountpoint_; }

 private:
  std::string mountpoint_;
  pid_t pid_ = -1;
};

}  // namespace virtiofs::test
