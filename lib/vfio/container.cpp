#include "vfio/container.hpp"

#include <fcntl.h>
#include <linux/vfio.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>

#include "virtio/setup_error.hpp"
#include "vfio/sysfs.hpp"

namespace virtiofs::vfio {

namespace {

std::string holders_suffix(const std::string& path) {
  std::string s;
  for (const auto& h : holders_of(path)) s += (s.empty() ? " (held by " : ", ") + h;
  return s.empty() ? s : s + ")";
}

}  // namespace

Container::Container(const std::string& pci_address) : pci_address_(pci_address) {
  const PciDevice dev = pci_device(pci_address);
  pci_address_ = dev.address;
  if (auto problem = vfio_problem(dev, true); !problem.empty())
    fail(dev.iommu_group ? EBUSY : ENODEV, problem);
  group_number_ = *dev.iommu_group;

  container_fd_ = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
  if (container_fd_ < 0)
    fail(errno, errno == EACCES ? "opening /dev/vfio/vfio: permission denied (run as root)"
                                : "opening /dev/vfio/vfio (is the vfio module loaded?)");
  try {
    if (ioctl(container_fd_, VFIO_GET_API_VERSION) != VFIO_API_VERSION)
      fail(EPROTO, "VFIO API version mismatch");
    const std::string group_path = "/dev/vfio/" + std::to_string(group_number_);
    group_fd_ = open(group_path.c_str(), O_RDWR | O_CLOEXEC);
    if (group_fd_ < 0) {
      const int err = errno;
      if (err == EBUSY) fail(EBUSY, "device " + pci_address_ + " is in use: " + group_path +
                                        " is already open" + holders_suffix(group_path));
      if (err == EACCES || err == EPERM)
        fail(err, "opening " + group_path + ": permission denied (run as root)");
      fail(err, "opening " + group_path);
    }
    vfio_group_status status{.argsz = sizeof(status)};
    if (ioctl(group_fd_, VFIO_GROUP_GET_STATUS, &status) != 0) fail(errno, "VFIO_GROUP_GET_STATUS");
    if (!(status.flags & VFIO_GROUP_FLAGS_VIABLE))
      fail(EBUSY, "IOMMU group " + std::to_string(group_number_) +
                      " is not viable: bind every device in it to vfio-pci");
    if (ioctl(group_fd_, VFIO_GROUP_SET_CONTAINER, &container_fd_) != 0)
      fail(errno, "VFIO_GROUP_SET_CONTAINER");
    int type = 0;
    if (ioctl(container_fd_, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) == 1) type = VFIO_TYPE1v2_IOMMU;
    else if (ioctl(container_fd_, VFIO_CHECK_EXTENSION, VFIO_TYPE1_IOMMU) == 1) type = VFIO_TYPE1_IOMMU;
    else fail(ENOTSUP, "VFIO has no type1 IOMMU (load vfio_iommu_type1)");
    if (ioctl(container_fd_, VFIO_SET_IOMMU, type) != 0)
      fail(errno, errno == EPERM
                      ? "VFIO_SET_IOMMU: no interrupt remapping (use intel-iommu,intremap=on or "
                        "vfio_iommu_type1 allow_unsafe_interrupts=1)"
                      : "VFIO_SET_IOMMU");

    // Valid IOVA ranges come as a capability of VFIO_IOMMU_GET_INFO (kernel 5.4+).
    std::vector<uint64_t> buf(512);
    auto* info = reinterpret_cast<vfio_iommu_type1_info*>(buf.data());
    info->argsz = static_cast<uint32_t>(buf.size() * sizeof(uint64_t));
    if (ioctl(container_fd_, VFIO_IOMMU_GET_INFO, info) != 0) fail(errno, "VFIO_IOMMU_GET_INFO");
    const size_t have = std::min<size_t>(info->argsz, buf.size() * sizeof(uint64_t));
    auto* bytes = reinterpret_cast<const std::byte*>(buf.data());
    if (info->flags & VFIO_IOMMU_INFO_CAPS) {
      uint32_t off = info->cap_offset;
      for (int guard = 0; off && off + sizeof(vfio_info_cap_header) <= have && guard < 16; ++guard) {
        vfio_info_cap_header h;
        std::memcpy(&h, bytes + off, sizeof(h));
        if (h.id == VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE &&
            off + sizeof(vfio_iommu_type1_info_cap_iova_range) <= have) {
          vfio_iommu_type1_info_cap_iova_range r;
          std::memcpy(&r, bytes + off, sizeof(r));
          const size_t first = off + sizeof(r);
          for (uint32_t i = 0; i < r.nr_iovas && first + (i + 1) * sizeof(vfio_iova_range) <= have; ++i) {
            vfio_iova_range range;
            std::memcpy(&range, bytes + first + i * sizeof(range), sizeof(range));
            iova_ranges_.push_back({range.start, range.end});
          }
        }
        off = h.next;
      }
    }
    if (iova_ranges_.empty()) iova_ranges_.push_back({0, (uint64_t{1} << 39) - 1});
  } catch (...) {
    if (group_fd_ >= 0) close(group_fd_);
    close(container_fd_);
    throw;
  }
}

Container::~Container() {
  for (auto it = mappings_.rbegin(); it != mappings_.rend(); ++it) {
    vfio_iommu_type1_dma_unmap unmap{.argsz = sizeof(unmap), .flags = 0, .iova = it->first, .size = it->second};
    ioctl(container_fd_, VFIO_IOMMU_UNMAP_DMA, &unmap);
  }
  if (group_fd_ >= 0) close(group_fd_);
  if (container_fd_ >= 0) close(container_fd_);
}

int Container::open_device() {
  const int fd = ioctl(group_fd_, VFIO_GROUP_GET_DEVICE_FD, pci_address_.c_str());
  if (fd < 0) {
    const int err = errno;
    if (err == EBUSY) fail(EBUSY, "device " + pci_address_ + " is in use by another VFIO user");
    fail(err, "VFIO_GROUP_GET_DEVICE_FD for " + pci_address_);
  }
  return fd;
}

bool Container::iova_valid(uint64_t iova, size_t bytes) const {
  if (bytes == 0 || iova + bytes - 1 < iova) return false;
  for (const auto& r : iova_ranges_)
    if (iova >= r.first && iova + bytes - 1 <= r.last) return true;
  return false;
}

uint64_t Container::find_iova(size_t bytes, size_t align, uint64_t at_least) const {
  for (const auto& r : iova_ranges_) {
    const uint64_t start = (std::max(r.first, at_least) + align - 1) & ~(uint64_t{align} - 1);
    if (iova_valid(start, bytes)) return start;
  }
  fail(ENOSPC, "no valid IOVA range holds " + std::to_string(bytes) + " bytes");
}

uint64_t highest_iova(const std::vector<IovaRange>& ranges, size_t bytes, size_t align, uint64_t ceiling) {
  uint64_t best = 0;
  bool found = false;
  for (const auto& r : ranges) {
    const uint64_t end = std::min(r.last, ceiling);  // inclusive
    // end - first + 1 wraps to 0 for [0, UINT64_MAX]: compare one less on both sides.
    if (bytes == 0 || end < r.first || end - r.first < bytes - 1) continue;
    const uint64_t start = (end - bytes + 1) & ~(uint64_t{align} - 1);
    if (start < r.first) continue;
    if (!found || start > best) best = start, found = true;
  }
  if (!found) fail(ENOSPC, "no valid IOVA range holds " + std::to_string(bytes) + " bytes");
  return best;
}

uint64_t Container::find_iova_top(size_t bytes, size_t align, uint64_t ceiling) const {
  return highest_iova(iova_ranges_, bytes, align, ceiling);
}

void Container::map_dma(void* vaddr, uint64_t iova, size_t bytes) {
  if (!iova_valid(iova, bytes))
    fail(EINVAL, "IOVA range outside what the IOMMU allows");
  vfio_iommu_type1_dma_map map{.argsz = sizeof(map),
                               .flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
                               .vaddr = reinterpret_cast<uint64_t>(vaddr),
                               .iova = iova,
                               .size = bytes};
  if (ioctl(container_fd_, VFIO_IOMMU_MAP_DMA, &map) != 0) fail(errno, "VFIO_IOMMU_MAP_DMA");
  mappings_.emplace_back(iova, bytes);
}

void Container::unmap_dma(uint64_t iova, size_t bytes) {
  vfio_iommu_type1_dma_unmap unmap{.argsz = sizeof(unmap), .flags = 0, .iova = iova, .size = bytes};
  if (ioctl(container_fd_, VFIO_IOMMU_UNMAP_DMA, &unmap) != 0) fail(errno, "VFIO_IOMMU_UNMAP_DMA");
  std::erase_if(mappings_, [&](auto& m) { return m.first == iova && m.second == bytes; });
}

}  // namespace virtiofs::vfio
