// Prints a file of a virtio-fs share with asynchronous reads whose callbacks run on the
// application's own thread: it polls the client's completion fds in its event loop (here
// poll(2); epoll, io_uring or an Asio descriptor work the same way).
//   event_loop /tmp/vfsd.sock notes/hello.txt
#include <virtiofs/client.hpp>

#include <fcntl.h>
#include <poll.h>

#include <cstdint>
#include <iostream>
#include <system_error>
#include <vector>

namespace {

// Reads a file one piece after another, each read started by the previous one's callback.
struct Reader {
  virtiofs::Client& fs;
  virtiofs::File& file;
  std::vector<std::byte> buf;
  uint64_t offset = 0;
  bool done = false;
  std::error_code error;

  // [async]
  void next() {
    fs.read(file.inode(), file.handle(), offset, buf, [this](std::error_code ec, size_t n) {
      // Runs inside process_completions, on the loop's thread: no lock needed.
      if (ec || n == 0) {
        error = ec;
        done = true;
        return;
      }
      std::cout.write(reinterpret_cast<const char*>(buf.data()), static_cast<std::streamsize>(n));
      offset += n;
      next();
    });
  }
  // [async]
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: event_loop SOCKET PATH\n";
    return 2;
  }
  try {
    // [options]
    auto fs = virtiofs::Client::connect({.socket_path = argv[1], .app_reaps_completions = true});
    // [options]
    virtiofs::File file;  // blocking calls need no help from the loop
    if (auto ec = fs->open_file(argv[2], O_RDONLY, file)) {
      std::cerr << "event_loop: " << argv[2] << ": " << ec.message() << "\n";
      return 1;
    }
    Reader reader{*fs, file, std::vector<std::byte>(fs->negotiated().max_read)};
    reader.next();
    // [loop]
    std::vector<pollfd> fds;
    for (unsigned q = 0; q < fs->num_request_queues(); ++q)
      fds.push_back({.fd = fs->completion_fd(q), .events = POLLIN});
    while (!reader.done) {
      if (poll(fds.data(), fds.size(), 10'000) <= 0) break;  // a real loop retries EINTR
      for (unsigned q = 0; q < fds.size(); ++q)
        if (fds[q].revents & POLLIN) fs->process_completions(q);  // runs the callbacks
    }
    // [loop]
    if (!reader.done) {
      fs->close();  // ends the read still pending (its callback runs here) while `reader` lives
      std::cerr << "event_loop: " << argv[2] << ": no completion within 10 s\n";
      return 1;
    }
    if (reader.error) {
      std::cerr << "event_loop: " << argv[2] << ": " << reader.error.message() << "\n";
      return 1;
    }
    file.close();
    fs->close();
  } catch (const std::system_error& e) {
    std::cerr << "event_loop: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
