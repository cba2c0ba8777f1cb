// Where FUSE-over-io_uring entries go in device memory. In physical-address mode (VFIO without
// ACCESS_PLATFORM) only each hugepage granule is physically contiguous, and a device buffer that
// crosses a granule boundary cannot be handed to the device (EFAULT). So no head block and no
// payload may straddle one: all payloads are packed first (two 1 MiB payloads fill a 2 MiB
// granule exactly), then all head blocks, each piece moved to the next boundary if it would cross.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace virtiofs::mount {

struct EntryPlace {
  size_t head;     // offset of the entry's head block from the memory's start
  size_t payload;  // offset of its payload
};

struct EntryCarving {
  std::vector<EntryPlace> entries;
  size_t bytes = 0;  // memory used, from the start to the end of the last piece
};

// `start` is the memory's offset inside its granule (its address modulo `granule`). Pieces
// larger than a granule cannot be placed and yield an empty carving.
inline EntryCarving carve_entries(size_t count, size_t head_bytes, size_t payload_bytes,
                                  size_t granule, size_t start) {
  EntryCarving c;
  if (head_bytes > granule || payload_bytes > granule || granule == 0) return c;
  size_t at = start % granule;  // absolute position within the granule grid
  const size_t origin = at;
  auto place = [&](size_t bytes) {
    if (at / granule != (at + bytes - 1) / granule) at = (at / granule + 1) * granule;
    const size_t off = at - origin;
    at += bytes;
    return off;
  };
  c.entries.resize(count);
  for (auto& e : c.entries) e.payload = place(payload_bytes);
  for (auto& e : c.entries) e.head = place(head_bytes);
  c.bytes = at - origin;
  return c;
}

// Bytes that hold `count` entries wherever the memory starts: the carving from a granule
// boundary, plus one granule for a start anywhere inside one.
inline size_t entry_memory_bytes(size_t count, size_t head_bytes, size_t payload_bytes, size_t granule) {
  return carve_entries(count, head_bytes, payload_bytes, granule, 0).bytes + granule;
}

}  // namespace virtiofs::mount
