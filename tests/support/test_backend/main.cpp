// virtiofs-test-backend: a vhost-user-fs backend for tests only. Serves an in-memory file system on
// N request queues, can delay, reorder and hold requests, injects the faults a test names, and
// writes per-queue counts when the frontend goes away. Debian's virtiofsd stays the real backend;
// this one covers what it cannot do (several request queues, INTERRUPT, misbehaviour).
//
//   virtiofs-test-backend --socket PATH [--queues N] [--tag T] [--no-config] [--delay-us US]
//       [--reorder] [--hold OPCODE [--hold-ms MS]] [--fault KIND[=VALUE][@OPCODE][#N]]... [--stats FILE]
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <stdexcept>
#include <string>

#include "support/test_backend/fault_plan.hpp"
#include "support/test_backend/fs_server.hpp"
#include "support/test_backend/memfs.hpp"
#include "support/test_backend/vhost_user_device.hpp"

using namespace virtiofs::test;

namespace {

[[noreturn]] void usage(const std::string& why) {
  std::cerr << "virtiofs-test-backend: " << why
            << "\nusage: virtiofs-test-backend --socket PATH [--queues N] [--tag T] [--no-config]"
               " [--delay-us US] [--reorder] [--hold OPCODE [--hold-ms MS]]"
               " [--fault KIND[=VALUE][@OPCODE][#N]]... [--stats FILE]\nfaults:";
  for (const auto& k : FaultPlan::kind_names()) std::cerr << " " << k;
  std::cerr << "\n";
  exit(2);
}

int listen_on(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) usage("socket path too long");
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  unlink(path.c_str());
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || listen(fd, 1) != 0) {
    perror(("virtiofs-test-backend: " + path).c_str());
    exit(1);
  }
  return fd;
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  std::string socket_path, stats_path;
  DeviceConfig config;
  ServerOptions options;
  FaultPlan faults;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      auto value = [&]() -> std::string {
        if (i + 1 >= argc) usage(a + " needs a value");
        return argv[++i];
      };
      if (a == "--socket") socket_path = value();
      else if (a == "--queues") config.request_queues = static_cast<unsigned>(std::stoul(value()));
      else if (a == "--tag") config.tag = value();
      else if (a == "--no-config") config.offer_config = false;
      else if (a == "--delay-us") options.delay_us = static_cast<unsigned>(std::stoul(value()));
      else if (a == "--reorder") options.reorder = true;
      else if (a == "--hold") {
        const std::string op = value();
        options.hold = opcode_by_name(op);
        if (!options.hold) usage("unknown opcode '" + op + "'");
      } else if (a == "--hold-ms") options.hold_ms = static_cast<unsigned>(std::stoul(value()));
      else if (a == "--fault") faults.add(value());
      else if (a == "--stats") stats_path = value();
      else usage("unknown argument '" + a + "'");
    }
  } catch (const std::exception& e) {
    usage(e.what());
  }
  if (socket_path.empty()) usage("--socket is required");
  if (config.request_queues == 0 || config.request_queues > 64) usage("--queues must be 1..64");

  const int listener = listen_on(socket_path);
  const int conn = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
  close(listener);
  unlink(socket_path.c_str());  // one frontend per run, as virtiofsd
  if (conn < 0) return 1;

  MemFs fs;
  FsServer server(fs, faults, options);
  {
    VhostUserDevice device(config, server);
    server.attach(device);
    device.serve(conn);
    server.detach();
  }
  close(conn);
  if (!stats_path.empty()) {
    std::ofstream(stats_path) << server.stats_text();
  }
  return 0;
}
