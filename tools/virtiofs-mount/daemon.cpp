#include "daemon.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace virtiofs::mount_tool {

Daemon::Daemon(bool foreground) : foreground_(foreground) {
  if (foreground_) return;
  if (pipe2(pipe_, O_CLOEXEC) != 0) {
    std::perror("virtiofs-mount: pipe");
    std::exit(1);
  }
  const pid_t pid = fork();
  if (pid < 0) {
    std::perror("virtiofs-mount: fork");
    std::exit(1);
  }
  parent_ = pid > 0;
  if (parent_) {
    close(pipe_[1]);
  } else {
    close(pipe_[0]);
    setsid();
  }
}

int Daemon::wait_verdict() {
  char status = 1;
  ssize_t n;
  do {
    n = read(pipe_[0], &status, 1);
  } while (n < 0 && errno == EINTR);
  if (n != 1) {
    std::fprintf(stderr, "virtiofs-mount: the daemon died while mounting\n");
    return 1;
  }
  return status;
}

int Daemon::failed(const std::string& message) {
  std::fprintf(stderr, "virtiofs-mount: %s\n", message.c_str());
  if (!foreground_ && pipe_[1] >= 0) {
    char status = 1;
    [[maybe_unused]] ssize_t n = write(pipe_[1], &status, 1);
    close(pipe_[1]);
    pipe_[1] = -1;
  }
  return 1;
}

void Daemon::succeeded() {
  if (foreground_ || pipe_[1] < 0) return;
  [[maybe_unused]] int rc = chdir("/");
  int null_fd = open("/dev/null", O_RDWR);
  if (null_fd >= 0) {
    dup2(null_fd, 0);
    dup2(null_fd, 1);
    dup2(null_fd, 2);
    if (null_fd > 2) close(null_fd);
  }
  char status = 0;
  [[maybe_unused]] ssize_t n = write(pipe_[1], &status, 1);
  close(pipe_[1]);
  pipe_[1] = -1;
}

}  // namespace virtiofs::mount_tool
