// Parsing READDIR / READDIRPLUS replies. The buffer comes from the device: every record's
// length, name length and name bytes are checked before use.
#pragma once

#include <cstddef>
#include <functional>
#include <span>
#include <string_view>
#include <system_error>

#include "virtiofs/types.hpp"

namespace virtiofs::fuse {

struct DirentView {
  uint64_t ino;
  uint64_t offset;
  uint32_t type;
  std::string_view name;
  const Entry* entry;  // READDIRPLUS only (nullptr otherwise); entry->inode 0 = no lookup taken
};

// Calls visit for each record; stops early when visit returns false. Returns io_error for a
// truncated or malformed record (the records before it have been visited).
std::error_code parse_dirents(std::span<const std::byte> buf, bool plus,
                              const std::function<bool(const DirentView&)>& visit);

}  // namespace virtiofs::fuse
