// Test fixture: what a device reads from and writes into a chain it took, for tests that answer
// by hand (exact bytes, malformed replies) instead of through FsServer.
#pragma once

#include <linux/fuse.h>

#include <cstddef>
#include <optional>
#include <span>
#include <vector>

#include "support/device_model.hpp"

namespace virtiofs::test {

// The chain's readable bytes, in order (the whole request).
std::vector<std::byte> gather_readable(const DeviceChain& chain);
// The request's fuse_in_header, when the readable part holds one.
std::optional<fuse_in_header> request_header(const DeviceChain& chain);
// Total room the driver gave for the reply.
size_t writable_bytes(const DeviceChain& chain);
// Scatters `reply` over the writable buffers (as much as fits); returns the bytes written, the
// length a device would report in the used element.
uint32_t scatter(const DeviceChain& chain, std::span<const std::byte> reply);
// A well-formed reply: out header (len, error, unique) followed by payload.
std::vector<std::byte> make_reply(uint64_t unique, int32_t error, std::span<const std::byte> payload = {});

}  // namespace virtiofs::test
