// Test fixture: an in-memory virtio-fs device in this process. MemFs served by FsServer (delays,
// reordering, holds, a FaultPlan) on a LoopbackDevice; transport() gives the session its side.
// Destroy the Session before this.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "support/loopback_device.hpp"
#include "support/test_backend/fault_plan.hpp"
#include "support/test_backend/fs_server.hpp"
#include "support/test_backend/memfs.hpp"
#include "virtio/transport.hpp"

namespace virtiofs::test {

struct LoopbackFsOptions {
  LoopbackConfig device;
  ServerOptions server;
  std::vector<std::string> faults;  // KIND[@OPCODE][#N], as the test backend's --fault
};

class LoopbackFs {
 public:
  explicit LoopbackFs(const LoopbackFsOptions& options = {});
  ~LoopbackFs();
  LoopbackFs(const LoopbackFs&) = delete;
  LoopbackFs& operator=(const LoopbackFs&) = delete;

  // The driver's side, for a Session (one per LoopbackFs: the device serves one driver).
  std::unique_ptr<virtio::Transport> transport();
  LoopbackDevice& device() { return *device_; }
  MemFs& fs() { return fs_; }
  FaultPlan& faults() { return faults_; }
  // A count FsServer keeps, by its stats line without the number: "queue 1 requests",
  // "opcode getattr", "forget_entries", "forget_nlookup", "interrupts", "forgets_while_held"
  // (FORGET entries for a node with a held request still unanswered). 0 when absent.
  uint64_t stat(const std::string& key) const;

 private:
  MemFs fs_;
  FaultPlan faults_;
  FsServer server_;
  std::shared_ptr<LoopbackDevice> device_;
};

}  // namespace virtiofs::test
