// Tests that only make sense inside the VM rig's guest (tests/vm/run.sh), as root, with:
//   VIRTIOFS_TEST_PCI_DEVICE  the virtio-fs device under test, bound to vfio-pci
//   VIRTIOFS_TEST_OTHER_FS    a second virtio-fs device, bound to the kernel's virtio-pci
//   VIRTIOFS_TEST_RNG_DEVICE  a virtio-rng device with iommu_platform=on, bound to vfio-pci
//   VIRTIOFS_TEST_MOUNT_TOOL  the virtiofs-mount binary
//   VIRTIOFS_TEST_SHARED_VECTOR_DEVICE, VIRTIOFS_TEST_INTX_DEVICE
//                             virtio-fs devices with one MSI-X vector, and with none (INTx)
//   VIRTIOFS_TEST_RNG_FALLBACKS  rng devices (vfio-pci) with one MSI-X vector, and with none
// The physical-address path runs against the virtio-fs device (no ACCESS_PLATFORM); the IOVA
// path against the rng, which honours the vIOMMU.
#include <gtest/gtest.h>
#include <linux/pci_regs.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "vfio/discovery.hpp"
#include "vfio/vfio_transport.hpp"
#include "vfio/virtio_pci.hpp"
#include "virtio/features.hpp"
#include "virtio/split_ring.hpp"
#include "virtiofs/client.hpp"

namespace virtiofs::test {
namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

// The message Client::connect throws for these options ("" if it connects).
std::string connect_error(const Options& o) {
  try {
    Client::connect(o)->close();
    return "";
  } catch (const std::system_error& e) {
    return e.what();
  }
}

class VmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs_device = env("VIRTIOFS_TEST_PCI_DEVICE");
    if (fs_device.empty()) GTEST_SKIP() << "only inside the VM rig (tests/vm/run.sh)";
  }
  std::string fs_device;
};

// The PCI command register as sysfs reads it from the device (the first 64 bytes are anyone's).
uint16_t pci_command(const std::string& device) {
  std::ifstream config("/sys/bus/pci/devices/" + device + "/config", std::ios::binary);
  unsigned char bytes[PCI_COMMAND + 2] = {};
  config.read(reinterpret_cast<char*>(bytes), sizeof(bytes));
  return static_cast<uint16_t>(bytes[PCI_COMMAND] | bytes[PCI_COMMAND + 1] << 8);
}

// The device may master the bus (DMA) only while it runs for us: not while a new owner resets
// and sets it up (a previous owner's queues could still point at freed memory), and not after
// close, while the memory is going.
TEST_F(VmTest, BusMasteringOnlyWhileTheDeviceRuns) {
  {
    vfio::VfioTransport opened(fs_device);
    EXPECT_FALSE(pci_command(fs_device) & PCI_COMMAND_MASTER) << "mastering before the reset";
  }
  Options o;
  o.pci_device = fs_device;
  auto fs = Client::connect(o);
  EXPECT_TRUE(pci_command(fs_device) & PCI_COMMAND_MASTER) << "running without mastering";
  fs->close();  // the device fd is still open: what clears mastering is ours, not vfio-pci's
  EXPECT_FALSE(pci_command(fs_device) & PCI_COMMAND_MASTER) << "mastering left on after close";
}

// Many requests through a device whose interrupts take a fallback path: none may be lost.
void exercise(const std::string& device) {
  Options o;
  o.pci_device = device;
  auto fs = Client::connect(o);
  const std::string name = "fallback-" + device.substr(device.size() - 4);
  for (int i = 0; i < 300; ++i) {
    const std::string text = "round " + std::to_string(i);
    ASSERT_FALSE(fs->write_file(name, std::as_bytes(std::span(text.data(), text.size()))));
    std::string back;
    ASSERT_FALSE(fs->read_file(name, back));
    ASSERT_EQ(back, text);
  }
  EXPECT_FALSE(fs->unlink(name));
}

// Sets up every queue of `t` with small rings in `region`; returns queue 0's ring memory.
virtio::RingMemory setup_rings(virtio::Transport& t, virtio::DmaRegion& region, unsigned queues,
                               uint16_t size) {
  virtio::RingMemory first;
  t.register_memory(region);
  for (unsigned q = 0; q < queues; ++q) {
    virtio::RingMemory rm;
    rm.desc = reinterpret_cast<virtio::Desc*>(region.carve(virtio::desc_table_bytes(size), virtio::kDescAlign));
    rm.avail = reinterpret_cast<virtio::AvailRing*>(region.carve(virtio::avail_ring_bytes(size), virtio::kAvailAlign));
    rm.used = reinterpret_cast<virtio::UsedRing*>(region.carve(virtio::used_ring_bytes(size), 64));
    rm.desc_addr = region.device_addr(rm.desc);
    rm.avail_addr = region.device_addr(rm.avail);
    rm.used_addr = region.device_addr(rm.used);
    t.setup_queue({q, size, rm});
    if (q == 0) first = rm;
  }
  t.start();
  return first;
}

// Which interrupt mode the transport picked for `device`, and whether its queues share a call fd.
std::pair<vfio::IrqMode, bool> interrupt_setup(const std::string& device) {
  vfio::VfioTransport t(device);
  t.set_driver_features(t.device_features() & virtio::kDriverFeatures);
  auto region = t.allocate_memory(64 << 10, "irq-probe");
  setup_rings(t, *region, 2, 8);
  return {t.irq_mode(), t.call_fd(0) == t.call_fd(1)};
}

TEST_F(VmTest, PhysicalAddressPathOnTheVirtioFsDevice) {
  vfio::VfioTransport t(fs_device);
  EXPECT_EQ(t.device_features() & virtio::feature::kAccessPlatform, 0u);
  t.set_driver_features(t.device_features() & virtio::kDriverFeatures);
  EXPECT_EQ(t.addressing(), vfio::Addressing::kPhysical);
  auto region = t.allocate_memory(1 << 20, "vm-test");
  EXPECT_TRUE(region->per_granule());
  // Physical addresses of a 1 GiB guest, hugepage aligned.
  const uint64_t pa = region->device_addr(region->base());
  EXPECT_EQ(pa % virtio::DmaRegion::kHugePageBytes, 0u);
  EXPECT_LT(pa, uint64_t{4} << 30);
  const auto config = t.read_config();
  ASSERT_TRUE(config.tag.has_value());
  EXPECT_FALSE(config.tag->empty());
  EXPECT_GE(config.num_request_queues.value_or(0), 1u);
  ASSERT_TRUE(t.max_queues().has_value());
  EXPECT_GE(*t.max_queues(), 2u);
}

TEST_F(VmTest, IovaPathOnAnIommuHonouringRng) {
  const std::string rng = env("VIRTIOFS_TEST_RNG_DEVICE");
  if (rng.empty()) GTEST_SKIP() << "no virtio-rng device in this rig";
  vfio::VfioTransport t(rng, 0x1044);
  // The ring below runs without EVENT_IDX: the avail/used flags decide notifications.
  t.set_driver_features(t.device_features() & virtio::kDriverFeatures & ~virtio::feature::kRingEventIdx);
  ASSERT_EQ(t.addressing(), vfio::Addressing::kIova);
  auto region = t.allocate_memory(64 << 10, "rng");
  EXPECT_FALSE(region->per_granule());
  EXPECT_GE(region->device_base(), uint64_t{1} << 32);  // an IOVA of ours, not a physical address

  constexpr uint16_t kSize = 8;
  const virtio::RingMemory rm = setup_rings(t, *region, 1, kSize);
  virtio::SplitRing ring(kSize, rm, false, false);

  std::byte* buf = region->carve(4096, 4096);
  std::memset(buf, 0, 4096);
  const virtio::Segment seg{region->device_addr(buf), 64, true};
  ASSERT_FALSE(ring.add(std::span(&seg, 1), 7, nullptr));
  if (ring.kick_prepare()) t.notify(0);

  pollfd p{t.call_fd(0), POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, 10000), 1) << "no interrupt from the rng within 10 s";
  virtio::UsedElement used[1];
  std::error_code ec;
  ASSERT_EQ(ring.collect_used(used, ec), 1u);
  ASSERT_FALSE(ec);
  EXPECT_EQ(used[0].token, 7u);
  ASSERT_GT(used[0].len, 0u);
  ASSERT_LE(used[0].len, 64u);
  size_t nonzero = 0;
  for (uint32_t i = 0; i < used[0].len; ++i) nonzero += buf[i] != std::byte{0};
  EXPECT_GT(nonzero, used[0].len / 2) << "the device wrote through the IOMMU mapping";
}

// VmLck of this process in KiB: VFIO accounts the pages it pins there (and nothing here mlocks).
// Device memory is hugetlb, which mlock neither marks VM_LOCKED nor counts in VmLck (mm/mlock.c
// skips hugetlb VMAs), so only the VFIO pin can raise it here: an mlock in its place fails.
long locked_kib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmLck:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}

// Physical addresses are read only from pinned memory: mlock would let the kernel migrate the
// pages (and the device write into freed ones). The pin is VFIO's, so it shows in VmLck before
// the first read; then the 1:1 mappings, then a second read that checks nothing moved.
TEST_F(VmTest, DeviceMemoryIsPinnedBeforeItsAddressesAreRead) {
  vfio::VfioTransport t(fs_device);
  t.set_driver_features(t.device_features() & virtio::kDriverFeatures);
  ASSERT_EQ(t.addressing(), vfio::Addressing::kPhysical);
  const long before = locked_kib();
  ASSERT_GE(before, 0);
  std::vector<std::pair<std::string, long>> steps;
  t.observe_pinning([&](const char* step) { steps.emplace_back(step, locked_kib()); });
  auto region = t.allocate_memory(1 << 20, "pin-order");
  std::vector<std::string> names;
  for (auto& [name, kib] : steps)
    if (names.empty() || names.back() != name) names.push_back(name);
  // The vIOMMU translates all of a 1 GiB guest: every granule is mapped 1:1 too.
  EXPECT_EQ(names, (std::vector<std::string>{"pinned", "read", "mapped", "read"}));
  const auto first_read = std::find_if(steps.begin(), steps.end(), [](auto& s) { return s.first == "read"; });
  ASSERT_NE(first_read, steps.end());
  EXPECT_GE(first_read->second - before, static_cast<long>(region->size() >> 10))
      << "the addresses were read before VFIO pinned the memory";
}

// QEMU sets DEVICE_NEEDS_RESET on a device whose queues it serves itself (virtio_error) when the
// driver publishes a head the ring does not have, and raises the config interrupt. The rng is
// such a device: the transport's config watch must fire, on its own vector or (shared vector,
// INTx) routed by rearm_interrupt from the queue interrupt, and config_changed() say EIO.
void expect_needs_reset_seen(const std::string& device) {
  vfio::VfioTransport t(device, 0x1044);
  t.set_driver_features(t.device_features() & virtio::kDriverFeatures & ~virtio::feature::kRingEventIdx);
  auto region = t.allocate_memory(64 << 10, "needs-reset");
  constexpr uint16_t kSize = 8;
  const virtio::RingMemory rm = setup_rings(t, *region, 1, kSize);
  const auto watch = t.config_watch();
  ASSERT_GE(watch.fd, 0);
  EXPECT_NE(watch.fd, t.call_fd(0)) << "the config watch must not steal queue interrupts";
  EXPECT_FALSE(t.config_changed()) << "a healthy device reported as broken";

  rm.avail->ring[0].store(0xffff);  // no such descriptor
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
  rm.avail->idx.store(1);
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
  t.notify(0);
  bool seen = false;
  for (int turn = 0; turn < 100 && !seen; ++turn) {
    std::array<pollfd, 2> p{{{watch.fd, POLLIN, 0}, {t.call_fd(0), POLLIN, 0}}};
    ASSERT_GE(poll(p.data(), p.size(), 10000), 1) << "no interrupt within 10 s";
    if (p[1].revents & POLLIN) {
      uint64_t count;
      [[maybe_unused]] ssize_t n = read(t.call_fd(0), &count, sizeof(count));
      t.rearm_interrupt(0);
    }
    seen = p[0].revents & POLLIN;
    if (!seen) {
      pollfd again{watch.fd, POLLIN, 0};
      seen = poll(&again, 1, 0) == 1;
    }
  }
  ASSERT_TRUE(seen) << "the config interrupt never reached the config watch";
  EXPECT_EQ(t.config_changed(), std::errc::io_error);
}

TEST_F(VmTest, NeedsResetComesOnTheConfigVector) {
  const std::string rng = env("VIRTIOFS_TEST_RNG_DEVICE");
  if (rng.empty()) GTEST_SKIP() << "no virtio-rng device in this rig";
  expect_needs_reset_seen(rng);
}

TEST_F(VmTest, NeedsResetOnASharedVectorAndOnIntx) {
  // VIRTIOFS_TEST_RNG_FALLBACKS: rng devices with one MSI-X vector and with none.
  std::istringstream list(env("VIRTIOFS_TEST_RNG_FALLBACKS"));
  std::string device;
  std::vector<vfio::IrqMode> modes;
  while (list >> device) {
    SCOPED_TRACE(device);
    {
      vfio::VfioTransport probe(device, 0x1044);
      probe.set_driver_features(probe.device_features() & virtio::kDriverFeatures);
      auto region = probe.allocate_memory(64 << 10, "probe");
      setup_rings(probe, *region, 1, 8);
      modes.push_back(probe.irq_mode());
    }
    expect_needs_reset_seen(device);
  }
  if (modes.empty()) GTEST_SKIP() << "VIRTIOFS_TEST_RNG_FALLBACKS not set";
  EXPECT_EQ(modes, (std::vector<vfio::IrqMode>{vfio::IrqMode::kMsix, vfio::IrqMode::kIntx}));
}

TEST_F(VmTest, MsixVectorPerQueue) {
  const auto [mode, shared] = interrupt_setup(fs_device);
  EXPECT_EQ(mode, vfio::IrqMode::kMsix);
  EXPECT_FALSE(shared);
}

// A device whose interrupts take a fallback path: all queues on one eventfd, nothing lost.
void check_fallback(const char* device_env, vfio::IrqMode expected) {
  const std::string device = env(device_env);
  if (device.empty()) GTEST_SKIP() << device_env << " not set";
  const auto [mode, shared] = interrupt_setup(device);
  EXPECT_EQ(mode, expected);
  EXPECT_TRUE(shared);
  exercise(device);
}

TEST_F(VmTest, OneMsixVectorSharedByAllQueues) {
  check_fallback("VIRTIOFS_TEST_SHARED_VECTOR_DEVICE", vfio::IrqMode::kMsix);
}

TEST_F(VmTest, IntxWithoutMsix) { check_fallback("VIRTIOFS_TEST_INTX_DEVICE", vfio::IrqMode::kIntx); }

TEST_F(VmTest, NoSuchDevice) {
  Options o;
  o.pci_device = "0000:00:1f.7";
  EXPECT_NE(connect_error(o).find("no PCI device 0000:00:1f.7 (virtio-fs devices: "), std::string::npos)
      << connect_error(o);
}

TEST_F(VmTest, WrongTag) {
  Options o;
  o.pci_device = fs_device;
  o.tag = "not-this-one";
  const std::string e = connect_error(o);
  EXPECT_NE(e.find("the device's tag is '"), std::string::npos) << e;
  EXPECT_NE(e.find("not 'not-this-one'"), std::string::npos) << e;
}

TEST_F(VmTest, DeviceBoundToAnotherDriver) {
  const std::string other = env("VIRTIOFS_TEST_OTHER_FS");
  if (other.empty()) GTEST_SKIP();
  Options o;
  o.pci_device = other;
  const std::string e = connect_error(o);
  EXPECT_NE(e.find("is bound to virtio-pci, not vfio-pci (run: virtiofs bind " + other + ")"),
            std::string::npos) << e;
}

// Discovery reads the tag of a device another driver uses and leaves it as found: the virtio
// PCI configuration access window (whose registers select what it reads) is put back.
TEST_F(VmTest, DiscoveryLeavesADeviceAnotherDriverUsesUntouched) {
  const std::string other = env("VIRTIOFS_TEST_OTHER_FS");
  if (other.empty()) GTEST_SKIP();
  const int fd = ::open(("/sys/bus/pci/devices/" + other + "/config").c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  auto read = [&](uint32_t offset, std::span<std::byte> out) {
    if (pread(fd, out.data(), out.size(), offset) != static_cast<ssize_t>(out.size()))
      throw std::runtime_error("config space read at " + std::to_string(offset));
  };
  const vfio::VirtioPciLayout layout = vfio::parse_virtio_caps(read);
  ASSERT_TRUE(layout.pci_cfg_window);
  const uint32_t regs = *layout.pci_cfg_window + 4;  // bar (and padding), offset, length
  std::array<std::byte, 12> original{}, before{}, after{};
  read(regs, original);
  // Marks all three registers with values discovery never writes (no driver uses the window).
  const uint8_t bar_mark = 2;
  const uint32_t offset_mark = 0x5a5a0, length_mark = 2;
  ASSERT_EQ(pwrite(fd, &bar_mark, 1, regs), 1);
  ASSERT_EQ(pwrite(fd, &offset_mark, 4, regs + 4), 4);
  ASSERT_EQ(pwrite(fd, &length_mark, 4, regs + 8), 4);
  read(regs, before);
  uint32_t offset_now = 0;
  std::memcpy(&offset_now, before.data() + 4, 4);
  ASSERT_EQ(offset_now, offset_mark);
  bool found = false;
  for (const auto& d : vfio::probe_fs_devices())
    if (d.pci.address == other) found = d.tag.has_value();
  EXPECT_TRUE(found) << "the other device's tag was not read";
  read(regs, after);
  EXPECT_EQ(before, after) << "discovery left the window of a device another driver uses changed";
  // Puts back what the test marked.
  EXPECT_EQ(pwrite(fd, original.data(), 1, regs), 1);
  EXPECT_EQ(pwrite(fd, original.data() + 4, 8, regs + 4), 8);
  ::close(fd);
}

TEST_F(VmTest, NotRoot) {
  int pipefd[2];
  ASSERT_EQ(pipe(pipefd), 0);
  const pid_t pid = fork();
  if (pid == 0) {
    close(pipefd[0]);
    if (setgid(65534) != 0 || setuid(65534) != 0) _exit(3);
    Options o;
    o.pci_device = fs_device;
    std::string e = connect_error(o);
    // Discovery as a user says why it cannot read the tag.
    for (const auto& d : vfio::probe_fs_devices())
      if (d.pci.address == fs_device) e += " | probe: " + d.unreadable;
    [[maybe_unused]] ssize_t n = write(pipefd[1], e.data(), e.size());
    _exit(0);
  }
  close(pipefd[1]);
  char buf[1024] = {};
  ssize_t n = read(pipefd[0], buf, sizeof(buf) - 1);
  close(pipefd[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_GT(n, 0);
  EXPECT_NE(std::string(buf).find("permission denied (run as root)"), std::string::npos) << buf;
  EXPECT_NE(std::string(buf).find("| probe: needs root"), std::string::npos) << buf;
}

TEST_F(VmTest, DeviceInUseNamesItsHolder) {
  const std::string tool = env("VIRTIOFS_TEST_MOUNT_TOOL");
  if (tool.empty()) GTEST_SKIP();
  char dir[] = "/tmp/vm-inuse.XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  std::string tag;
  {
    vfio::VfioTransport probe(fs_device);
    tag = probe.read_config().tag.value_or("");
  }
  ASSERT_EQ(std::system((tool + " " + tag + " " + dir).c_str()), 0);
  Options o;
  o.pci_device = fs_device;
  const std::string e = connect_error(o);
  EXPECT_NE(e.find("is in use"), std::string::npos) << e;
  EXPECT_NE(e.find("(held by pid "), std::string::npos) << e;
  EXPECT_NE(e.find("virtiofs-mount"), std::string::npos) << e;
  EXPECT_EQ(umount(dir), 0);
  // The tool exits once unmounted; the device is free again.
  bool free_again = false;
  for (int i = 0; i < 100 && !free_again; ++i) {
    free_again = connect_error(o).empty();
    if (!free_again) usleep(100000);
  }
  EXPECT_TRUE(free_again);
  rmdir(dir);
}

}  // namespace
}  // namespace virtiofs::test
