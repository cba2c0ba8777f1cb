// Fixed-size buffers in device memory for payloads too big for a request slot. Bounded: when it
// runs dry, requests wait for completions to return chunks (backpressure by memory).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace virtiofs::fs {

class ChunkPool {
 public:
  ChunkPool() = default;
  ChunkPool(std::byte* base, size_t chunk_bytes, uint32_t count)
      : base_(base), chunk_bytes_(chunk_bytes), count_(count) {
    free_.reserve(count);
    for (uint32_t i = count; i > 0; --i) free_.push_back(i - 1);
  }
  size_t chunk_bytes() const { return chunk_bytes_; }
  size_t available() const { return free_.size(); }
  size_t capacity() const { return count_; }
  uint32_t take() {
    uint32_t i = free_.back();
    free_.pop_back();
    return i;
  }
  void give(uint32_t i) { free_.push_back(i); }
  std::byte* at(uint32_t i) const { return base_ + static_cast<size_t>(i) * chunk_bytes_; }
  // Chunks needed for `bytes` beyond what fits inline.
  uint32_t needed(size_t bytes, size_t inline_bytes) const {
    if (bytes <= inline_bytes) return 0;
    return static_cast<uint32_t>((bytes - inline_bytes + chunk_bytes_ - 1) / chunk_bytes_);
  }

 private:
  std::byte* base_ = nullptr;
  size_t chunk_bytes_ = 0;
  size_t count_ = 0;
  std::vector<uint32_t> free_;  // reserved up front: never allocates after setup
};

}  // namespace virtiofs::fs
