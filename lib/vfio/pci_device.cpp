#include "vfio/pci_device.hpp"

#include "virtio/setup_error.hpp"

#include <linux/pci_regs.h>
#include <linux/vfio.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

namespace virtiofs::vfio {

namespace {

vfio_region_info region_info(int fd, uint32_t index) {
  vfio_region_info info{.argsz = sizeof(info), .flags = 0, .index = index, .cap_offset = 0, .size = 0, .offset = 0};
  if (ioctl(fd, VFIO_DEVICE_GET_REGION_INFO, &info) != 0)
    fail(errno, "VFIO_DEVICE_GET_REGION_INFO " + std::to_string(index));
  return info;
}

}  // namespace

PciFunction::PciFunction(Container& container, const std::string& address)
    : address_(address), fd_(container.open_device()), bars_(VFIO_PCI_ROM_REGION_INDEX) {
  try {
    vfio_device_info info{.argsz = sizeof(info), .flags = 0, .num_regions = 0, .num_irqs = 0};
    if (ioctl(fd_, VFIO_DEVICE_GET_INFO, &info) != 0) fail(errno, "VFIO_DEVICE_GET_INFO");
    if (!(info.flags & VFIO_DEVICE_FLAGS_PCI) || info.num_regions <= VFIO_PCI_CONFIG_REGION_INDEX)
      fail(ENODEV, address + " is not a VFIO PCI device");
    config_offset_ = region_info(fd_, VFIO_PCI_CONFIG_REGION_INDEX).offset;
  } catch (...) {
    close(fd_);
    throw;
  }
}

PciFunction::~PciFunction() {
  // Interrupts off before their eventfds close.
  if (irq_mode_ != IrqMode::kNone) {
    const uint32_t index = irq_mode_ == IrqMode::kMsix ? VFIO_PCI_MSIX_IRQ_INDEX : VFIO_PCI_INTX_IRQ_INDEX;
    vfio_irq_set off{.argsz = sizeof(off), .flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER,
                     .index = index, .start = 0, .count = 0};
    ioctl(fd_, VFIO_DEVICE_SET_IRQS, &off);
  }
  if (request_fd_ >= 0) {
    vfio_irq_set off{.argsz = sizeof(off), .flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER,
                     .index = VFIO_PCI_REQ_IRQ_INDEX, .start = 0, .count = 0};
    ioctl(fd_, VFIO_DEVICE_SET_IRQS, &off);
    close(request_fd_);
  }
  for (int fd : irq_fds_) close(fd);
  for (auto& b : bars_)
    if (b.base) munmap(b.base, b.size);
  close(fd_);
}

void PciFunction::read_config(uint32_t offset, std::span<std::byte> out) const {
  const ssize_t n = pread(fd_, out.data(), out.size(), static_cast<off_t>(config_offset_ + offset));
  if (n != static_cast<ssize_t>(out.size())) fail(n < 0 ? errno : EIO, "reading PCI config space");
}

void PciFunction::write_config(uint32_t offset, std::span<const std::byte> in) {
  const ssize_t n = pwrite(fd_, in.data(), in.size(), static_cast<off_t>(config_offset_ + offset));
  if (n != static_cast<ssize_t>(in.size())) fail(n < 0 ? errno : EIO, "writing PCI config space");
}

uint8_t PciFunction::config8(uint32_t offset) const {
  uint8_t v;
  read_config(offset, std::as_writable_bytes(std::span(&v, 1)));
  return v;
}
uint16_t PciFunction::config16(uint32_t offset) const {
  uint16_t v;  // PCI config space is little-endian, like every host this builds for
  read_config(offset, std::as_writable_bytes(std::span(&v, 1)));
  return v;
}
uint32_t PciFunction::config32(uint32_t offset) const {
  uint32_t v;
  read_config(offset, std::as_writable_bytes(std::span(&v, 1)));
  return v;
}

void PciFunction::enable_memory_only() {
  const uint16_t cmd = (config16(PCI_COMMAND) | PCI_COMMAND_MEMORY) & ~PCI_COMMAND_MASTER;
  write_config(PCI_COMMAND, std::as_bytes(std::span(&cmd, 1)));
}

void PciFunction::enable_bus_master() {
  const uint16_t cmd = config16(PCI_COMMAND) | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;
  write_config(PCI_COMMAND, std::as_bytes(std::span(&cmd, 1)));
}

void PciFunction::disable_bus_master() {
  const uint16_t cmd = config16(PCI_COMMAND) & ~PCI_COMMAND_MASTER;
  write_config(PCI_COMMAND, std::as_bytes(std::span(&cmd, 1)));
}

bool PciFunction::bus_master() const { return config16(PCI_COMMAND) & PCI_COMMAND_MASTER; }

volatile std::byte* PciFunction::map_bar(unsigned bar) {
  if (bar >= bars_.size()) fail(EINVAL, "BAR " + std::to_string(bar) + " does not exist");
  Bar& b = bars_[bar];
  if (b.base) return static_cast<volatile std::byte*>(b.base);
  const vfio_region_info info = region_info(fd_, bar);
  if (info.size == 0) fail(ENODEV, "BAR " + std::to_string(bar) + " is not implemented");
  if (!(info.flags & VFIO_REGION_INFO_FLAG_MMAP))
    fail(ENOTSUP, "BAR " + std::to_string(bar) + " cannot be mapped");
  void* p = mmap(nullptr, info.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd_,
                 static_cast<off_t>(info.offset));
  if (p == MAP_FAILED) fail(errno, "mapping BAR " + std::to_string(bar));
  b = Bar{p, static_cast<size_t>(info.size)};
  return static_cast<volatile std::byte*>(p);
}

size_t PciFunction::bar_size(unsigned bar) const {
  return bar < bars_.size() ? bars_[bar].size : 0;
}

uint32_t PciFunction::irq_count(uint32_t index) const {
  vfio_irq_info info{.argsz = sizeof(info), .flags = 0, .index = index, .count = 0};
  if (ioctl(fd_, VFIO_DEVICE_GET_IRQ_INFO, &info) != 0) return 0;
  return (info.flags & VFIO_IRQ_INFO_EVENTFD) ? info.count : 0;
}

bool PciFunction::set_irq_eventfds(uint32_t index, std::span<const int> fds) {
  std::vector<std::byte> buf(sizeof(vfio_irq_set) + fds.size() * sizeof(int));
  auto* set = reinterpret_cast<vfio_irq_set*>(buf.data());
  set->argsz = static_cast<uint32_t>(buf.size());
  set->flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
  set->index = index;
  set->start = 0;
  set->count = static_cast<uint32_t>(fds.size());
  std::memcpy(buf.data() + sizeof(vfio_irq_set), fds.data(), fds.size() * sizeof(int));
  return ioctl(fd_, VFIO_DEVICE_SET_IRQS, set) == 0;
}

std::span<const int> PciFunction::enable_interrupts(unsigned wanted) {
  struct Choice {
    uint32_t index;
    IrqMode mode;
  };
  // Virtio over PCI signals through MSI-X or INTx (virtio 1.x §4.1.4.5); plain MSI is not part
  // of the contract.
  for (Choice c : {Choice{VFIO_PCI_MSIX_IRQ_INDEX, IrqMode::kMsix}, Choice{VFIO_PCI_INTX_IRQ_INDEX, IrqMode::kIntx}}) {
    const uint32_t n = std::min<uint32_t>(irq_count(c.index), c.mode == IrqMode::kIntx ? 1 : wanted);
    if (n == 0) continue;
    std::vector<int> fds;
    for (uint32_t i = 0; i < n; ++i) {
      const int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
      if (fd < 0) {
        for (int f : fds) close(f);
        fail(errno, "eventfd for interrupts");
      }
      fds.push_back(fd);
    }
    if (set_irq_eventfds(c.index, fds)) {
      irq_fds_ = std::move(fds);
      irq_mode_ = c.mode;
      return irq_fds_;
    }
    for (int f : fds) close(f);
  }
  fail(ENOTSUP, "device " + address_ + ": no interrupt (MSI-X or INTx) can be delivered");
}

void PciFunction::unmask_intx() {
  vfio_irq_set unmask{.argsz = sizeof(unmask), .flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK,
                      .index = VFIO_PCI_INTX_IRQ_INDEX, .start = 0, .count = 1};
  ioctl(fd_, VFIO_DEVICE_SET_IRQS, &unmask);
}

int PciFunction::request_fd() {
  if (request_fd_ >= 0) return request_fd_;
  if (irq_count(VFIO_PCI_REQ_IRQ_INDEX) == 0) return -1;
  const int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0) return -1;
  if (!set_irq_eventfds(VFIO_PCI_REQ_IRQ_INDEX, std::span(&fd, 1))) {
    close(fd);
    return -1;
  }
  request_fd_ = fd;
  return fd;
}

}  // namespace virtiofs::vfio
