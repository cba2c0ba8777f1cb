#include "support/mount.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace virtiofs::test {

const char* mount_binary() { return VIRTIOFS_MOUNT; }

namespace {

int wait_status(pid_t pid, int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    int status;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (r < 0) return -1;
    if (std::chrono::steady_clock::now() > deadline) return -2;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

}  // namespace

RunResult run(const std::vector<std::string>& argv, int timeout_ms) {
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
  pid_t pid = fork();
  if (pid == 0) {
    dup2(out[1], 1);
    dup2(out[1], 2);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  close(out[1]);
  RunResult result;
  // Read until EOF or timeout: a daemon keeps no copy of the pipe once it detached.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  char buf[4096];
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) break;
    pollfd p{out[0], POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left)) <= 0) break;
    ssize_t n = read(out[0], buf, sizeof(buf));
    if (n <= 0) break;
    result.output.append(buf, static_cast<size_t>(n));
  }
  close(out[0]);
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now()).count();
  result.status = wait_status(pid, static_cast<int>(std::max<long>(left, 100)));
  if (result.status == -2) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    result.status = 137;
  }
  return result;
}

RunResult sh(const std::string& command, int timeout_ms) { return run({"/bin/sh", "-c", command}, timeout_ms); }

namespace {

struct MountEntry {
  std::string type;
  std::string options;
};

// The visible mount at `path` (the last one listed there), or an empty entry.
MountEntry mount_entry(const std::string& path) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  MountEntry entry;
  while (std::getline(in, line)) {
    // id parent major:minor root mountpoint options [optional...] - fstype source superopts
    std::istringstream f(line);
    std::string id, parent, dev, root, mnt;
    f >> id >> parent >> dev >> root >> mnt;
    if (mnt != path) continue;
    std::string tok, source;
    while (f >> tok && tok != "-") {
    }
    entry = {};
    f >> entry.type >> source >> entry.options;
  }
  return entry;
}

}  // namespace

std::string mounted_type(const std::string& path) { return mount_entry(path).type; }

std::string mounted_options(const std::string& path) { return mount_entry(path).options; }

bool wait_mount_state(const std::string& path, const std::string& want, int timeout_ms) {
  for (int waited = 0; waited <= timeout_ms; waited += 10) {
    if (mounted_type(path) == want) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

namespace {

// Reads a /proc file of a process that may exit at any moment: what was read, or "" (iostreams
// throw when a read fails with ESRCH mid-way).
std::string read_proc_file(const std::string& path) {
  std::string out;
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
  close(fd);
  return out;
}

// The state letter of /proc/PID/stat ("" when the process is gone).
std::string proc_state(const std::string& pid) {
  const std::string stat = read_proc_file("/proc/" + pid + "/stat");
  const size_t paren = stat.rfind(')');  // comm may hold spaces and parentheses
  return paren == std::string::npos || paren + 2 >= stat.size() ? "" : stat.substr(paren + 2, 1);
}

}  // namespace

std::vector<pid_t> pids_with_arg(const std::string& needle) {
  std::vector<pid_t> pids;
  DIR* d = opendir("/proc");
  while (d) {
    dirent* e = readdir(d);
    if (!e) break;
    const pid_t pid = static_cast<pid_t>(atoi(e->d_name));
    if (pid <= 0 || pid == getpid()) continue;
    const std::string cmdline = read_proc_file("/proc/" + std::string(e->d_name) + "/cmdline");
    if (cmdline.find(needle) == std::string::npos) continue;
    const std::string state = proc_state(e->d_name);
    if (!state.empty() && state != "Z") pids.push_back(pid);
  }
  if (d) closedir(d);
  return pids;
}

bool wait_gone(pid_t pid, int timeout_ms) {
  for (int waited = 0; waited <= timeout_ms; waited += 10) {
    waitpid(pid, nullptr, WNOHANG);  // reaps it when it is our child
    const std::string state = proc_state(std::to_string(pid));
    if (state.empty() || state == "Z") return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

ForegroundMount::ForegroundMount(const std::string& mountpoint, std::vector<std::string> args,
                                 const std::string& log_path)
    : mountpoint_(mountpoint) {
  args.insert(args.begin(), {mount_binary(), "-f"});
  args.push_back(mountpoint);
  pid_ = fork();
  if (pid_ == 0) {
    if (!log_path.empty()) {
      const int log = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (log < 0 || dup2(log, STDERR_FILENO) < 0) _exit(126);
    }
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  if (!wait_mount_state(mountpoint_, "fuse.virtiofs-mount", 10000)) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
    throw std::runtime_error("virtiofs-mount -f did not mount " + mountpoint_);
  }
  // The first request waits for the kernel's INIT to be answered: live once it returns.
  struct stat st {};
  stat(mountpoint_.c_str(), &st);
}

ForegroundMount::~ForegroundMount() {
  if (pid_ <= 0) return;
  if (!mounted_type(mountpoint_).empty()) kill(pid_, SIGTERM);
  if (wait(10000) == -1) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    umount2(mountpoint_.c_str(), MNT_DETACH);
  }
}

int ForegroundMount::stop() {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGTERM);
  return wait(15000);
}

int ForegroundMount::wait(int timeout_ms) {
  if (pid_ <= 0) return -1;
  int status = wait_status(pid_, timeout_ms);
  if (status < 0) return -1;
  pid_ = -1;
  return status;
}

}  // namespace virtiofs::test
