// Test fixture: memory whose pages are not there until the test says so (userfaultfd). A thread
// that writes into it stops inside the kernel at its first write until release(), so a test can
// hold a thread in the middle of copying a reply out, at an exact point, for as long as it likes.
#pragma once

#include <chrono>
#include <cstddef>
#include <span>
#include <string>

namespace virtiofs::test {

class StallingBuffer {
 public:
  explicit StallingBuffer(size_t bytes);
  ~StallingBuffer();  // releases any stalled thread first
  StallingBuffer(const StallingBuffer&) = delete;
  StallingBuffer& operator=(const StallingBuffer&) = delete;

  // Empty when this machine has no userfaultfd for us (then data() is empty too).
  const std::string& unavailable_reason() const { return reason_; }
  std::span<std::byte> data() const { return {base_, reason_.empty() ? bytes_ : 0}; }
  // Waits until some thread touched the buffer and stalls there; false at the deadline.
  bool wait_for_stall(std::chrono::milliseconds timeout);
  // Maps zeroed pages over the whole buffer: stalled threads go on, and no later access stalls.
  void release();

 private:
  std::byte* base_ = nullptr;
  size_t bytes_ = 0;
  int uffd_ = -1;
  bool released_ = false;
  std::string reason_;
};

}  // namespace virtiofs::test
