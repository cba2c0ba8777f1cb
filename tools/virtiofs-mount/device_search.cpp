#include "device_search.hpp"

#include <dirent.h>
#include <unistd.h>

#include <climits>
#include <fstream>
#include <memory>

namespace virtiofs::mount_tool {

namespace {

struct DirCloser {
  void operator()(DIR* d) const { closedir(d); }
};

std::string read_line(const std::string& path) {
  std::ifstream in(path);
  std::string s;
  std::getline(in, s);
  return s;
}

std::string driver_of(const std::string& device_dir) {
  char target[PATH_MAX];
  ssize_t n = readlink((device_dir + "/driver").c_str(), target, sizeof(target) - 1);
  if (n <= 0) return "no driver";
  target[n] = '\0';
  std::string s = target;
  return s.substr(s.rfind('/') + 1);
}

}  // namespace

std::string vfio_device_not_found(const std::string& tag) {
  const std::string root = "/sys/bus/pci/devices";
  std::string present;
  std::unique_ptr<DIR, DirCloser> dir(opendir(root.c_str()));
  while (dir) {
    dirent* e = readdir(dir.get());
    if (!e) break;
    if (e->d_name[0] == '.') continue;
    const std::string dev = root + "/" + e->d_name;
    if (read_line(dev + "/vendor") != "0x1af4" || read_line(dev + "/device") != "0x105a") continue;
    if (!present.empty()) present += ", ";
    present += std::string(e->d_name) + " (" + driver_of(dev) + ")";
  }
  return "no VFIO-bound virtio-fs device with tag '" + tag + "' (virtio-fs devices present: " +
         (present.empty() ? "none" : present) +
         "; the VFIO transport is not built yet); use -o share=DIR or -o socket=PATH";
}

}  // namespace virtiofs::mount_tool
