#include "fuse/dirent.hpp"

#include <linux/fuse.h>

#include <cstring>

#include "fuse/ops.hpp"

namespace virtiofs::fuse {

std::error_code parse_dirents(std::span<const std::byte> buf, bool plus,
                              const std::function<bool(const DirentView&)>& visit) {
  const auto malformed = std::make_error_code(std::errc::io_error);
  size_t pos = 0;
  while (pos < buf.size()) {
    Entry entry;
    const Entry* entry_ptr = nullptr;
    if (plus) {
      fuse_entry_out e;
      if (buf.size() - pos < sizeof(e)) return malformed;
      std::memcpy(&e, buf.data() + pos, sizeof(e));
      pos += sizeof(e);
      entry.inode = e.nodeid;
      entry.generation = e.generation;
      entry.attr.ino = e.attr.ino;
      entry.attr.mode = e.attr.mode;
      entry.attr.size = e.attr.size;
      entry.attr.nlink = e.attr.nlink;
      entry_ptr = &entry;
    }
    fuse_dirent d;
    if (buf.size() - pos < FUSE_NAME_OFFSET) return malformed;
    std::memcpy(&d, buf.data() + pos, FUSE_NAME_OFFSET);
    if (d.namelen == 0 || d.namelen > kMaxName) return malformed;
    const size_t record = FUSE_DIRENT_ALIGN(FUSE_NAME_OFFSET + d.namelen);
    if (buf.size() - pos < FUSE_NAME_OFFSET + d.namelen) return malformed;
    std::string_view name(reinterpret_cast<const char*>(buf.data() + pos + FUSE_NAME_OFFSET),
                          d.namelen);
    if (name.find('/') != std::string_view::npos || name.find('\0') != std::string_view::npos)
      return malformed;
    if (!visit(DirentView{d.ino, d.off, d.type, name, entry_ptr})) return {};
    // The last record may lack its padding; anything after it must be a whole record.
    pos += record <= buf.size() - pos ? record : buf.size() - pos;
  }
  return {};
}

}  // namespace virtiofs::fuse
