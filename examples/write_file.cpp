// Writes stdin to a file of a virtio-fs share (created or truncated), through the library:
//   echo hello | write_file /tmp/vfsd.sock notes/hello.txt
#include <virtiofs/client.hpp>

#include <iostream>
#include <iterator>
#include <span>
#include <string>
#include <system_error>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: write_file SOCKET PATH < DATA\n";
    return 2;
  }
  std::string data{std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>()};
  try {
    auto fs = virtiofs::Client::connect({.socket_path = argv[1]});
    // [write]
    if (auto ec = fs->write_file(argv[2], std::as_bytes(std::span(data)))) {
      std::cerr << "write_file: " << argv[2] << ": " << ec.message() << "\n";
      return 1;
    }
    // [write]
    fs->close();
  } catch (const std::system_error& e) {
    std::cerr << "write_file: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
