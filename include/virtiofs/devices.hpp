// virtio-fs PCI devices (1af4:105a) on this machine, and moving them between the kernel's
// virtio-fs driver and vfio-pci so a Client can own one (Options::pci_device). Inside a VM.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "virtiofs/export.hpp"

namespace virtiofs {

struct PciFsDevice {
  std::string address;        // 0000:00:03.0
  std::string driver;         // virtio-pci, vfio-pci, or empty
  std::string tag;            // empty when unreadable
  uint32_t request_queues = 0;
  int iommu_group = -1;       // -1: none (vfio-pci cannot take the device)
  std::string unreadable;     // why the tag could not be read (e.g. "needs root")
};

// Every virtio-fs PCI device, whatever driver holds it. Reading tags needs root.
VIRTIOFS_API std::vector<PciFsDevice> list_pci_fs_devices();
// The address of the vfio-pci-bound device with this tag; throws std::system_error (ENODEV)
// naming the tags present and the command that binds one.
VIRTIOFS_API std::string find_vfio_fs_device(const std::string& tag);
// Binds the device (PCI address or tag) to vfio-pci, or gives it back to the kernel's driver.
// Returns its address. Throws std::system_error with the fix (not root, no IOMMU, ...).
VIRTIOFS_API std::string bind_to_vfio(const std::string& address_or_tag);
VIRTIOFS_API std::string unbind_from_vfio(const std::string& address_or_tag);

}  // namespace virtiofs
