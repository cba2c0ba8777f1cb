#include "vfio/discovery.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

#include "virtio/setup_error.hpp"
#include "vfio/virtio_pci.hpp"
#include "virtio/features.hpp"

namespace virtiofs::vfio {

namespace {

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

// Reads `out.size()` bytes (a multiple of 4) of BAR contents through the virtio PCI configuration
// access window in config space: no MMIO mapping, so it works whichever driver holds the device
// (sysfs will not map a BAR a driver claimed). The window's registers (bar, offset, length) are
// put back as they were: the device is left as found for its driver (pci_cfg_data keeps the last
// dword read). Drivers do not use the window (it is for firmware); another discovery does, so the
// config file is locked (flock) from save to restore: our processes take turns.
bool read_through_window(int config_fd, uint8_t window, uint8_t bar, uint32_t offset,
                         std::span<std::byte> out) {
  if (flock(config_fd, LOCK_EX) != 0) return false;
  struct Unlock {
    int fd;
    ~Unlock() { flock(fd, LOCK_UN); }
  } unlock{config_fd};
  std::byte saved[12];  // cap.bar (and padding), offset, length
  if (pread(config_fd, saved, sizeof(saved), window + 4) != static_cast<ssize_t>(sizeof(saved)))
    return false;
  bool ok = true;
  for (size_t i = 0; ok && i < out.size(); i += 4) {
    const uint8_t bar_and_len[] = {bar};
    const uint32_t length = virtio::byteswap_if_big(uint32_t{4});
    const uint32_t at = virtio::byteswap_if_big(static_cast<uint32_t>(offset + i));
    ok = pwrite(config_fd, bar_and_len, 1, window + 4) == 1 &&
         pwrite(config_fd, &at, 4, window + 8) == 4 && pwrite(config_fd, &length, 4, window + 12) == 4 &&
         pread(config_fd, out.data() + i, 4, window + 16) == 4;
  }
  // Byte by byte where the registers are bytes, words where they are words.
  const bool restored = pwrite(config_fd, saved, 1, window + 4) == 1 &&
                        pwrite(config_fd, saved + 4, 4, window + 8) == 4 &&
                        pwrite(config_fd, saved + 8, 4, window + 12) == 4;
  return ok && restored;
}

// Reads the virtio-fs config of the device in `dir` through sysfs (root only: beyond its first
// 64 bytes, config space reads as nothing for other users, and the window needs writing).
void read_tag(const std::string& dir, FsDeviceInfo& info) {
  Fd config(open((dir + "/config").c_str(), O_RDWR | O_CLOEXEC));
  if (config.get() < 0) {
    info.unreadable = errno == EACCES ? "needs root" : std::strerror(errno);
    return;
  }
  VirtioPciLayout layout;
  try {
    layout = parse_virtio_caps([&](uint32_t off, std::span<std::byte> out) {
      if (pread(config.get(), out.data(), out.size(), off) != static_cast<ssize_t>(out.size()))
        fail(EIO, "config space");
    });
  } catch (const std::system_error& e) {
    info.unreadable = e.what();
    return;
  }
  if (!layout.device || layout.device->length < sizeof(virtio::FsConfig) || !layout.pci_cfg_window) {
    info.unreadable = "no virtio-fs config";
    return;
  }
  alignas(4) std::byte raw[40];  // tag[36] and num_request_queues
  if (!read_through_window(config.get(), *layout.pci_cfg_window, layout.device->bar,
                           layout.device->offset, raw)) {
    info.unreadable = "the configuration access window could not be read";
    return;
  }
  const char* tag = reinterpret_cast<const char*>(raw);
  info.tag = std::string(tag, strnlen(tag, virtio::kTagSize));
  uint32_t queues;
  std::memcpy(&queues, raw + virtio::kTagSize, 4);
  info.request_queues = virtio::byteswap_if_big(queues);
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
    if (d.vendor != kVirtioVendor || d.device != kVirtioFsDevice)
      fail(EINVAL, d.address + " is " + pci_ids(d.vendor, d.device) + ", not a virtio-fs device (" +
                       pci_ids(kVirtioVendor, kVirtioFsDevice) + ")");
    return d.address;
  }
  const auto devices = probe_fs_devices();
  for (const auto& d : devices)
    if (d.tag == address_or_tag) return d.pci.address;
  fail(ENODEV, "no virtio-fs device with tag '" + address_or_tag + "' (present: " +
                   tags_present(devices) + ")");
}

}  // namespace virtiofs::vfio
