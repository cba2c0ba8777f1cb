#include "support/virtiofsd.hpp"

#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace virtiofs::test {

const char* virtiofsd_binary() { return VIRTIOFS_VIRTIOFSD; }

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "virtiofs-test-XXXXXX").string();
  if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

bool is_listening(const std::string& socket_path) {
  std::ifstream table("/proc/net/unix");
  std::string line;
  while (std::getline(table, line)) {
    // Num RefCount Protocol Flags Type St Inode Path; Flags 00010000 = __SO_ACCEPTCON (listening)
    std::istringstream fields(line);
    std::string num, ref, proto, flags, type, state, inode, path;
    if (fields >> num >> ref >> proto >> flags >> type >> state >> inode >> path &&
        path == socket_path && flags == "00010000")
      return true;
  }
  return false;
}

Virtiofsd::Virtiofsd(const std::string& shared_dir, std::vector<std::string> extra_options)
    : socket_(socket_dir_ / "vfsd.sock") {
  std::vector<std::string> args = {virtiofsd_binary(), "--socket-path=" + socket_,
                                   "-o",               "source=" + shared_dir,
                                   "-o",               "sandbox=chroot",
                                   "-o",               "cache=auto",
                                   "-o",               "log_level=warn"};
  args.insert(args.end(), extra_options.begin(), extra_options.end());
  pid_ = spawn_listening(args, socket_, "virtiofsd");
}

pid_t spawn_listening(std::vector<std::string> args, const std::string& socket_path,
                      const std::string& what) {
  pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  // Ready when the socket listens. A probe connect would use up the one connection the backend
  // serves, so read the kernel's table instead.
  for (int i = 0; i < 500; ++i) {
    if (is_listening(socket_path)) return pid;
    int status;
    if (waitpid(pid, &status, WNOHANG) == pid)
      throw std::runtime_error(what + " exited at start: " + args[0]);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  throw std::runtime_error(what + " did not create its socket");
}

BackendProcess::~BackendProcess() {
  if (pid_ > 0 && !wait_exit(2000)) kill_now();
}

int BackendProcess::open_fds() const {
  int n = 0;
  DIR* d = opendir(("/proc/" + std::to_string(pid_) + "/fd").c_str());
  if (!d) return -1;
  while (dirent* e = readdir(d))
    if (e->d_name[0] != '.') ++n;
  closedir(d);
  return n;
}

void BackendProcess::kill_now() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

bool BackendProcess::wait_exit(int timeout_ms) {
  if (pid_ <= 0) return true;
  for (int waited = 0; waited <= timeout_ms; waited += 5) {
    if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
      pid_ = -1;
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

}  // namespace virtiofs::test
