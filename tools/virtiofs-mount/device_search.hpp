// Finding a virtio-fs device by tag when no socket or share is given: the VFIO-bound PCI
// devices (1af4:105a). Until the VFIO transport exists, this names what is present.
#pragma once

#include <string>

namespace virtiofs::mount_tool {

// The one-line message for a tag with no VFIO device behind it, naming the devices present.
std::string vfio_device_not_found(const std::string& tag);

}  // namespace virtiofs::mount_tool
