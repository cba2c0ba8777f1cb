// The VFIO transport's pure parts, on the host: virtio PCI capability parsing from a synthetic
// config space (well-formed and hostile), PCI addresses, the one-line VFIO problems, and device
// memory carved so that no piece crosses a physically discontiguous granule.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <string>
#include <vector>

#include "vfio/container.hpp"
#include "vfio/physical_memory.hpp"
#include "vfio/sysfs.hpp"
#include "vfio/virtio_pci.hpp"
#include "mount/entry_carving.hpp"
#include "virtio/dma_region.hpp"

namespace virtiofs::vfio {
namespace {

// A 256-byte config space with a capability list we write by hand.
struct ConfigSpace {
  std::array<uint8_t, 256> bytes{};
  ConfigSpace() {
    bytes[0x06] = 0x10;  // status: capability list
  }
  void cap(uint8_t at, uint8_t next, uint8_t type, uint8_t bar, uint32_t offset, uint32_t length,
           uint8_t len = 16) {
    bytes[at] = 0x09;
    bytes[at + 1] = next;
    bytes[at + 2] = len;
    bytes[at + 3] = type;
    bytes[at + 4] = bar;
    std::memcpy(&bytes[at + 8], &offset, 4);
    std::memcpy(&bytes[at + 12], &length, 4);
  }
  ConfigReader reader() const {
    return [this](uint32_t off, std::span<std::byte> out) {
      ASSERT_LE(off + out.size(), bytes.size());
      std::memcpy(out.data(), &bytes[off], out.size());
    };
  }
};

// The layout QEMU's vhost-user-fs-pci shows (DESIGN.md §5).
ConfigSpace qemu_like() {
  ConfigSpace c;
  c.bytes[0x34] = 0x40;
  c.cap(0x40, 0x54, 1, 4, 0x0, 0x1000);
  c.cap(0x54, 0x64, 3, 4, 0x1000, 0x1000);
  c.cap(0x64, 0x74, 4, 4, 0x2000, 0x1000);
  c.cap(0x74, 0x88, 2, 4, 0x3000, 0x1000, 20);
  const uint32_t multiplier = 4;
  std::memcpy(&c.bytes[0x74 + 16], &multiplier, 4);
  c.cap(0x88, 0x00, 5, 0, 0, 0, 20);
  return c;
}

TEST(VirtioCaps, ParsesTheQemuLayout) {
  const auto c = qemu_like();
  const VirtioPciLayout l = parse_virtio_caps(c.reader());
  ASSERT_TRUE(l.common && l.notify && l.isr && l.device);
  EXPECT_EQ(l.common->bar, 4);
  EXPECT_EQ(l.isr->offset, 0x1000u);
  EXPECT_EQ(l.device->offset, 0x2000u);
  EXPECT_EQ(l.notify->offset, 0x3000u);
  EXPECT_EQ(l.notify_multiplier, 4u);
  EXPECT_EQ(l.pci_cfg_window, std::optional<uint8_t>(0x88));
  EXPECT_FALSE(l.shared_memory);
}

TEST(VirtioCaps, FirstCapabilityOfATypeWins) {
  auto c = qemu_like();
  c.cap(0x88, 0xa0, 5, 0, 0, 0, 20);
  c.cap(0xa0, 0x00, 1, 2, 0x500, 0x100);  // a second common cfg: ignored
  EXPECT_EQ(parse_virtio_caps(c.reader()).common->bar, 4);
}

TEST(VirtioCaps, LoopsAndWildPointersAreRejected) {
  auto loop = qemu_like();
  loop.bytes[0x88 + 1] = 0x40;  // last cap points back at the first
  EXPECT_THROW(parse_virtio_caps(loop.reader()), std::system_error);
  auto wild = qemu_like();
  wild.bytes[0x34] = 0x10;  // inside the standard header
  EXPECT_THROW(parse_virtio_caps(wild.reader()), std::system_error);
  auto overlong = qemu_like();
  overlong.bytes[0x88 + 2] = 0x90;  // runs past the end of config space
  EXPECT_THROW(parse_virtio_caps(overlong.reader()), std::system_error);
}

TEST(VirtioCaps, NoCapabilityListIsNotAVirtioDevice) {
  ConfigSpace c;
  c.bytes[0x06] = 0;
  EXPECT_THROW(parse_virtio_caps(c.reader()), std::system_error);
}

TEST(VirtioCaps, BadBarNumbersAreIgnored) {
  auto c = qemu_like();
  c.cap(0x40, 0x54, 1, 7, 0x0, 0x1000);  // BAR 7 does not exist
  EXPECT_FALSE(parse_virtio_caps(c.reader()).common);
}

TEST(PciAddress, Forms) {
  EXPECT_TRUE(looks_like_pci_address("0000:00:03.0"));
  EXPECT_TRUE(looks_like_pci_address("00:03.0"));
  EXPECT_FALSE(looks_like_pci_address("myfs"));
  EXPECT_FALSE(looks_like_pci_address("00:03.8"));
  EXPECT_EQ(normalize_pci_address("00:0A.1"), "0000:00:0a.1");
}

TEST(VfioProblem, NamesTheFix) {
  PciDevice d{"0000:00:04.0", kVirtioVendor, kVirtioFsDevice, "virtio-pci", 3};
  EXPECT_EQ(vfio_problem(d, true),
            "device 0000:00:04.0 is bound to virtio-pci, not vfio-pci (run: virtiofs bind 0000:00:04.0)");
  EXPECT_EQ(vfio_problem(d, false), "");
  d.iommu_group.reset();
  EXPECT_NE(vfio_problem(d, false).find("has no IOMMU group"), std::string::npos);
  EXPECT_NE(vfio_problem(d, false).find("intel_iommu=on"), std::string::npos);
  d.driver.clear();
  d.iommu_group = 5;
  EXPECT_NE(vfio_problem(d, true).find("bound to no driver"), std::string::npos);
}

TEST(DmaRegionGranules, PiecesNeverCrossADiscontinuity) {
  const size_t g = 64 << 10;  // granules of 64 KiB stand in for hugepages
  virtio::DmaRegion r(8 * g, 0, "granules");
  // Granules in reverse physical order, as a fresh allocation may well be.
  std::vector<uint64_t> addr;
  for (size_t i = 0; i < 8; ++i) addr.push_back(0x100000000ull - (i + 1) * g);
  r.set_granule_addresses(g, addr);
  std::byte* a = r.carve(g - 4096, 4096);
  std::byte* b = r.carve(8192, 64);  // would cross: moves to the next granule
  EXPECT_EQ(static_cast<size_t>(b - r.base()), g);
  EXPECT_TRUE(r.contiguous(b, 8192));
  EXPECT_FALSE(r.contiguous(a + g - 8192, 16384));
  EXPECT_EQ(r.device_addr(b + 100), addr[1] + 100);
  std::byte* big = r.carve(3 * g, 4096);  // larger than a granule: starts on a boundary
  EXPECT_EQ(static_cast<size_t>(big - r.base()) % g, 0u);
  EXPECT_EQ(r.device_addr(big + g + 5), addr[(big - r.base()) / g + 1] + 5);
  EXPECT_THROW(r.carve(4 * g, 4096), std::system_error);
}

TEST(DmaRegionGranules, LinearTranslationByDefault) {
  virtio::DmaRegion r(1 << 20, 0x40000000, "linear");
  std::byte* p = r.carve(300000, 64);
  EXPECT_FALSE(r.per_granule());
  EXPECT_TRUE(r.contiguous(p, 300000));
  EXPECT_EQ(r.device_addr(p + 7), 0x40000000u + static_cast<size_t>(p - r.base()) + 7);
  EXPECT_THROW(r.set_granule_addresses(4096, {}), std::system_error);
}

// FUSE over io_uring entries (16 KiB head + 1 MiB payload, as the bridge uses them) in 2 MiB
// granules: carved back to back they straddle every other boundary and the device's buffer
// fails with EFAULT in physical-address mode.
TEST(EntryCarving, NoPieceStraddlesAGranuleWhereverTheMemoryStarts) {
  constexpr size_t g = virtio::DmaRegion::kHugePageBytes, head = 16 << 10, payload = 1 << 20;
  for (size_t count : {1u, 2u, 3u, 7u, 64u}) {
    for (size_t start = 0; start < g; start += 4096) {
      const mount::EntryCarving c = mount::carve_entries(count, head, payload, g, start);
      ASSERT_EQ(c.entries.size(), count);
      ASSERT_LE(c.bytes, mount::entry_memory_bytes(count, head, payload, g)) << "start " << start;
      std::vector<std::pair<size_t, size_t>> pieces;
      for (const auto& e : c.entries) {
        pieces.push_back({e.head, head});
        pieces.push_back({e.payload, payload});
      }
      std::sort(pieces.begin(), pieces.end());
      for (size_t i = 0; i < pieces.size(); ++i) {
        const auto [off, len] = pieces[i];
        const size_t first = start + off, last = first + len - 1;
        ASSERT_EQ(first / g, last / g) << "count " << count << " start " << start << " at " << off;
        ASSERT_LE(off + len, c.bytes);
        if (i + 1 < pieces.size()) {
          ASSERT_LE(off + len, pieces[i + 1].first) << "overlap";
        }
      }
    }
  }
}

TEST(EntryCarving, PacksWithoutWasteFromABoundary) {
  constexpr size_t g = size_t{2} << 20, head = 16 << 10, payload = 1 << 20;
  // Two payloads per granule, then 128 heads per granule: nothing skipped.
  EXPECT_EQ(mount::carve_entries(64, head, payload, g, 0).bytes, 64 * (head + payload));
  EXPECT_TRUE(mount::carve_entries(1, head, 3 << 20, g, 0).entries.empty());  // cannot fit
}

// ---- Physical-address memory: pin, read, map 1:1, verify; undo on every failure ----

constexpr uint64_t kPresentBit = uint64_t{1} << 63;

// Pagemap entries for granules of `per` pages starting at the given frame numbers.
std::vector<uint64_t> pagemap_of(std::vector<uint64_t> first_pfns, size_t per) {
  std::vector<uint64_t> e;
  for (uint64_t pfn : first_pfns)
    for (size_t i = 0; i < per; ++i) e.push_back(kPresentBit | (pfn + i));
  return e;
}

TEST(GranuleAddresses, ContiguousRunsPresentAndVisible) {
  EXPECT_EQ(granule_addresses(pagemap_of({0x200, 0x100}, 4), 4, 4 * 4096),
            (std::vector<uint64_t>{0x200000, 0x100000}));
  auto broken = pagemap_of({0x200}, 4);
  broken[2] += 1;
  EXPECT_THROW(granule_addresses(broken, 4, 4 * 4096), std::system_error);  // not contiguous
  auto absent = pagemap_of({0x200}, 4);
  absent[1] &= ~kPresentBit;
  EXPECT_THROW(granule_addresses(absent, 4, 4 * 4096), std::system_error);
  std::vector<uint64_t> hidden(4, kPresentBit);  // pfn 0: not root
  try {
    granule_addresses(hidden, 4, 4 * 4096);
    ADD_FAILURE() << "hidden frame numbers accepted";
  } catch (const std::system_error& e) {
    EXPECT_NE(std::string(e.what()).find("root"), std::string::npos) << e.what();
  }
}

// Records the steps; pagemap reads return what `reads` holds, one per read.
struct FakePinning {
  std::vector<std::string> log;
  std::vector<std::vector<uint64_t>> reads;
  bool pinned = false;
  size_t mapped = 0;
  std::string fail_at;  // a step that throws
  uint64_t translated_below = ~uint64_t{0};  // what the IOMMU takes 1:1
  std::pair<uint64_t, size_t> scratch{0, 0};  // the IOVA range the pin takes

  PinSteps steps() {
    PinSteps s;
    auto step = [this](const std::string& name) {
      log.push_back(name);
      if (name == fail_at) throw std::system_error(ENOMEM, std::generic_category(), name);
    };
    s.pin = [this, step](std::byte*, size_t) {
      step("pin");
      pinned = true;
      return scratch;
    };
    s.unpin = [this, step] { step("unpin"); pinned = false; };
    s.read_pagemap = [this, step](const std::byte*, size_t) {
      // Reading an address that is not pinned yet is the bug this order prevents.
      step(pinned ? "read" : "read-unpinned");
      auto r = reads.at(0);
      if (reads.size() > 1) reads.erase(reads.begin());
      return r;
    };
    s.can_map = [this](uint64_t phys, size_t bytes) { return phys + bytes <= translated_below; };
    s.map = [this, step](std::byte*, uint64_t, size_t) { step("map"); ++mapped; };
    s.unmap = [this, step](uint64_t, size_t) { step("unmap"); --mapped; };
    return s;
  }
};

constexpr size_t kPer = 4, kGranule = kPer * 4096;
alignas(4096) std::byte pin_memory[2 * kGranule];

TEST(PinPhysical, PinsBeforeReadingThenMapsThenVerifies) {
  FakePinning f;
  f.reads = {pagemap_of({0x400, 0x300}, kPer)};
  f.translated_below = 0x400000;  // the first granule is beyond what the IOMMU translates
  EXPECT_EQ(pin_physical(pin_memory, sizeof(pin_memory), kGranule, f.steps()),
            (std::vector<uint64_t>{0x400000, 0x300000}));
  EXPECT_EQ(f.log, (std::vector<std::string>{"pin", "read", "map", "read"}));
  EXPECT_TRUE(f.pinned);
}

// A granule whose physical address lies in the pin's own IOVA range: the IOMMU allows the
// address, but the 1:1 map would fail (EEXIST) with a misleading message. Refused, saying why.
TEST(PinPhysical, AGranuleInsideThePinsIovaRangeIsRefused) {
  FakePinning f;
  f.reads = {pagemap_of({0x300, 0x401}, kPer)};
  f.scratch = {0x400000, 2 * kGranule};  // holds the second granule's 0x401000
  try {
    pin_physical(pin_memory, sizeof(pin_memory), kGranule, f.steps());
    ADD_FAILURE() << "a granule inside the pin's IOVA range was accepted";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), EEXIST);
    EXPECT_NE(std::string(e.what()).find("401000"), std::string::npos) << e.what();
  }
  EXPECT_EQ(f.log, (std::vector<std::string>{"pin", "read", "unpin"}));
  EXPECT_FALSE(f.pinned);
}

TEST(PinPhysical, EveryFailureAfterThePinUndoesIt) {
  struct Case {
    std::string fail_at;
    std::vector<std::vector<uint64_t>> reads;
    std::vector<std::string> expected;
  };
  auto noncontiguous = pagemap_of({0x300, 0x500}, kPer);
  noncontiguous[5] += 7;
  const std::vector<Case> cases = {
      {"pin", {pagemap_of({0x300, 0x500}, kPer)}, {"pin"}},
      {"", {noncontiguous}, {"pin", "read", "unpin"}},
      {"map", {pagemap_of({0x300, 0x500}, kPer)}, {"pin", "read", "map", "unpin"}},
      // The addresses changed between the reads: whatever was mapped goes, then the pin.
      {"", {pagemap_of({0x300, 0x500}, kPer), pagemap_of({0x300, 0x700}, kPer)},
       {"pin", "read", "map", "map", "read", "unmap", "unmap", "unpin"}},
  };
  for (const Case& c : cases) {
    FakePinning f;
    f.fail_at = c.fail_at;
    f.reads = c.reads;
    EXPECT_THROW(pin_physical(pin_memory, sizeof(pin_memory), kGranule, f.steps()), std::system_error);
    EXPECT_EQ(f.log, c.expected) << "failing at " << c.fail_at;
    EXPECT_FALSE(f.pinned);
    EXPECT_EQ(f.mapped, 0u);
  }
}

// The pin's scratch IOVA: at the top of what the IOMMU allows (the vIOMMU's 39 bits less the
// MSI hole), below the previous pin, aligned, or none.
TEST(ScratchIova, HighestAlignedFitBelowTheCeiling) {
  const std::vector<IovaRange> ranges = {{0, 0xfedfffff}, {0xfef00000, (uint64_t{1} << 39) - 1}};
  constexpr size_t kMiB = 1 << 20, k2M = 2 * kMiB;
  EXPECT_EQ(highest_iova(ranges, 6 * kMiB, k2M, ~uint64_t{0}), (uint64_t{1} << 39) - 6 * kMiB);
  // The next pin goes below the first.
  const uint64_t first = highest_iova(ranges, 6 * kMiB, k2M, ~uint64_t{0});
  EXPECT_EQ(highest_iova(ranges, 4 * kMiB, k2M, first - 1), first - 4 * kMiB);
  // Too little room under the ceiling in the upper range: the lower one, its end less 3 MiB
  // (0xfeb00000) rounded down to 2 MiB.
  EXPECT_EQ(highest_iova(ranges, 3 * kMiB, k2M, 0xfef80000), 0xfea00000u);
  EXPECT_THROW(highest_iova(ranges, 3 * kMiB, k2M, kMiB), std::system_error);
  EXPECT_THROW(highest_iova({}, 4096, 4096, ~uint64_t{0}), std::system_error);
  // The whole 64-bit space is one valid range (its length does not fit in 64 bits).
  EXPECT_EQ(highest_iova({{0, ~uint64_t{0}}}, 4096, 4096, ~uint64_t{0}), ~uint64_t{0} - 4095);
}

}  // namespace
}  // namespace virtiofs::vfio
