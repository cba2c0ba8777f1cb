// Prints a file of a virtio-fs share, giving up if the device takes longer than a deadline:
// every call takes a std::stop_token, and a stop ends the call with EINTR.
//   cancel /tmp/vfsd.sock notes/hello.txt
#include <virtiofs/client.hpp>

#include <fcntl.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <iostream>
#include <mutex>
#include <stop_token>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;

// [deadline]
// Stops `stop` after `timeout`, unless the returned thread is destroyed first.
std::jthread deadline(std::stop_source stop, std::chrono::milliseconds timeout) {
  return std::jthread([stop, timeout](std::stop_token finished) mutable {
    std::mutex mu;
    std::condition_variable_any cv;
    std::unique_lock lock(mu);
    if (!cv.wait_for(lock, finished, timeout, [&] { return finished.stop_requested(); }))
      stop.request_stop();
  });
}

// Reads the whole file; a stop of `stop` ends the read in progress with EINTR.
std::error_code read_all(virtiofs::Client& fs, const virtiofs::File& file, std::string& out,
                         std::stop_token stop) {
  std::vector<std::byte> buf(fs.negotiated().max_read);
  for (uint64_t offset = 0;;) {
    size_t n = 0;
    if (auto ec = fs.read(file.inode(), file.handle(), offset, buf, n, stop)) return ec;
    if (n == 0) return {};
    out.append(reinterpret_cast<const char*>(buf.data()), n);
    offset += n;
  }
}
// [deadline]

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: cancel SOCKET PATH\n";
    return 2;
  }
  try {
    auto fs = virtiofs::Client::connect({.socket_path = argv[1]});
    virtiofs::File file;
    if (auto ec = fs->open_file(argv[2], O_RDONLY, file)) {
      std::cerr << "cancel: " << argv[2] << ": " << ec.message() << "\n";
      return 1;
    }
    // [stop]
    std::stop_source stop;
    std::string text;
    std::error_code ec;
    {
      auto watchdog = deadline(stop, 10s);
      ec = read_all(*fs, file, text, stop.get_token());
    }  // the watchdog stops and joins here
    if (ec == std::errc::interrupted) {
      std::cerr << "cancel: " << argv[2] << ": no answer within 10 s\n";
      return 1;
    }
    // [stop]
    if (ec) {
      std::cerr << "cancel: " << argv[2] << ": " << ec.message() << "\n";
      return 1;
    }
    // [stopped]
    // A token already stopped: EINTR before anything is sent.
    std::stop_source cancelled;
    cancelled.request_stop();
    virtiofs::Attr attr;
    if (fs->getattr(file.inode(), attr, cancelled.get_token()) != std::errc::interrupted) {
      std::cerr << "cancel: a call with a stopped token did not end with EINTR\n";
      return 1;
    }
    // [stopped]
    std::cout << text;
    file.close();
    fs->close();
  } catch (const std::system_error& e) {
    std::cerr << "cancel: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
