// Prints a file of a virtio-fs share: connects to a vhost-user-fs backend such as virtiofsd,
// reads the file with one call and writes it to stdout.
//   virtiofsd --socket-path=/tmp/vfsd.sock -o source=DIR -o sandbox=chroot &
//   read_file /tmp/vfsd.sock hello.txt
#include <virtiofs/client.hpp>

#include <iostream>
#include <string>
#include <system_error>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: read_file SOCKET PATH\n";
    return 2;
  }
  // [connect]
  try {
    auto fs = virtiofs::Client::connect({.socket_path = argv[1]});
    // [read]
    std::string text;
    if (auto ec = fs->read_file(argv[2], text)) {  // errors from here on: std::error_code
      std::cerr << "read_file: " << argv[2] << ": " << ec.message() << "\n";
      return 1;
    }
    std::cout << text;
    // [read]
    fs->close();
  } catch (const std::system_error& e) {  // connect names what went wrong and the fix
    std::cerr << "read_file: " << e.what() << "\n";
    return 1;
  }
  // [connect]
  return 0;
}
