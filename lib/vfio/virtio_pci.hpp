// A modern (virtio 1.x) virtio-pci device driven through VFIO: the virtio capabilities, the
// common configuration (status, features, queues), the notify area and the device config.
// Generic over the device type; everything the device wrote is read as untrusted.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>

#include "vfio/pci_device.hpp"

namespace virtiofs::vfio {

struct VirtioCap {
  uint8_t bar = 0;
  uint32_t offset = 0;
  uint32_t length = 0;
};

struct VirtioPciLayout {
  std::optional<VirtioCap> common, notify, isr, device, shared_memory;
  uint32_t notify_multiplier = 0;
  // Config-space offset of the PCI configuration access window (VIRTIO_PCI_CAP_PCI_CFG), which
  // reaches BAR contents through config space alone.
  std::optional<uint8_t> pci_cfg_window;
};

// Walks the PCI capability list through `read` (offset, bytes) and collects the virtio ones.
// Malformed lists (loops, pointers outside config space, short caps) throw EPROTO.
using ConfigReader = std::function<void(uint32_t offset, std::span<std::byte> out)>;
VirtioPciLayout parse_virtio_caps(const ConfigReader& read);

namespace status {
inline constexpr uint8_t kAcknowledge = 1;
inline constexpr uint8_t kDriver = 2;
inline constexpr uint8_t kDriverOk = 4;
inline constexpr uint8_t kFeaturesOk = 8;
inline constexpr uint8_t kNeedsReset = 64;
inline constexpr uint8_t kFailed = 128;
}  // namespace status

inline constexpr uint16_t kNoVector = 0xffff;
inline constexpr uint8_t kIsrConfig = 2;  // ISR status bit 1: the configuration changed

class VirtioPci {
 public:
  // Parses the capabilities and maps the BARs they point into. Throws if the device is not a
  // modern virtio-pci device or its regions lie outside its BARs.
  explicit VirtioPci(PciFunction& pci);

  const VirtioPciLayout& layout() const { return layout_; }

  // Writes 0 to device_status and waits (bounded) until the device reads back 0.
  void reset();
  uint8_t status() const;
  void add_status(uint8_t bits);
  uint64_t device_features() const;
  // Writes the driver features and FEATURES_OK, and checks the device kept FEATURES_OK.
  void set_driver_features(uint64_t features);
  uint16_t num_queues() const;
  uint16_t queue_max_size(uint16_t queue) const;
  // Returns false when the device refused the vector (reads back NO_VECTOR).
  bool set_config_vector(uint16_t vector);
  bool set_queue_vector(uint16_t queue, uint16_t vector);
  // Programs size and ring addresses and enables the queue.
  void setup_queue(uint16_t queue, uint16_t size, uint64_t desc, uint64_t driver, uint64_t device);
  // Where a 16-bit write of the queue index notifies the device (no syscall).
  volatile uint16_t* notify_address(uint16_t queue) const;
  // Reads (and thereby clears) the ISR status: bit 0 queue interrupt, bit 1 config change.
  uint8_t read_isr() const;
  // Reads device-specific config consistently (retries while config_generation changes):
  // bytes with 8-bit accesses, le32 fields with one aligned 32-bit access, as §4.1.3.1 asks.
  void read_device_config(uint32_t offset, std::span<std::byte> out) const;
  uint32_t device_config32(uint32_t offset) const;
  size_t device_config_size() const { return layout_.device ? layout_.device->length : 0; }

 private:
  volatile std::byte* region(const VirtioCap& cap, size_t min_len);
  template <class Fn>
  void consistently(Fn&& read) const;
  void check_device_range(uint32_t offset, size_t len) const;

  PciFunction& pci_;
  VirtioPciLayout layout_;
  volatile std::byte* common_ = nullptr;
  volatile std::byte* notify_ = nullptr;
  volatile std::byte* isr_ = nullptr;
  volatile std::byte* device_ = nullptr;
};

}  // namespace virtiofs::vfio
