// Prints a file of a virtio-fs share read with no copy: the device writes the data straight
// into registered memory (an IoBuffer), with many reads in flight at once whose callbacks run
// on the library's completion threads.
//   zero_copy /tmp/vfsd.sock big.bin > copy.bin
#include <virtiofs/client.hpp>

#include <fcntl.h>

#include <algorithm>
#include <cstdint>
#include <iostream>
#include <latch>
#include <mutex>
#include <system_error>
#include <vector>

namespace {

constexpr size_t kWindow = 8u << 20;  // bytes read at once

// [parallel]
// Fills `window` from the file at `offset`, one READ per max_read bytes, all in flight at
// once. `got`: the bytes read, fewer than the window only at the end of the file.
std::error_code read_window(virtiofs::Client& fs, const virtiofs::File& file, uint64_t offset,
                            const virtiofs::IoBuffer& window, size_t& got) {
  const size_t piece = fs.negotiated().max_read;
  const size_t pieces = (window.size() + piece - 1) / piece;
  struct State {
    std::latch done;
    std::vector<size_t> counts;
    std::mutex mu;
    std::error_code error;  // the first one
  } state{std::latch(static_cast<std::ptrdiff_t>(pieces)), std::vector<size_t>(pieces)};
  for (size_t i = 0; i < pieces; ++i) {
    const auto buf = window.span().subspan(i * piece, std::min(piece, window.size() - i * piece));
    // Runs on a completion thread. Two pointer-sized captures: no allocation.
    fs.read(file.inode(), file.handle(), offset + i * piece, buf,
            [s = &state, i](std::error_code ec, size_t n) {
              s->counts[i] = n;
              if (ec) {
                std::lock_guard lock(s->mu);
                if (!s->error) s->error = ec;
              }
              s->done.count_down();
            });
  }
  state.done.wait();  // the buffers and `state` must outlive every callback
  got = 0;
  for (size_t i = 0; i < pieces && got == i * piece; ++i) got += state.counts[i];
  return state.error;
}
// [parallel]

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: zero_copy SOCKET PATH\n";
    return 2;
  }
  try {
    // [buffer]
    auto fs = virtiofs::Client::connect({.socket_path = argv[1], .registered_memory_bytes = kWindow});
    virtiofs::IoBuffer window = fs->allocate_buffer(kWindow);  // throws ENOMEM past the reserve
    // [buffer]
    virtiofs::File file;
    if (auto ec = fs->open_file(argv[2], O_RDONLY, file)) {
      std::cerr << "zero_copy: " << argv[2] << ": " << ec.message() << "\n";
      return 1;
    }
    for (uint64_t offset = 0;;) {
      size_t got = 0;
      if (auto ec = read_window(*fs, file, offset, window, got)) {
        std::cerr << "zero_copy: " << argv[2] << ": " << ec.message() << "\n";
        return 1;
      }
      std::cout.write(reinterpret_cast<const char*>(window.data()), static_cast<std::streamsize>(got));
      offset += got;
      if (got < window.size()) break;
    }
    // [stats]
    const virtiofs::Stats stats = fs->stats();
    std::cerr << "zero_copy: " << stats.requests << " requests, " << stats.zero_copy_bytes
              << " bytes through IoBuffers, " << stats.waits << " waited for ring space\n";
    // [stats]
    file.close();
    fs->close();
  } catch (const std::system_error& e) {
    std::cerr << "zero_copy: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
