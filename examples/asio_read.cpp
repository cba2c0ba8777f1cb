// Prints a file of a virtio-fs share with Boost.Asio: a C++20 coroutine looks the file up, opens
// it, reads it piece by piece and releases it, through virtiofs/asio.hpp (needs the Boost
// headers, 1.81 or later; no Boost library to link).
//   virtiofsd --socket-path=/tmp/vfsd.sock -o source=DIR -o sandbox=chroot &
//   asio_read /tmp/vfsd.sock notes/hello.txt
#include <fcntl.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <algorithm>
#include <iostream>
#include <string>
#include <system_error>
#include <virtiofs/asio.hpp>
#include <virtiofs/client.hpp>

namespace net = boost::asio;

// [asio-read]
// Looks `path` ("dir/file") up one name at a time; the entry holds one lookup reference.
net::awaitable<virtiofs::Entry> walk(virtiofs::asio::Connection& fs, std::string path) {
  virtiofs::Entry at{.inode = virtiofs::kRootInode};
  for (size_t start = 0; start < path.size();) {
    const size_t end = std::min(path.find('/', start), path.size());
    if (end > start) {
      virtiofs::Entry next = co_await fs.async_lookup(at.inode, path.substr(start, end - start),
                                                      net::use_awaitable);
      fs.client().forget(at.inode, 1);  // done with the directory (the root: a no-op)
      at = next;
    }
    start = end + 1;
  }
  co_return at;
}

// Reads the file at `path`; failures come as boost::system::system_error.
net::awaitable<std::string> read_file(virtiofs::asio::Connection& fs, std::string path) {
  const virtiofs::Entry entry = co_await walk(fs, path);
  const virtiofs::OpenFile file = co_await fs.async_open(entry.inode, O_RDONLY, net::use_awaitable);
  std::string text, piece(64 * 1024, '\0');
  for (;;) {
    const size_t n = co_await fs.async_read(entry.inode, file.fh, text.size(), net::buffer(piece),
                                            net::use_awaitable);
    text.append(piece, 0, n);
    if (n == 0) break;  // end of file
  }
  co_await fs.async_release(entry.inode, file.fh, 0, net::use_awaitable);
  fs.client().forget(entry.inode, 1);  // the lookup's reference
  co_return text;
}

int run(const char* socket, const char* path) {
  auto client = virtiofs::Client::connect({.socket_path = socket});
  net::io_context io;
  virtiofs::asio::Connection fs(io, *client);
  net::co_spawn(io, read_file(fs, path), [](std::exception_ptr error, std::string text) {
    if (error) std::rethrow_exception(error);  // out of io.run()
    std::cout << text;
  });
  io.run();  // returns once the coroutine is done
  client->close();
  return 0;
}
// [asio-read]

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: asio_read SOCKET PATH\n";
    return 2;
  }
  try {
    return run(argv[1], argv[2]);
  } catch (const std::system_error& e) {  // connect names what went wrong
    std::cerr << "asio_read: " << e.what() << "\n";
  } catch (const boost::system::system_error& e) {
    std::cerr << "asio_read: " << argv[2] << ": " << e.code().message() << "\n";
  }
  return 1;
}
