// The Transport seam over a virtio-pci device owned through VFIO: the driver a guest kernel would
// be, in userspace. Kicks are MMIO writes to the notify area; interrupts are MSI-X vectors (one per
// queue plus config, else one shared, else INTx) delivered as eventfds.
//
// Addresses the device sees: with VIRTIO_F_ACCESS_PLATFORM, IOVAs we map in the IOMMU; without it
// (QEMU's vhost-user-fs-pci), the device bypasses the IOMMU and uses physical addresses, so
// device memory is hugepages, pinned (a VFIO mapping at a scratch IOVA) before their physical
// addresses are read from /proc/self/pagemap, mapped 1:1 in the IOMMU for platforms that do
// translate, and checked unchanged afterwards (physical_memory.hpp).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "vfio/container.hpp"
#include "vfio/pci_device.hpp"
#include "vfio/physical_memory.hpp"
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
  LivenessWatch config_watch() const override;
  std::error_code config_changed() override;
  void stop() override;

  Addressing addressing() const { return addressing_; }
  IrqMode irq_mode() const { return pci_->irq_mode(); }
  const std::string& address() const { return address_; }
  uint16_t queue_max_size(unsigned index) { return virtio_->queue_max_size(static_cast<uint16_t>(index)); }
  // Test seam: called at each step of pinning physical-address memory ("pinned", "read" before
  // each read of the addresses, "mapped" after each 1:1 mapping).
  void observe_pinning(std::function<void(const char* step)> observer) { pin_observer_ = std::move(observer); }

 private:
  void enable_interrupts();
  PinSteps pin_steps();
  void signal_config();

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
  int config_fd_ = -1;       // what config_watch() reports: vector 0, or config_event_
  int config_event_ = -1;    // ours, when the config interrupt shares the queues' vector or INTx
  bool config_shared_ = false;
  bool stopped_ = false;
  uint64_t scratch_ceiling_ = ~uint64_t{0};  // pins go below here, downwards
  std::function<void(const char*)> pin_observer_;
};

}  // namespace virtiofs::vfio
