// Finding virtio-fs PCI devices and their tags without taking them: the config space through
// sysfs, and the device config read through the virtio PCI configuration access window (root
// only). Works whatever driver holds the device (virtio-pci, vfio-pci, none).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "vfio/sysfs.hpp"

namespace virtiofs::vfio {

struct FsDeviceInfo {
  PciDevice pci;
  std::optional<std::string> tag;
  std::optional<uint32_t> request_queues;
  std::string unreadable;  // why the tag could not be read (e.g. not root)
};

std::vector<FsDeviceInfo> probe_fs_devices();
// The address of the vfio-pci-bound virtio-fs device with `tag`. Throws ENODEV naming the tags
// present and how to bind one.
std::string find_vfio_fs_device(const std::string& tag);
// A PCI address, or the tag of a virtio-fs device, as a PCI address.
std::string resolve_fs_device(const std::string& address_or_tag);

}  // namespace virtiofs::vfio
