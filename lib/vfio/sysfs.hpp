// The PCI side of sysfs: which devices exist, their drivers and IOMMU groups, moving a device
// between drivers (driver_override), and who holds a /dev/vfio group open.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace virtiofs::vfio {

inline constexpr uint16_t kVirtioVendor = 0x1af4;
inline constexpr uint16_t kVirtioFsDevice = 0x105a;  // 0x1040 + virtio device id 26

struct PciDevice {
  std::string address;  // 0000:00:03.0
  uint16_t vendor = 0;
  uint16_t device = 0;
  std::string driver;  // empty when unbound
  std::optional<int> iommu_group;
};

std::string sysfs_pci_root();
// "1af4:105a".
std::string pci_ids(uint16_t vendor, uint16_t device);
// Every PCI device with this vendor and device id, sorted by address.
std::vector<PciDevice> find_pci_devices(uint16_t vendor, uint16_t device);
// The device at `address` (accepts 00:03.0 for domain 0); throws ENODEV naming what exists.
PciDevice pci_device(const std::string& address);
// True when `text` looks like a PCI address (DDDD:BB:DD.F or BB:DD.F).
bool looks_like_pci_address(const std::string& text);
std::string normalize_pci_address(const std::string& text);

// Why VFIO cannot serve the device (empty if it can): no IOMMU group; or, when must_be_bound,
// a driver other than vfio-pci. One line, naming the fix.
std::string vfio_problem(const PciDevice& d, bool must_be_bound);

// Moves the device to vfio-pci (loading nothing: vfio-pci must be available) or back to the
// driver the kernel picks. Throws with the reason (not root, no IOMMU group, no vfio-pci).
void bind_to_vfio(const std::string& address);
void unbind_from_vfio(const std::string& address);

// "pid 123 (virtiofs-mount)" for each process with `path` open; empty if none or unknown.
std::vector<std::string> holders_of(const std::string& path);

}  // namespace virtiofs::vfio
