#include "support/chain_bytes.hpp"

#include <algorithm>
#include <cstring>

namespace virtiofs::test {

std::vector<std::byte> gather_readable(const DeviceChain& chain) {
  std::vector<std::byte> bytes;
  for (const auto& b : chain.buffers)
    if (!b.writable) bytes.insert(bytes.end(), b.ptr, b.ptr + b.len);
  return bytes;
}

std::optional<fuse_in_header> request_header(const DeviceChain& chain) {
  const std::vector<std::byte> bytes = gather_readable(chain);
  if (bytes.size() < sizeof(fuse_in_header)) return std::nullopt;
  fuse_in_header h;
  std::memcpy(&h, bytes.data(), sizeof(h));
  return h;
}

size_t writable_bytes(const DeviceChain& chain) {
  size_t n = 0;
  for (const auto& b : chain.buffers)
    if (b.writable) n += b.len;
  return n;
}

uint32_t scatter(const DeviceChain& chain, std::span<const std::byte> reply) {
  size_t done = 0;
  for (const auto& b : chain.buffers) {
    if (!b.writable || done == reply.size()) continue;
    const size_t n = std::min<size_t>(b.len, reply.size() - done);
    std::memcpy(b.ptr, reply.data() + done, n);
    done += n;
  }
  return static_cast<uint32_t>(done);
}

std::vector<std::byte> make_reply(uint64_t unique, int32_t error, std::span<const std::byte> payload) {
  fuse_out_header out{};
  out.unique = unique;
  out.error = error;
  out.len = static_cast<uint32_t>(sizeof(out) + payload.size());
  std::vector<std::byte> bytes(out.len);
  std::memcpy(bytes.data(), &out, sizeof(out));
  std::copy(payload.begin(), payload.end(), bytes.begin() + sizeof(out));
  return bytes;
}

}  // namespace virtiofs::test
