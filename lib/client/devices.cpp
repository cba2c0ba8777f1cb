#include "virtiofs/devices.hpp"

#include "vfio/discovery.hpp"
#include "vfio/sysfs.hpp"

namespace virtiofs {

std::vector<PciFsDevice> list_pci_fs_devices() {
  std::vector<PciFsDevice> out;
  for (auto& d : vfio::probe_fs_devices()) {
    out.push_back(PciFsDevice{d.pci.address, d.pci.driver, d.tag.value_or(""),
                              d.request_queues.value_or(0), d.pci.iommu_group.value_or(-1),
                              d.unreadable});
  }
  return out;
}

std::string find_vfio_fs_device(const std::string& tag) { return vfio::find_vfio_fs_device(tag); }

std::string bind_to_vfio(const std::string& address_or_tag) {
  const std::string address = vfio::resolve_fs_device(address_or_tag);
  vfio::bind_to_vfio(address);
  return address;
}

std::string unbind_from_vfio(const std::string& address_or_tag) {
  const std::string address = vfio::resolve_fs_device(address_or_tag);
  vfio::unbind_from_vfio(address);
  return address;
}

}  // namespace virtiofs
