// The bridge's per-request record and per-reader state, shared by the files that make up the
// bridge (bridge.cpp: reading and forwarding; bridge_reply.cpp: replies; bridge_init.cpp: INIT).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <thread>

#include "mount/bridge.hpp"

namespace virtiofs::mount {

// One request on its way through the bridge. Its heads live in device memory for good; payload
// chunks are borrowed from the pool while it is in flight.
struct Bridge::Request : fs::Call {
  Bridge* bridge = nullptr;
  uint32_t index = 0;
  std::byte* in_head = nullptr;
  std::byte* out_head = nullptr;
  uint32_t out_dirty = 0;  // out_head's prefix that may hold an earlier reply (reply_room.hpp)
  int fd = -1;             // the clone the request came from: its reply must go back there
  uint64_t unique = 0;
  uint32_t opcode = 0;
  bool lock_wait = false;  // a SETLKW sent as SETLK, asked again while busy (remote_locks)
  bool busy_eacces = false;  // a POSIX lock wait: EACCES may mean busy too (never for flock)
  std::array<uint32_t, kLandingChunks + 1> chunks{};  // request payload, then reply room
  uint32_t chunk_count = 0;
  std::array<fs::DeviceBuffer, 1 + kLandingChunks> in{};
  std::array<fs::DeviceBuffer, 2 + kLandingChunks> out{};
  fs::RawMessage message;
};

struct Bridge::Reader {
  int fd = -1;
  std::thread thread;
  Request* landing = nullptr;  // the record the next read lands in
  std::array<uint32_t, kLandingChunks> chunks{};
  uint32_t chunk_count = 0;
  // Held while this reader polls (poll_us): its queue's interrupts are off meanwhile, so it
  // is dropped before anything that may block (the replies that would free it come through it).
  std::optional<fs::Session::Poller> poller;
  bool nonblocking = false;  // the clone's O_NONBLOCK, as last set
};

}  // namespace virtiofs::mount
