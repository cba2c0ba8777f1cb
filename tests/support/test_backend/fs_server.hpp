// Test fixture: serves FUSE requests that arrive on the test backend's virtqueues from a MemFs,
// with the misbehaviour a test asks for: delays, reordered completions, held requests that only
// an INTERRUPT (or a timeout) ends, and the faults of a FaultPlan. Counts what each queue saw.
#pragma once

#include <linux/fuse.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "support/test_backend/fault_plan.hpp"
#include "support/test_backend/memfs.hpp"
#include "support/device_queues.hpp"

namespace virtiofs::test {

struct ServerOptions {
  unsigned delay_us = 0;               // device time per request, serial on its queue
  bool reorder = false;                // complete each batch in reverse order
  std::optional<uint32_t> hold;        // opcode whose requests wait for an INTERRUPT...
  unsigned hold_ms = 0;                // ...or this long, then get their real answer (0: forever)
};

class FsServer final : public ChainHandler {
 public:
  FsServer(MemFs& fs, FaultPlan& faults, const ServerOptions& options);
  ~FsServer() override;
  // The device whose queues this serves (the vhost-user backend or the loopback device).
  void attach(DeviceQueues& device);
  // Stops the hold timer and drops held requests: call before the device goes away.
  void detach();
  void on_chains(unsigned queue, std::vector<DeviceChain>& chains) override;
  // "queue I requests N", "opcode NAME N", "forget_entries N", ... one per line.
  std::string stats_text() const;

 private:
  using Used = DeviceQueues::Used;
  struct Request {
    unsigned queue;
    DeviceChain chain;
    fuse_in_header header;
    std::vector<std::byte> args;
  };
  struct Held {
    Request request;
    std::chrono::steady_clock::time_point release_at;
  };

  // Answers one request (faults applied) and appends its used element(s) to `used`.
  void answer(Request& r, std::optional<Fault> fault, Used& used, int32_t forced_error = 0);
  void on_interrupt(uint64_t unique);
  void release_expired();
  uint32_t not_in_flight(unsigned queue);

  MemFs& fs_;
  FaultPlan& faults_;
  ServerOptions options_;
  DeviceQueues* device_ = nullptr;

  mutable std::mutex mu_;
  std::vector<uint64_t> per_queue_;
  std::map<uint32_t, uint64_t> per_opcode_;
  uint64_t forget_entries_ = 0, forget_nlookup_ = 0, forgets_while_held_ = 0, interrupts_ = 0, interrupted_ = 0;
  std::vector<std::set<uint32_t>> in_flight_;
  std::vector<Held> held_;
  std::set<uint64_t> early_interrupts_;  // INTERRUPT seen before its request

  std::atomic<bool> stop_{false};
  std::condition_variable timer_cv_;
  std::thread timer_;
};

}  // namespace virtiofs::test
