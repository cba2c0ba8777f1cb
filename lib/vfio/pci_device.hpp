// A PCI device opened through VFIO: its config space, its BARs mapped into our address space, and
// its interrupts delivered as eventfds (VFIO_DEVICE_SET_IRQS).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "vfio/container.hpp"

namespace virtiofs::vfio {

enum class IrqMode { kNone, kMsix, kIntx };

class PciFunction {
 public:
  // Takes the device fd from the container (which must outlive this object).
  PciFunction(Container& container, const std::string& address);
  ~PciFunction();
  PciFunction(const PciFunction&) = delete;
  PciFunction& operator=(const PciFunction&) = delete;

  const std::string& address() const { return address_; }

  void read_config(uint32_t offset, std::span<std::byte> out) const;
  void write_config(uint32_t offset, std::span<const std::byte> in);
  uint8_t config8(uint32_t offset) const;
  uint16_t config16(uint32_t offset) const;
  uint32_t config32(uint32_t offset) const;
  // PCI_COMMAND (vfio-pci leaves bus mastering off after binding): memory space on with
  // mastering off (the device can be programmed but may not DMA), mastering on once it was
  // reset and its queues are set up, off again before the memory goes.
  void enable_memory_only();
  void enable_bus_master();
  void disable_bus_master();
  bool bus_master() const;

  // Maps BAR `bar` (memory BARs that VFIO lets us mmap) and returns its base. Cached.
  volatile std::byte* map_bar(unsigned bar);
  size_t bar_size(unsigned bar) const;

  // Sets up interrupt delivery with `wanted` eventfds: MSI-X with as many vectors as the device
  // has (up to wanted), else INTx. Returns the eventfds in vector order.
  std::span<const int> enable_interrupts(unsigned wanted);
  IrqMode irq_mode() const { return irq_mode_; }
  // INTx is masked by VFIO when it fires: unmask after the device's ISR was read.
  void unmask_intx();
  // Eventfd signalled when the kernel asks us to release the device (hot unplug); -1 if none.
  int request_fd();

 private:
  struct Bar {
    void* base = nullptr;
    size_t size = 0;
  };
  bool set_irq_eventfds(uint32_t index, std::span<const int> fds);
  uint32_t irq_count(uint32_t index) const;

  std::string address_;
  int fd_ = -1;
  uint64_t config_offset_ = 0;
  std::vector<Bar> bars_;
  std::vector<int> irq_fds_;
  IrqMode irq_mode_ = IrqMode::kNone;
  int request_fd_ = -1;
};

}  // namespace virtiofs::vfio
