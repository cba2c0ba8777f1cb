// A long-lived user of a virtio-fs share that outlives its backend: for each line on stdin it
// prints PATH, and when the backend has gone (virtiofsd serves one connection, then exits) it
// connects to the new one a supervisor started on the same socket, and carries on.
//   reconnect /tmp/vfsd.sock notes/hello.txt
#include <virtiofs/client.hpp>
#include <virtiofs/log.hpp>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>

namespace {

using namespace std::chrono_literals;

// [connect]
// A new Client on the backend listening at `socket`, waiting up to 10 s for one to appear.
std::unique_ptr<virtiofs::Client> connect_when_ready(const std::string& socket) {
  for (int attempt = 1;; ++attempt) {
    try {
      return virtiofs::Client::connect({.socket_path = socket});
    } catch (const std::system_error&) {
      if (attempt == 100) throw;
      std::this_thread::sleep_for(100ms);
    }
  }
}
// [connect]

// [reconnect]
// Reads `path`. A failed client stays failed (ENOTCONN: the backend went away; EIO: it broke
// the protocol), so the read is retried once on a new client. Paths survive a new backend;
// inode numbers, file handles and lookup references do not.
std::error_code read_file(std::unique_ptr<virtiofs::Client>& fs, const std::string& socket,
                          const std::string& path, std::string& out) {
  std::error_code ec = fs->read_file(path, out);
  if (!fs->failure()) return ec;  // healthy: ec is the answer, errors included
  std::fprintf(stderr, "reconnect: client failed (%s), connecting again\n",
               fs->failure().message().c_str());
  fs = connect_when_ready(socket);  // the old Client is destroyed here
  out.clear();
  return fs->read_file(path, out);
}
// [reconnect]

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: reconnect SOCKET PATH < REQUESTS\n";
    return 2;
  }
  // [log]
  // The library's own messages (a device lost, a reply that broke the protocol), one line each,
  // from any thread: the sink must be thread-safe (one fprintf is).
  virtiofs::set_log_sink([](virtiofs::LogLevel level, std::string_view message) {
    std::fprintf(stderr, "reconnect: libvirtiofs %s: %.*s\n", virtiofs::log_level_name(level),
                 static_cast<int>(message.size()), message.data());
  });
  // [log]
  try {
    const std::string socket = argv[1];
    auto fs = connect_when_ready(socket);
    for (std::string request; std::getline(std::cin, request);) {
      std::string text;
      if (auto ec = read_file(fs, socket, argv[2], text)) {
        std::cerr << "reconnect: " << argv[2] << ": " << ec.message() << "\n";
        return 1;
      }
      std::cout << text << std::flush;
    }
    fs->close();
  } catch (const std::system_error& e) {
    std::cerr << "reconnect: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
