#include "vfio/virtio_pci.hpp"

#include <linux/pci_regs.h>

#include <chrono>
#include <cstring>
#include <string>
#include <system_error>
#include <thread>

#include "virtio/setup_error.hpp"
#include "virtio/le.hpp"

namespace virtiofs::vfio {

namespace {

// struct virtio_pci_common_cfg (virtio 1.x §4.1.4.3): offsets of the fields we use.
namespace common {
constexpr uint32_t kDeviceFeatureSelect = 0;
constexpr uint32_t kDeviceFeature = 4;
constexpr uint32_t kDriverFeatureSelect = 8;
constexpr uint32_t kDriverFeature = 12;
constexpr uint32_t kConfigMsixVector = 16;
constexpr uint32_t kNumQueues = 18;
constexpr uint32_t kDeviceStatus = 20;
constexpr uint32_t kConfigGeneration = 21;
constexpr uint32_t kQueueSelect = 22;
constexpr uint32_t kQueueSize = 24;
constexpr uint32_t kQueueMsixVector = 26;
constexpr uint32_t kQueueEnable = 28;
constexpr uint32_t kQueueNotifyOff = 30;
constexpr uint32_t kQueueDesc = 32;
constexpr uint32_t kQueueDriver = 40;
constexpr uint32_t kQueueDevice = 48;
constexpr uint32_t kSize = 56;
}  // namespace common

// virtio_pci_cap cfg_type values.
constexpr uint8_t kCapCommon = 1, kCapNotify = 2, kCapIsr = 3, kCapDevice = 4, kCapPciCfg = 5,
                  kCapSharedMemory = 8;
constexpr uint8_t kCapVendor = 0x09;

// MMIO accesses of the exact width, little-endian as virtio-pci is.
template <class T>
T mmio_read(volatile std::byte* base, uint32_t off) {
  return virtio::byteswap_if_big(*reinterpret_cast<volatile T*>(base + off));
}
template <class T>
void mmio_write(volatile std::byte* base, uint32_t off, T v) {
  *reinterpret_cast<volatile T*>(base + off) = virtio::byteswap_if_big(v);
}

}  // namespace

VirtioPciLayout parse_virtio_caps(const ConfigReader& read) {
  VirtioPciLayout layout;
  uint8_t hdr[2];
  read(PCI_STATUS, std::as_writable_bytes(std::span(hdr, 2)));
  if (!((hdr[0] | (hdr[1] << 8)) & PCI_STATUS_CAP_LIST)) fail(ENODEV, "PCI device has no capability list");
  uint8_t ptr;
  read(PCI_CAPABILITY_LIST, std::as_writable_bytes(std::span(&ptr, 1)));
  // 48 capabilities of 4 bytes fill the 192 bytes after the header: more means a loop.
  for (int guard = 0; ptr != 0; ++guard) {
    if (guard >= 48 || ptr < 0x40 || ptr > 0xff - 3) fail(EPROTO, "malformed PCI capability list");
    uint8_t cap[20] = {};
    read(ptr, std::as_writable_bytes(std::span(cap, 4)));
    const uint8_t next = cap[1] & 0xfc;
    if (cap[0] == kCapVendor) {
      const uint8_t len = cap[2];
      if (len < 16 || ptr + len > 0x100) fail(EPROTO, "malformed virtio PCI capability");
      read(ptr, std::as_writable_bytes(std::span(cap, std::min<size_t>(len, sizeof(cap)))));
      VirtioCap c;
      c.bar = cap[4];
      std::memcpy(&c.offset, cap + 8, 4);
      std::memcpy(&c.length, cap + 12, 4);
      c.offset = virtio::byteswap_if_big(c.offset);
      c.length = virtio::byteswap_if_big(c.length);
      const bool valid_bar = c.bar <= 5;
      // The first capability of each type is the one to use (virtio 1.x §4.1.4).
      switch (cap[3]) {
        case kCapCommon:
          if (valid_bar && !layout.common) layout.common = c;
          break;
        case kCapNotify:
          if (valid_bar && !layout.notify && len >= 20) {
            layout.notify = c;
            std::memcpy(&layout.notify_multiplier, cap + 16, 4);
            layout.notify_multiplier = virtio::byteswap_if_big(layout.notify_multiplier);
          }
          break;
        case kCapIsr:
          if (valid_bar && !layout.isr) layout.isr = c;
          break;
        case kCapDevice:
          if (valid_bar && !layout.device) layout.device = c;
          break;
        case kCapPciCfg:
          if (!layout.pci_cfg_window && len >= 20) layout.pci_cfg_window = ptr;
          break;
        case kCapSharedMemory:
          if (valid_bar && !layout.shared_memory) layout.shared_memory = c;
          break;
        default:
          break;
      }
    }
    ptr = next;
  }
  return layout;
}

VirtioPci::VirtioPci(PciFunction& pci) : pci_(pci) {
  layout_ = parse_virtio_caps([&](uint32_t off, std::span<std::byte> out) { pci_.read_config(off, out); });
  if (!layout_.common || !layout_.notify || !layout_.isr)
    fail(ENODEV, "device " + pci.address() + " is not a modern virtio-pci device (no common, notify or ISR capability)");
  common_ = region(*layout_.common, common::kSize);
  notify_ = region(*layout_.notify, 2);
  isr_ = region(*layout_.isr, 1);
  if (layout_.device) device_ = region(*layout_.device, 0);
}

volatile std::byte* VirtioPci::region(const VirtioCap& cap, size_t min_len) {
  volatile std::byte* bar = pci_.map_bar(cap.bar);
  const size_t size = pci_.bar_size(cap.bar);
  if (cap.length < min_len || cap.offset > size || cap.length > size - cap.offset)
    fail(EPROTO, "virtio capability outside BAR " + std::to_string(cap.bar));
  return bar + cap.offset;
}

void VirtioPci::reset() {
  mmio_write<uint8_t>(common_, common::kDeviceStatus, 0);
  // The device may take time to finish a reset: it reads 0 when done (virtio 1.x §4.1.4.3.2).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (mmio_read<uint8_t>(common_, common::kDeviceStatus) != 0) {
    if (std::chrono::steady_clock::now() > deadline) fail(ETIMEDOUT, "virtio device did not reset");
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
}

uint8_t VirtioPci::status() const { return mmio_read<uint8_t>(common_, common::kDeviceStatus); }

void VirtioPci::add_status(uint8_t bits) {
  mmio_write<uint8_t>(common_, common::kDeviceStatus, static_cast<uint8_t>(status() | bits));
}

uint64_t VirtioPci::device_features() const {
  uint64_t f = 0;
  for (uint32_t half = 0; half < 2; ++half) {
    mmio_write<uint32_t>(common_, common::kDeviceFeatureSelect, half);
    f |= uint64_t{mmio_read<uint32_t>(common_, common::kDeviceFeature)} << (32 * half);
  }
  return f;
}

void VirtioPci::set_driver_features(uint64_t features) {
  for (uint32_t half = 0; half < 2; ++half) {
    mmio_write<uint32_t>(common_, common::kDriverFeatureSelect, half);
    mmio_write<uint32_t>(common_, common::kDriverFeature, static_cast<uint32_t>(features >> (32 * half)));
  }
  add_status(status::kFeaturesOk);
  if (!(status() & status::kFeaturesOk)) fail(ENOTSUP, "virtio device refused the feature set");
}

uint16_t VirtioPci::num_queues() const { return mmio_read<uint16_t>(common_, common::kNumQueues); }

uint16_t VirtioPci::queue_max_size(uint16_t queue) const {
  mmio_write<uint16_t>(common_, common::kQueueSelect, queue);
  return mmio_read<uint16_t>(common_, common::kQueueSize);
}

bool VirtioPci::set_config_vector(uint16_t vector) {
  mmio_write<uint16_t>(common_, common::kConfigMsixVector, vector);
  return mmio_read<uint16_t>(common_, common::kConfigMsixVector) == vector;
}

bool VirtioPci::set_queue_vector(uint16_t queue, uint16_t vector) {
  mmio_write<uint16_t>(common_, common::kQueueSelect, queue);
  mmio_write<uint16_t>(common_, common::kQueueMsixVector, vector);
  return mmio_read<uint16_t>(common_, common::kQueueMsixVector) == vector;
}

void VirtioPci::setup_queue(uint16_t queue, uint16_t size, uint64_t desc, uint64_t driver, uint64_t device) {
  mmio_write<uint16_t>(common_, common::kQueueSelect, queue);
  mmio_write<uint16_t>(common_, common::kQueueSize, size);
  // 64-bit fields as two 32-bit writes, low half first (allowed by §4.1.3.1).
  for (auto [off, addr] : {std::pair{common::kQueueDesc, desc}, std::pair{common::kQueueDriver, driver},
                           std::pair{common::kQueueDevice, device}}) {
    mmio_write<uint32_t>(common_, off, static_cast<uint32_t>(addr));
    mmio_write<uint32_t>(common_, off + 4, static_cast<uint32_t>(addr >> 32));
  }
  mmio_write<uint16_t>(common_, common::kQueueEnable, 1);
}

volatile uint16_t* VirtioPci::notify_address(uint16_t queue) const {
  mmio_write<uint16_t>(common_, common::kQueueSelect, queue);
  const uint32_t off = uint32_t{mmio_read<uint16_t>(common_, common::kQueueNotifyOff)} * layout_.notify_multiplier;
  if (off > layout_.notify->length || layout_.notify->length - off < 2)
    fail(EPROTO, "queue " + std::to_string(queue) + ": notify offset outside the notify area");
  return reinterpret_cast<volatile uint16_t*>(notify_ + off);
}

uint8_t VirtioPci::read_isr() const { return mmio_read<uint8_t>(isr_, 0); }

void VirtioPci::check_device_range(uint32_t offset, size_t len) const {
  if (!device_ || offset > layout_.device->length || len > layout_.device->length - offset)
    fail(EPROTO, "device config smaller than expected");
}

template <class Fn>
void VirtioPci::consistently(Fn&& read) const {
  for (int attempt = 0; attempt < 100; ++attempt) {
    const uint8_t before = mmio_read<uint8_t>(common_, common::kConfigGeneration);
    read();
    if (mmio_read<uint8_t>(common_, common::kConfigGeneration) == before) return;
  }
  fail(EIO, "device config keeps changing while being read");
}

void VirtioPci::read_device_config(uint32_t offset, std::span<std::byte> out) const {
  check_device_range(offset, out.size());
  consistently([&] {
    for (size_t i = 0; i < out.size(); ++i) out[i] = device_[offset + i];
  });
}

uint32_t VirtioPci::device_config32(uint32_t offset) const {
  check_device_range(offset, 4);
  if (offset % 4) fail(EINVAL, "unaligned 32-bit device config field");
  uint32_t v = 0;
  consistently([&] { v = mmio_read<uint32_t>(device_, offset); });
  return v;
}

}  // namespace virtiofs::vfio
