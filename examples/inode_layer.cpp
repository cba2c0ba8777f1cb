// Prints a file of a virtio-fs share through the inode layer: one call per FUSE request, and
// every lookup reference a reply hands out given back with forget.
//   inode_layer /tmp/vfsd.sock notes/hello.txt
#include <virtiofs/client.hpp>

#include <fcntl.h>

#include <cstdint>
#include <iostream>
#include <string_view>
#include <system_error>
#include <vector>

namespace {

// [lookup]
// Looks up each name of `path` ("a/b/c": names only, no "." or ".."; Client::resolve takes any
// path) from the root. A successful lookup hands the caller one reference to the inode it
// returns; the directory the walk leaves is given back at once. On success the caller owns one
// reference to `out` (none when `out` is the root, which is never looked up nor forgotten).
std::error_code walk(virtiofs::Client& fs, std::string_view path, virtiofs::Inode& out) {
  virtiofs::Inode dir = virtiofs::kRootInode;
  while (!path.empty()) {
    const size_t slash = path.find('/');
    const std::string_view name = path.substr(0, slash);
    path = slash == path.npos ? std::string_view() : path.substr(slash + 1);
    if (name.empty()) continue;  // "/a//b"
    virtiofs::Entry entry;
    const std::error_code ec = fs.lookup(dir, name, entry);
    fs.forget(dir, 1);  // past `dir` (a no-op for the root)
    if (ec) return ec;
    dir = entry.inode;
  }
  out = dir;
  return {};
}
// [lookup]

// [read]
// Opens the inode, copies it to stdout in pieces of the size INIT settled, releases the handle.
std::error_code print_file(virtiofs::Client& fs, virtiofs::Inode inode) {
  virtiofs::OpenFile file;
  if (auto ec = fs.open(inode, O_RDONLY, file)) return ec;
  std::vector<std::byte> buf(fs.negotiated().max_read);
  std::error_code ec;
  for (uint64_t offset = 0;;) {
    size_t n = 0;
    if ((ec = fs.read(inode, file.fh, offset, buf, n)) || n == 0) break;
    std::cout.write(reinterpret_cast<const char*>(buf.data()), static_cast<std::streamsize>(n));
    offset += n;
  }
  fs.release(inode, file.fh);
  return ec;
}
// [read]

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: inode_layer SOCKET PATH\n";
    return 2;
  }
  try {
    auto fs = virtiofs::Client::connect({.socket_path = argv[1]});
    // [main]
    virtiofs::Inode inode = 0;
    std::error_code ec = walk(*fs, argv[2], inode);
    if (!ec) {
      ec = print_file(*fs, inode);
      fs->forget(inode, 1);  // the walk's reference
    }
    // [main]
    if (ec) {
      std::cerr << "inode_layer: " << argv[2] << ": " << ec.message() << "\n";
      return 1;
    }
    fs->close();
  } catch (const std::system_error& e) {
    std::cerr << "inode_layer: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
