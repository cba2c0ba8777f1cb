#include "client/buffer_pool.hpp"

#include <utility>

namespace virtiofs::client {

namespace {
constexpr size_t kGrain = 4096;
}

BufferPool::BufferPool(std::span<std::byte> memory, std::shared_ptr<const void> keepalive)
    : keepalive_(std::move(keepalive)), base_(memory.data()) {
  if (memory.size() >= kGrain) free_[0] = memory.size() & ~(kGrain - 1);
}

std::span<std::byte> BufferPool::take(size_t bytes) {
  if (bytes == 0) return {};
  const size_t want = (bytes + kGrain - 1) & ~(kGrain - 1);
  std::lock_guard lock(mu_);
  for (auto it = free_.begin(); it != free_.end(); ++it) {
    if (it->second < want) continue;
    const size_t offset = it->first, left = it->second - want;
    free_.erase(it);
    if (left) free_[offset + want] = left;
    return {base_ + offset, bytes};
  }
  return {};
}

void BufferPool::give(std::span<std::byte> piece) {
  if (piece.empty()) return;
  size_t offset = static_cast<size_t>(piece.data() - base_);
  size_t len = (piece.size() + kGrain - 1) & ~(kGrain - 1);
  std::lock_guard lock(mu_);
  auto next = free_.lower_bound(offset);
  if (next != free_.end() && offset + len == next->first) {
    len += next->second;
    next = free_.erase(next);
  }
  if (next != free_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second == offset) {
      prev->second += len;
      return;
    }
  }
  free_[offset] = len;
}

}  // namespace virtiofs::client
