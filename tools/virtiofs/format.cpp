#include "format.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <ctime>

namespace virtiofs::cli {

namespace {

char type_char(uint32_t mode) {
  switch (mode & S_IFMT) {
    case S_IFDIR: return 'd';
    case S_IFLNK: return 'l';
    case S_IFREG: return '-';
    case S_IFCHR: return 'c';
    case S_IFBLK: return 'b';
    case S_IFIFO: return 'p';
    case S_IFSOCK: return 's';
  }
  return '?';
}

// ls's date column: month, day and time within six months, month, day and year otherwise.
std::string ls_time(uint64_t sec) {
  const time_t t = static_cast<time_t>(sec);
  const time_t now = time(nullptr);
  const bool recent = t <= now + 3600 && now - t < 6 * 30 * 24 * 3600;
  tm local{};
  localtime_r(&t, &local);
  char buf[32];
  strftime(buf, sizeof(buf), recent ? "%b %e %H:%M" : "%b %e  %Y", &local);
  return buf;
}

std::string stat_time(const Timespec& ts) {
  const time_t t = static_cast<time_t>(ts.sec);
  tm local{};
  localtime_r(&t, &local);
  char date[40], zone[8];
  strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S", &local);
  strftime(zone, sizeof(zone), "%z", &local);
  char out[80];
  std::snprintf(out, sizeof(out), "%s.%09u %s", date, ts.nsec, zone);
  return out;
}

}  // namespace

std::string mode_string(uint32_t mode) {
  std::string s(10, '-');
  s[0] = type_char(mode);
  const char* rwx = "rwxrwxrwx";
  for (int i = 0; i < 9; ++i)
    if (mode & (0400u >> i)) s[1 + i] = rwx[i];
  auto special = [&](size_t at, uint32_t bit, char with_x, char without_x) {
    if (mode & bit) s[at] = s[at] == '-' ? without_x : with_x;
  };
  special(3, S_ISUID, 's', 'S');
  special(6, S_ISGID, 's', 'S');
  special(9, S_ISVTX, 't', 'T');
  return s;
}

std::string file_type(const Attr& a) {
  switch (a.mode & S_IFMT) {
    case S_IFREG: return a.size == 0 ? "regular empty file" : "regular file";
    case S_IFDIR: return "directory";
    case S_IFLNK: return "symbolic link";
    case S_IFCHR: return "character special file";
    case S_IFBLK: return "block special file";
    case S_IFIFO: return "fifo";
    case S_IFSOCK: return "socket";
  }
  return "weird file";
}

std::string long_listing(const std::vector<LongEntry>& entries) {
  size_t w_links = 1, w_uid = 1, w_gid = 1, w_size = 1;
  for (const auto& e : entries) {
    w_links = std::max(w_links, std::to_string(e.attr.nlink).size());
    w_uid = std::max(w_uid, std::to_string(e.attr.uid).size());
    w_gid = std::max(w_gid, std::to_string(e.attr.gid).size());
    w_size = std::max(w_size, std::to_string(e.attr.size).size());
  }
  std::string out;
  char line[128];
  for (const auto& e : entries) {
    std::snprintf(line, sizeof(line), "%s %*u %*u %*u %*llu %s ", mode_string(e.attr.mode).c_str(),
                  static_cast<int>(w_links), e.attr.nlink, static_cast<int>(w_uid), e.attr.uid,
                  static_cast<int>(w_gid), e.attr.gid, static_cast<int>(w_size),
                  static_cast<unsigned long long>(e.attr.size), ls_time(e.attr.mtime.sec).c_str());
    out += line;
    out += e.name;
    if (S_ISLNK(e.attr.mode) && !e.link_target.empty()) out += " -> " + e.link_target;
    out += '\n';
  }
  return out;
}

std::string stat_report(const std::string& path, const Attr& a, const std::string& link_target) {
  std::string out = "  File: " + path;
  if (S_ISLNK(a.mode) && !link_target.empty()) out += " -> " + link_target;
  out += '\n';
  char buf[256];
  std::snprintf(buf, sizeof(buf), "  Size: %-15llu Blocks: %-10llu IO Block: %-6u %s\n",
                static_cast<unsigned long long>(a.size), static_cast<unsigned long long>(a.blocks),
                a.blksize, file_type(a).c_str());
  out += buf;
  std::snprintf(buf, sizeof(buf), "Inode: %-15llu Links: %u\n", static_cast<unsigned long long>(a.ino),
                a.nlink);
  out += buf;
  std::snprintf(buf, sizeof(buf), "Access: (%04o/%s)  Uid: (%5u)   Gid: (%5u)\n", a.mode & 07777,
                mode_string(a.mode).c_str(), a.uid, a.gid);
  out += buf;
  out += "Access: " + stat_time(a.atime) + "\n";
  out += "Modify: " + stat_time(a.mtime) + "\n";
  out += "Change: " + stat_time(a.ctime) + "\n";
  return out;
}

}  // namespace virtiofs::cli
