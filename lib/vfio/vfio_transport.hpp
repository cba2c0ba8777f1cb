// The Transport seam over a virtio-pci device owned through VFIO: the driver a guest kernel would
// be, in userspace. Kicks are MMIO writes to the notify area; interrupts are MSI-X vectors (one per
// queue plus config, else one shared, else INTx) delivered as eventfds.
//
// Addresses the device sees: with VIRTIO_F_ACCESS_PLATFORM, IOVAs we map in the IOMMU; without it
// (QEMU's vhost-user-fs-pci), the device bypasses the IOMMU and uses physical addresses, so
// device memory is hugepages, locked, with physical addresses from /proc/self/pagemap (and mapped
// 1:1 in the IOMMU for platforms that do translate).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "vfio/container.hpp"
#include "vfio/pci_device.hpp"
#include "vfio/sysfs.hpp"
#include "vfio/virtio_pci.hpp"
#include "virtio/transport.hpp"

namespace virtiofs::vfio {

enum class Addressing { kUndecided, kIova, kPhysical };

class VfioTransport final : public virtio::Transport {
 public:
  // Opens the device (bound to vfio-pci), checks its ids, resets it and sets ACKNOWLEDGE|DRIVER.
  explicit VfioTransport(const std::string& pci_address, uint16_t expected_device = kVirtioFsDevice);
  ~VfioTransport() override;

  uint64_t device_features() override;
  void set_driver_features(uint64_t features) override;
  std::optional<unsigned> max_queues() override;
  virtio::DeviceConfig read_config() override;
  std::unique_ptr<virtio::DmaRegion> allocate_memory(size_t bytes, const std::string& name) override;
  void register_memory(const virtio::DmaRegion& region) override;
  void setup_queue(const virtio::QueueSetup& queue) override;
  void start() override;
  int call_fd(unsigned index) const override;
  void rearm_interrupt(unsigned index) override;
  void notify(unsigned index) override;
  LivenessWatch liveness() const override;
  void stop() override;

  Addressing addressing() const { return addressing_; }
  IrqMode irq_mode() const { return pci_->irq_mode(); }
  const std::string& address() const { return address_; }
  uint16_t queue_max_size(unsigned index) { return virtio_->queue_max_size(static_cast<uint16_t>(index)); }

 private:
  void enable_interrupts();

  std::string address_;
  std::unique_ptr<Container> container_;
  std::unique_ptr<PciFunction> pci_;
  std::unique_ptr<VirtioPci> virtio_;
  uint64_t offered_ = 0;
  Addressing addressing_ = Addressing::kUndecided;
  std::vector<volatile uint16_t*> notify_;
  std::vector<int> call_fds_;  // per queue
  std::span<const int> vectors_;
  int request_fd_ = -1;
  bool stopped_ = false;
};

}  // namespace virtiofs::vfio
