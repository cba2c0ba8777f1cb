#include "vfio/vfio_transport.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <optional>
#include <system_error>

#include "virtio/setup_error.hpp"
#include "vfio/physical_memory.hpp"
#include "virtio/features.hpp"

namespace virtiofs::vfio {

namespace {

// An IOVA away from 0 so a stray null-based DMA faults instead of hitting our memory.
constexpr uint64_t kIovaFloor = uint64_t{1} << 32;

}  // namespace

VfioTransport::VfioTransport(const std::string& pci_address, uint16_t expected_device) {
  const PciDevice dev = pci_device(pci_address);
  address_ = dev.address;
  if (dev.vendor != kVirtioVendor || dev.device != expected_device)
    fail(ENODEV, "device " + address_ + " is " + pci_ids(dev.vendor, dev.device) + ", not " +
                     pci_ids(kVirtioVendor, expected_device));
  container_ = std::make_unique<Container>(address_);
  pci_ = std::make_unique<PciFunction>(*container_, address_);
  // A device a previous owner left running must not DMA into addresses it kept: it may be
  // programmed (memory space) but not master the bus until it was reset and its queues are
  // ours (start()). vfio-pci cannot reset this device (no FLR): reset it through virtio (§3.1.1).
  pci_->enable_memory_only();
  virtio_ = std::make_unique<VirtioPci>(*pci_);
  virtio_->reset();
  virtio_->add_status(status::kAcknowledge | status::kDriver);
  offered_ = virtio_->device_features();
  if (!(offered_ & virtio::feature::kVersion1))
    fail(ENOTSUP, "device " + address_ + " does not offer VIRTIO_F_VERSION_1");
}

VfioTransport::~VfioTransport() {
  try {
    stop();
  } catch (...) {
    // A lost device cannot be reset; closing VFIO stops it either way.
  }
  if (config_event_ >= 0) close(config_event_);
}

uint64_t VfioTransport::device_features() {
  // ACCESS_PLATFORM is the transport's business (it decides the addressing), not the driver's.
  return offered_ & ~virtio::feature::kAccessPlatform;
}

void VfioTransport::set_driver_features(uint64_t features) {
  if (features & ~device_features()) fail(EINVAL, "driver features not offered by the device");
  const bool platform = offered_ & virtio::feature::kAccessPlatform;
  addressing_ = platform ? Addressing::kIova : Addressing::kPhysical;
  virtio_->set_driver_features(features | (platform ? virtio::feature::kAccessPlatform : 0));
}

std::optional<unsigned> VfioTransport::max_queues() { return virtio_->num_queues(); }

virtio::DeviceConfig VfioTransport::read_config() {
  virtio::DeviceConfig config;
  if (virtio_->device_config_size() < offsetof(virtio::FsConfig, notify_buf_size)) return config;
  char tag[virtio::kTagSize];
  virtio_->read_device_config(0, std::as_writable_bytes(std::span(tag)));
  config.tag = std::string(tag, strnlen(tag, sizeof(tag)));
  config.num_request_queues = virtio_->device_config32(offsetof(virtio::FsConfig, num_request_queues));
  return config;
}

std::unique_ptr<virtio::DmaRegion> VfioTransport::allocate_memory(size_t bytes, const std::string& name) {
  using virtio::DmaRegion;
  if (addressing_ == Addressing::kUndecided) fail(EINVAL, "allocate_memory before set_driver_features");
  if (addressing_ == Addressing::kIova) {
    const size_t size = (bytes + 4095) & ~size_t{4095};
    const uint64_t iova = container_->find_iova(size, DmaRegion::kHugePageBytes, kIovaFloor);
    auto region = std::make_unique<DmaRegion>(size, iova, name);
    container_->map_dma(region->base(), iova, region->size());
    return region;
  }
  // Physical addresses: hugepages are contiguous 2 MiB runs. carve() may skip to a granule
  // boundary for each piece, wasting less than the piece: twice the size always suffices.
  auto region = std::make_unique<DmaRegion>(2 * bytes + DmaRegion::kHugePageBytes, 0, name,
                                            virtio::Backing::kHugePages);
  auto granules = pin_physical(region->base(), region->size(), DmaRegion::kHugePageBytes, pin_steps());
  region->set_granule_addresses(DmaRegion::kHugePageBytes, std::move(granules));
  return region;
}

PinSteps VfioTransport::pin_steps() {
  auto seen = [this](const char* step) {
    if (pin_observer_) pin_observer_(step);
  };
  auto scratch = std::make_shared<std::pair<uint64_t, size_t>>();
  auto previous_ceiling = std::make_shared<std::optional<uint64_t>>();
  PinSteps s;
  // The pin is a mapping at a scratch IOVA at the top of what the IOMMU allows, above any
  // physical address the 1:1 mappings below take.
  s.pin = [this, seen, scratch, previous_ceiling](std::byte* base, size_t bytes) {
    const uint64_t iova = container_->find_iova_top(bytes, virtio::DmaRegion::kHugePageBytes, scratch_ceiling_);
    try {
      container_->map_dma(base, iova, bytes);
    } catch (const std::system_error& e) {
      fail(e.code().value(), "pinning " + std::to_string(bytes >> 20) + " MiB of device memory failed (" +
                                 e.code().message() + "): run as root or raise RLIMIT_MEMLOCK, and "
                                 "reserve hugepages outside movable memory (hugepages= at boot)");
    }
    *scratch = {iova, bytes};
    previous_ceiling->emplace(scratch_ceiling_);
    scratch_ceiling_ = iova ? iova - 1 : 0;  // the next region's pin goes below
    seen("pinned");
    return *scratch;
  };
  s.unpin = [this, scratch, previous_ceiling] {
    container_->unmap_dma(scratch->first, scratch->second);
    if (*previous_ceiling) scratch_ceiling_ = **previous_ceiling;  // the range is free again
  };
  s.read_pagemap = [seen](const std::byte* base, size_t bytes) {
    seen("read");
    return read_pagemap(base, bytes);
  };
  s.can_map = [this](uint64_t phys, size_t bytes) { return container_->iova_valid(phys, bytes); };
  s.map = [this, seen](std::byte* va, uint64_t phys, size_t bytes) {
    container_->map_dma(va, phys, bytes);
    seen("mapped");
  };
  s.unmap = [this](uint64_t phys, size_t bytes) { container_->unmap_dma(phys, bytes); };
  return s;
}

void VfioTransport::register_memory(const virtio::DmaRegion&) {
  // Mapped when allocated: nothing to tell the device.
}

void VfioTransport::enable_interrupts() {
  const unsigned queues = virtio_->num_queues();
  vectors_ = pci_->enable_interrupts(queues + 1);
  call_fds_.assign(queues, vectors_.front());
  if (pci_->irq_mode() == IrqMode::kMsix) {
    // Vector 0 for config changes, vector q+1 for queue q; with fewer vectors, all share vector 0.
    const bool dedicated = vectors_.size() >= queues + 1u;
    if (!virtio_->set_config_vector(0)) fail(EIO, "device refused its config MSI-X vector");
    for (unsigned q = 0; q < queues; ++q) {
      const uint16_t v = dedicated ? static_cast<uint16_t>(q + 1) : 0;
      if (!virtio_->set_queue_vector(static_cast<uint16_t>(q), v)) {
        if (!virtio_->set_queue_vector(static_cast<uint16_t>(q), 0))
          fail(EIO, "device refused MSI-X vectors for queue " + std::to_string(q));
        call_fds_[q] = vectors_[0];
        continue;
      }
      call_fds_[q] = vectors_[v];
    }
  } else {
    virtio_->set_config_vector(kNoVector);
  }
  // Config changes get their own fd: vector 0 when no queue shares it; otherwise an eventfd that
  // rearm_interrupt signals when the shared interrupt turns out to be (also) about the config.
  config_shared_ = std::find(call_fds_.begin(), call_fds_.end(), vectors_[0]) != call_fds_.end();
  if (!config_shared_) {
    config_fd_ = vectors_[0];
    return;
  }
  config_event_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (config_event_ < 0) fail(errno, "eventfd");
  config_fd_ = config_event_;
}

void VfioTransport::setup_queue(const virtio::QueueSetup& q) {
  if (call_fds_.empty()) enable_interrupts();
  if (q.index >= virtio_->num_queues())
    fail(EINVAL, "queue " + std::to_string(q.index) + " beyond the device's " +
                     std::to_string(virtio_->num_queues()) + " queues");
  const uint16_t index = static_cast<uint16_t>(q.index);
  const uint16_t max = virtio_->queue_max_size(index);
  if (max == 0) fail(ENODEV, "queue " + std::to_string(q.index) + " is not available");
  if (q.size > max)
    fail(EINVAL, "queue size " + std::to_string(q.size) + " above the device's maximum " + std::to_string(max));
  virtio_->setup_queue(index, q.size, q.memory.desc_addr, q.memory.avail_addr, q.memory.used_addr);
  if (notify_.size() <= q.index) notify_.resize(q.index + 1, nullptr);
  notify_[q.index] = virtio_->notify_address(index);
}

void VfioTransport::start() {
  request_fd_ = pci_->request_fd();
  pci_->enable_bus_master();  // the rings and memory are set up: the device may DMA now
  virtio_->add_status(status::kDriverOk);
  if (virtio_->status() & (status::kNeedsReset | status::kFailed))
    fail(EIO, "device " + address_ + " failed to start (status " + std::to_string(virtio_->status()) + ")");
}

int VfioTransport::call_fd(unsigned index) const { return call_fds_.at(index); }

void VfioTransport::rearm_interrupt(unsigned index) {
  if (!config_shared_ || call_fds_.at(index) != vectors_[0]) return;
  if (pci_->irq_mode() == IrqMode::kIntx) {
    // INTx: reading the ISR lowers the line (VFIO masked it when it fired) and says whether the
    // device changed its config (bit 1) besides using buffers (bit 0).
    if (virtio_->read_isr() & kIsrConfig) signal_config();
    pci_->unmask_intx();
    return;
  }
  // One MSI-X vector for all: the device sets the ISR's config bit before a config
  // notification either way (§4.1.4.5), but reading the ISR clears it and costs the same one
  // MMIO read as the status, which tells NEEDS_RESET directly.
  if (virtio_->status() & status::kNeedsReset) signal_config();
}

void VfioTransport::signal_config() {
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t n = write(config_event_, &one, sizeof(one));
}

virtio::Transport::LivenessWatch VfioTransport::config_watch() const { return {config_fd_, POLLIN}; }

std::error_code VfioTransport::config_changed() {
  uint64_t count;
  [[maybe_unused]] ssize_t n = read(config_fd_, &count, sizeof(count));  // non-blocking
  const uint8_t s = virtio_->status();
  // All ones: the device is gone (the liveness watch says so too).
  if (s == 0xff) return std::make_error_code(std::errc::not_connected);
  if (s & status::kNeedsReset) return std::make_error_code(std::errc::io_error);
  return {};
}

void VfioTransport::notify(unsigned index) {
  // The ring published avail->idx with a full fence in kick_prepare; this store follows it.
  *notify_[index] = virtio::byteswap_if_big(static_cast<uint16_t>(index));
}

virtio::Transport::LivenessWatch VfioTransport::liveness() const { return {request_fd_, POLLIN}; }

void VfioTransport::stop() {
  if (stopped_ || !virtio_) return;
  stopped_ = true;
  // Mastering goes off even when the reset fails (times out) or the device reads all ones
  // (removed, or only for now, in error recovery): before the memory goes, the device must not
  // reach it either way.
  struct MasteringOff {
    PciFunction& pci;
    ~MasteringOff() {
      try {
        pci.disable_bus_master();
      } catch (...) {  // the device went away meanwhile
      }
    }
  } off{*pci_};
  // A removed device reads all ones: nothing left to reset.
  if (virtio_->status() == 0xff) return;
  virtio_->reset();
}

}  // namespace virtiofs::vfio
