// Ring micro-benchmarks (Google Benchmark): what one request costs the driver side of a split
// ring in-process, from add to collected completion, with the in-process device model playing
// the device. Batched variants show what batch publication and batch reaping save.
#include <benchmark/benchmark.h>

#include <array>
#include <vector>

#include "support/device_model.hpp"
#include "virtio/split_ring.hpp"

using namespace virtiofs;
using virtiofs::test::DeviceModel;
using virtiofs::test::TestRingMemory;

namespace {

struct Rig {
  explicit Rig(uint16_t size, bool event_idx, bool indirect)
      : mem(size), ring(size, mem.ring, event_idx, indirect), device(mem.ring, size, event_idx) {
    for (uint16_t i = 0; i < size; ++i) tables.push_back(mem.make_table(4));
  }
  TestRingMemory mem;
  virtio::SplitRing ring;
  DeviceModel device;
  std::vector<virtio::IndirectTable> tables;
  std::array<std::byte, 4096> in{}, out{};
};

// One request: add (2 segments: request, reply), kick_prepare, the device takes and completes
// it, the driver collects it.
void add_kick_complete(benchmark::State& state) {
  const bool indirect = state.range(0) != 0;
  Rig rig(256, true, indirect);
  const virtio::Segment segs[2] = {{reinterpret_cast<uint64_t>(rig.in.data()), 64, false},
                                   {reinterpret_cast<uint64_t>(rig.out.data()), 128, true}};
  std::array<virtio::UsedElement, 1> used;
  std::error_code ec;
  for (auto _ : state) {
    if (rig.ring.add(segs, 7, indirect ? &rig.tables[0] : nullptr)) state.SkipWithError("add");
    benchmark::DoNotOptimize(rig.ring.kick_prepare());
    auto chain = rig.device.pop();
    rig.device.push(chain->head, 128);
    benchmark::DoNotOptimize(rig.device.should_interrupt());
    if (rig.ring.collect_used(used, ec) != 1) state.SkipWithError("collect");
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(add_kick_complete)->Arg(0)->Arg(1)->ArgName("indirect");

// 32 requests per round: one publication, one device pass, one reaping pass.
void batch_of_32(benchmark::State& state) {
  Rig rig(256, true, true);
  const virtio::Segment segs[2] = {{reinterpret_cast<uint64_t>(rig.in.data()), 64, false},
                                   {reinterpret_cast<uint64_t>(rig.out.data()), 128, true}};
  std::array<virtio::UsedElement, 32> used;
  std::error_code ec;
  for (auto _ : state) {
    for (uint32_t i = 0; i < 32; ++i)
      if (rig.ring.add(segs, i, &rig.tables[i])) state.SkipWithError("add");
    benchmark::DoNotOptimize(rig.ring.kick_prepare());
    while (auto chain = rig.device.pop()) rig.device.push(chain->head, 128);
    benchmark::DoNotOptimize(rig.device.should_interrupt());
    if (rig.ring.collect_used(used, ec) != 32) state.SkipWithError("collect");
  }
  state.SetItemsProcessed(state.iterations() * 32);
}
BENCHMARK(batch_of_32);

}  // namespace

BENCHMARK_MAIN();
