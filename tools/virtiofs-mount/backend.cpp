#include "backend.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <vector>

namespace virtiofs::mount_tool {

namespace {

bool executable(const std::string& path) { return access(path.c_str(), X_OK) == 0; }

// Waits up to timeout_ms for pid to exit; true when it did (and was reaped).
bool wait_exit(pid_t pid, int timeout_ms) {
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (pidfd >= 0) {
    pollfd p{pidfd, POLLIN, 0};
    poll(&p, 1, timeout_ms);
    close(pidfd);
  }
  return waitpid(pid, nullptr, WNOHANG) == pid;
}

}  // namespace

std::string find_virtiofsd() {
  if (const char* env = std::getenv("VIRTIOFSD"); env && *env) return env;
  if (const char* path = std::getenv("PATH")) {
    std::string dirs = path;
    size_t start = 0;
    while (start <= dirs.size()) {
      size_t end = dirs.find(':', start);
      if (end == std::string::npos) end = dirs.size();
      std::string candidate = dirs.substr(start, end - start) + "/virtiofsd";
      if (end > start && executable(candidate)) return candidate;
      start = end + 1;
    }
  }
  // Debian and Ubuntu ship it with QEMU; Fedora and the Rust virtiofsd use libexec.
  for (const char* p : {"/usr/libexec/virtiofsd", "/usr/lib/qemu/virtiofsd"})
    if (executable(p)) return p;
  throw std::runtime_error(
      "virtiofsd not found (install qemu-system-common, or set VIRTIOFSD=/path/to/virtiofsd)");
}

Backend::Backend(const std::string& share_dir, bool debug, bool writeback) {
  const std::string binary = find_virtiofsd();
  const char* runtime = std::getenv("XDG_RUNTIME_DIR");
  std::string base = geteuid() == 0 || !runtime ? "/tmp" : runtime;
  std::vector<char> templ(base.begin(), base.end());
  const std::string suffix = "/virtiofs-mount.XXXXXX";
  templ.insert(templ.end(), suffix.begin(), suffix.end());
  templ.push_back('\0');
  if (!mkdtemp(templ.data())) throw std::runtime_error("cannot create a private directory: " + std::string(std::strerror(errno)));
  dir_ = templ.data();  // mkdtemp makes it 0700
  socket_ = dir_ + "/vhost-user.sock";
  log_ = dir_ + "/virtiofsd.log";

  int listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket_.c_str(), sizeof(addr.sun_path) - 1);
  if (listener < 0 || bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(listener, 1) != 0) {
    int err = errno;
    if (listener >= 0) close(listener);
    rmdir(dir_.c_str());
    throw std::runtime_error("cannot create the vhost-user socket: " + std::string(std::strerror(err)));
  }
  int log_fd = open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

  std::vector<std::string> argv_s = {binary, "--fd=3", "-o", "source=" + share_dir, "-o", "cache=auto",
                                     "-o", "xattr", "-o",
                                     geteuid() == 0 ? "sandbox=chroot" : "sandbox=namespace",
                                     "-o", debug ? "log_level=debug" : "log_level=warn"};
  if (writeback) argv_s.insert(argv_s.end(), {"-o", "writeback"});
  std::vector<char*> argv;
  for (auto& s : argv_s) argv.push_back(s.data());
  argv.push_back(nullptr);

  const pid_t parent = getpid();
  pid_ = fork();
  if (pid_ == 0) {
    // It must not outlive us, whatever way we die.
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(1);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    setsid();  // no terminal signals: it stops when we disconnect
    dup2(listener, 3);
    fcntl(3, F_SETFD, 0);  // dup2 onto itself would keep close-on-exec
    int null_fd = open("/dev/null", O_RDWR);
    dup2(null_fd, 0);
    dup2(log_fd >= 0 ? log_fd : null_fd, 1);
    dup2(log_fd >= 0 ? log_fd : null_fd, 2);
    execv(binary.c_str(), argv.data());
    _exit(127);
  }
  int err = errno;
  close(listener);
  if (log_fd >= 0) close(log_fd);
  if (pid_ < 0) throw std::runtime_error("cannot start virtiofsd: " + std::string(std::strerror(err)));
}

Backend::~Backend() {
  stop();
  unlink(socket_.c_str());
  unlink(log_.c_str());
  rmdir(dir_.c_str());
}

std::string Backend::diagnosis() const {
  std::ifstream in(log_);
  std::string line, last;
  while (std::getline(in, line))
    if (!line.empty()) last = line;
  return last.empty() ? "virtiofsd exited without a word" : "virtiofsd: " + last;
}

void Backend::stop() {
  if (pid_ <= 0) return;
  // It exits on its own once the frontend hangs up; insist only if it does not.
  if (!wait_exit(pid_, 3000)) {
    kill(pid_, SIGTERM);
    if (!wait_exit(pid_, 2000)) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  pid_ = -1;
}

}  // namespace virtiofs::mount_tool
