// A FUSE request as the session stages it into device memory, and the reply as it comes back.
// Built by the op builders in ops.hpp; validated by validate_reply before anyone reads it.
#pragma once

#include <linux/fuse.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <system_error>

namespace virtiofs::fuse {

// Largest fixed-size argument struct of any opcode we send (fuse_setattr_in is 88 bytes).
inline constexpr size_t kMaxInArgs = 128;
// Largest fixed-size reply struct (CREATE: fuse_entry_out + fuse_open_out = 144 bytes).
inline constexpr size_t kMaxOutArgs = 160;
inline constexpr size_t kMaxInPayloads = 5;

struct Frame {
  uint32_t opcode = 0;
  uint64_t nodeid = 0;
  std::array<std::byte, kMaxInArgs> args{};
  uint32_t args_len = 0;
  // Appended after the args, in order: names (with their NUL), link targets, write data.
  std::array<std::span<const std::byte>, kMaxInPayloads> in{};
  uint32_t in_count = 0;
  // Reply: a fixed struct of at most out_args_len bytes, then variable data into out_data.
  uint32_t out_args_len = 0;
  std::span<std::byte> out_data{};
  bool expects_reply = true;  // FORGET and BATCH_FORGET get none
  // The device may hand the reply room back with nothing written (INTERRUPT).
  bool reply_optional = false;

  template <class T>
  T& set_args(const T& value) {
    static_assert(sizeof(T) <= kMaxInArgs);
    std::memcpy(args.data(), &value, sizeof(T));
    args_len = sizeof(T);
    return *reinterpret_cast<T*>(args.data());
  }
  void add_in(std::span<const std::byte> bytes) { in[in_count++] = bytes; }
  size_t in_bytes() const {
    size_t n = sizeof(fuse_in_header) + args_len;
    for (uint32_t i = 0; i < in_count; ++i) n += in[i].size();
    return n;
  }
};

// A reply copied out of device memory into private memory, then validated.
struct Reply {
  fuse_out_header header{};
  std::array<std::byte, kMaxOutArgs> args{};
  uint32_t args_len = 0;  // bytes of the fixed struct received
  uint32_t data_len = 0;  // bytes of variable data received into the frame's out_data

  template <class T>
  bool get(T& out) const {
    if (args_len < sizeof(T)) return false;
    std::memcpy(&out, args.data(), sizeof(T));
    return true;
  }
};

// Checks what the device wrote: used_len covers the out header, the header's len equals used_len,
// unique matches, the error is in -4095..0 and an error reply carries nothing else.
// A violation sets `malformed` and returns io_error; otherwise returns the device's errno.
std::error_code validate_reply(const fuse_out_header& header, uint32_t used_len,
                               uint64_t expected_unique, bool& malformed);

}  // namespace virtiofs::fuse
