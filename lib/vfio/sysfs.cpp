#include "vfio/sysfs.hpp"

#include "virtio/setup_error.hpp"

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <regex>
#include <system_error>

namespace virtiofs::vfio {

namespace fs = std::filesystem;

namespace {

std::string read_line(const fs::path& p) {
  std::ifstream in(p);
  std::string line;
  std::getline(in, line);
  return line;
}

uint16_t read_hex_id(const fs::path& p) {
  try {
    return static_cast<uint16_t>(std::stoul(read_line(p), nullptr, 16));
  } catch (const std::exception&) {
    return 0;
  }
}

// Writes `text` to a sysfs attribute; the kernel's errno is the answer.
void write_attr(const fs::path& p, const std::string& text, const std::string& what) {
  FILE* f = fopen(p.c_str(), "w");
  if (!f)
    fail(errno, what + ": " + p.string() +
                    (errno == EACCES || errno == EROFS ? " (run as root)" : ""));
  const bool ok = fputs(text.c_str(), f) >= 0;
  const int err = errno;
  const bool closed = fclose(f) == 0;
  if (!ok || !closed) fail(ok ? errno : err, what);
}

PciDevice describe(const fs::path& dir) {
  PciDevice d;
  d.address = dir.filename();
  d.vendor = read_hex_id(dir / "vendor");
  d.device = read_hex_id(dir / "device");
  std::error_code ec;
  if (auto drv = fs::read_symlink(dir / "driver", ec); !ec) d.driver = drv.filename();
  if (auto grp = fs::read_symlink(dir / "iommu_group", ec); !ec) {
    try {
      d.iommu_group = std::stoi(grp.filename());
    } catch (const std::exception&) {
    }
  }
  return d;
}

// Iterates a directory, skipping what vanishes or is unreadable mid-way (/proc, sysfs).
template <class Fn>
void for_each_entry(const fs::path& dir, Fn&& fn) {
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) fn(it->path());
}

}  // namespace

std::string sysfs_pci_root() { return "/sys/bus/pci"; }

std::string pci_ids(uint16_t vendor, uint16_t device) {
  char buf[16];
  snprintf(buf, sizeof(buf), "%04x:%04x", vendor, device);
  return buf;
}

bool looks_like_pci_address(const std::string& text) {
  static const std::regex re("^([0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\\.[0-7]$");
  return std::regex_match(text, re);
}

std::string normalize_pci_address(const std::string& text) {
  std::string s = text.size() == 7 ? "0000:" + text : text;
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::vector<PciDevice> find_pci_devices(uint16_t vendor, uint16_t device) {
  std::vector<PciDevice> out;
  for_each_entry(sysfs_pci_root() + "/devices", [&](const fs::path& p) {
    PciDevice d = describe(p);
    if (d.vendor == vendor && d.device == device) out.push_back(std::move(d));
  });
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.address < b.address; });
  return out;
}

PciDevice pci_device(const std::string& address) {
  if (!looks_like_pci_address(address))
    fail(EINVAL, "'" + address + "' is not a PCI address (like 0000:00:03.0)");
  const fs::path dir = sysfs_pci_root() + "/devices/" + normalize_pci_address(address);
  std::error_code ec;
  if (!fs::exists(dir, ec)) {
    std::string present;
    for (const auto& d : find_pci_devices(kVirtioVendor, kVirtioFsDevice))
      present += (present.empty() ? "" : ", ") + d.address;
    fail(ENODEV, "no PCI device " + normalize_pci_address(address) + " (virtio-fs devices: " +
                     (present.empty() ? "none" : present) + ")");
  }
  return describe(dir);
}

std::string vfio_problem(const PciDevice& d, bool must_be_bound) {
  if (!d.iommu_group)
    return "device " + d.address +
           " has no IOMMU group: vfio-pci cannot take it (boot with intel_iommu=on or amd_iommu=on)";
  if (must_be_bound && d.driver != "vfio-pci")
    return "device " + d.address + " is bound to " + (d.driver.empty() ? std::string("no driver") : d.driver) +
           ", not vfio-pci (run: virtiofs bind " + d.address + ")";
  return "";
}

void bind_to_vfio(const std::string& address) {
  const PciDevice d = pci_device(address);
  if (d.driver == "vfio-pci") return;
  if (auto problem = vfio_problem(d, false); !problem.empty()) fail(ENODEV, problem);
  std::error_code ec;
  if (!fs::exists(sysfs_pci_root() + "/drivers/vfio-pci", ec))
    fail(ENOENT, "the vfio-pci driver is not loaded (modprobe vfio-pci)");
  const fs::path dir = sysfs_pci_root() + "/devices/" + d.address;
  write_attr(dir / "driver_override", "vfio-pci", "setting driver_override");
  if (!d.driver.empty()) write_attr(dir / "driver" / "unbind", d.address, "unbinding from " + d.driver);
  write_attr(sysfs_pci_root() + "/drivers_probe", d.address, "probing vfio-pci");
  if (pci_device(d.address).driver != "vfio-pci")
    fail(EIO, "vfio-pci did not take " + d.address + " (see dmesg)");
}

void unbind_from_vfio(const std::string& address) {
  const PciDevice d = pci_device(address);
  const fs::path dir = sysfs_pci_root() + "/devices/" + d.address;
  // A newline clears the override; the kernel then picks the device's own driver.
  write_attr(dir / "driver_override", "\n", "clearing driver_override");
  if (d.driver == "vfio-pci") write_attr(dir / "driver" / "unbind", d.address, "unbinding from vfio-pci");
  write_attr(sysfs_pci_root() + "/drivers_probe", d.address, "probing the kernel driver");
}

std::vector<std::string> holders_of(const std::string& path) {
  std::vector<std::string> out;
  for_each_entry("/proc", [&](const fs::path& proc) {
    const std::string pid = proc.filename();
    if (pid.empty() || !std::all_of(pid.begin(), pid.end(), ::isdigit)) return;
    bool holds = false;
    for_each_entry(proc / "fd", [&](const fs::path& fd) {
      std::error_code ec;
      holds = holds || fs::read_symlink(fd, ec) == path;
    });
    if (holds) out.push_back("pid " + pid + " (" + read_line(proc / "comm") + ")");
  });
  return out;
}

}  // namespace virtiofs::vfio
