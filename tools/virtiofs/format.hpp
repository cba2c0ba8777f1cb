// How `virtiofs ls -l` and `virtiofs stat` print attributes: as ls -ln and stat(1) do.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "virtiofs/types.hpp"

namespace virtiofs::cli {

// "drwxr-xr-x", "-rw-r--r--", "lrwxrwxrwx", with s/S/t/T for the set-id and sticky bits.
std::string mode_string(uint32_t mode);
// "regular file", "directory", "symbolic link", ... as stat(1) names them.
std::string file_type(const Attr& attr);

struct LongEntry {
  std::string name;
  Attr attr;
  std::string link_target;  // symbolic links: shown as "name -> target"
};
// ls -ln lines: mode, links, uid, gid, size, mtime, name; columns aligned across entries.
std::string long_listing(const std::vector<LongEntry>& entries);

// stat(1)'s layout: File, Size, Blocks, IO Block, type, Inode, Links, Access (mode), Uid, Gid,
// and the Access, Modify and Change times.
std::string stat_report(const std::string& path, const Attr& attr, const std::string& link_target);

}  // namespace virtiofs::cli
