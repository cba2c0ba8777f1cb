#include "vfio/discovery.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

#include "vfio/virtio_pci.hpp"
#include "virtio/features.hpp"

namespace virtiofs::vfio {

namespace {

[[noreturn]] void fail(int err, const std::string& what) {
  throw std::system_error(err, std::system_category(), what);
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

// Reads the virtio-fs config of the device in `dir` through sysfs.
void read_tag(const std::string& dir, FsDeviceInfo& info) {
  Fd config(open((dir + "/config").c_str(), O_RDONLY | O_CLOEXEC));
  if (config.get() < 0) {
    info.unreadable = std::strerror(errno);
    return;
  }
  VirtioPciLayout layout;
  try {
    layout = parse_virtio_caps([&](uint32_t off, std::span<std::byte> out) {
      // Without root, sysfs shows only the first 64 bytes: the capabilities read as zeros.
      if (pread(config.get(), out.data(), out.size(), off) != static_cast<ssize_t>(out.size()))
        fail(EACCES, "config space");
    });
  } catch (const std::system_error& e) {
    info.unreadable = e.code() == std::errc::permission_denied ? "needs root" : e.what();
    return;
  }
  if (!layout.device || layout.device->length < sizeof(virtio::FsConfig)) {
    info.unreadable = getuid() == 0 ? "no virtio-fs config" : "needs root";
    return;
  }
  const std::string resource = dir + "/resource" + std::to_string(layout.device->bar);
  Fd bar(open(resource.c_str(), O_RDONLY | O_CLOEXEC));
  struct stat st {};
  if (bar.get() < 0 || fstat(bar.get(), &st) != 0) {
    info.unreadable = errno == EACCES ? "needs root" : std::strerror(errno);
    return;
  }
  const size_t page = 4096;
  const size_t start = layout.device->offset & ~(page - 1);
  const size_t len = layout.device->offset - start + sizeof(virtio::FsConfig);
  if (layout.device->offset + sizeof(virtio::FsConfig) > static_cast<size_t>(st.st_size)) {
    info.unreadable = "device config outside its BAR";
    return;
  }
  void* p = mmap(nullptr, len, PROT_READ, MAP_SHARED, bar.get(), static_cast<off_t>(start));
  if (p == MAP_FAILED) {
    info.unreadable = std::strerror(errno);
    return;
  }
  auto* base = static_cast<volatile std::byte*>(p) + (layout.device->offset - start);
  char tag[virtio::kTagSize];
  for (size_t i = 0; i < sizeof(tag); ++i) tag[i] = static_cast<char>(base[i]);
  info.tag = std::string(tag, strnlen(tag, sizeof(tag)));
  uint32_t queues = *reinterpret_cast<volatile uint32_t*>(base + offsetof(virtio::FsConfig, num_request_queues));
  info.request_queues = virtio::byteswap_if_big(queues);
  munmap(p, len);
}

std::string tags_present(const std::vector<FsDeviceInfo>& devices) {
  std::string s;
  for (const auto& d : devices) {
    if (!s.empty()) s += ", ";
    s += (d.tag ? "'" + *d.tag + "'" : "?") + " at " + d.pci.address + " (" +
         (d.pci.driver.empty() ? "no driver" : d.pci.driver) + ")";
  }
  return s.empty() ? "none" : s;
}

}  // namespace

std::vector<FsDeviceInfo> probe_fs_devices() {
  std::vector<FsDeviceInfo> out;
  for (auto& pci : find_pci_devices(kVirtioVendor, kVirtioFsDevice)) {
    FsDeviceInfo info;
    info.pci = pci;
    read_tag(sysfs_pci_root() + "/devices/" + pci.address, info);
    out.push_back(std::move(info));
  }
  return out;
}

std::string find_vfio_fs_device(const std::string& tag) {
  const auto devices = probe_fs_devices();
  for (const auto& d : devices)
    if (d.tag == tag && d.pci.driver == "vfio-pci") return d.pci.address;
  for (const auto& d : devices)
    if (d.tag == tag)
      fail(ENODEV, "virtio-fs device '" + tag + "' at " + d.pci.address + " is bound to " +
                       (d.pci.driver.empty() ? std::string("no driver") : d.pci.driver) +
                       ", not vfio-pci (run: virtiofs bind " + d.pci.address + ")");
  fail(ENODEV, "no virtio-fs device with tag '" + tag + "' (present: " + tags_present(devices) + ")");
}

std::string resolve_fs_device(const std::string& address_or_tag) {
  if (looks_like_pci_address(address_or_tag)) {
    const PciDevice d = pci_device(address_or_tag);
    if (d.vendor != kVirtioVendor || d.device != kVirtioFsDevice) {
      char ids[16];
      snprintf(ids, sizeof(ids), "%04x:%04x", d.vendor, d.device);
      fail(EINVAL, d.address + " is " + ids + ", not a virtio-fs device (1af4:105a)");
    }
    return d.address;
  }
  const auto devices = probe_fs_devices();
  for (const auto& d : devices)
    if (d.tag == address_or_tag) return d.pci.address;
  fail(ENODEV, "no virtio-fs device with tag '" + address_or_tag + "' (present: " +
                   tags_present(devices) + ")");
}

}  // namespace virtiofs::vfio
