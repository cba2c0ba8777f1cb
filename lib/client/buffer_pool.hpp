// Hands out pieces of the application's device memory (SessionOptions::app_memory_bytes) for
// IoBuffers: first fit over a free list of 4 KiB-aligned ranges, merged on release. Setup-rate
// operations, so a lock and a std::map are fine.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <span>

namespace virtiofs::client {

// Shared by the Client and every IoBuffer it handed out, so a buffer destroyed after the Client
// still finds its pool, and `memory` stays mapped (keepalive) while any of them lives.
class BufferPool {
 public:
  BufferPool(std::span<std::byte> memory, std::shared_ptr<const void> keepalive);
  // A piece of at least `bytes` (rounded up to 4 KiB), or an empty span when none is free.
  std::span<std::byte> take(size_t bytes);
  void give(std::span<std::byte> piece);

 private:
  std::shared_ptr<const void> keepalive_;  // owns the mapping base_ points into
  std::mutex mu_;                          // guards free_
  std::byte* base_;
  std::map<size_t, size_t> free_;  // offset -> length
};

}  // namespace virtiofs::client
