// Test fixture support: our own vhost-user-fs test backend (tests/support/test_backend), started
// and stopped by the test, for what Debian's virtiofsd cannot do: several request queues,
// INTERRUPT, delays and reordering, and injected faults. Never instead of virtiofsd.
#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

#include "support/virtiofsd.hpp"

namespace virtiofs::test {

// What the backend saw, read from its --stats file once the frontend went away.
struct BackendCounts {
  std::vector<uint64_t> per_queue;            // [0] = hiprio
  std::map<std::string, uint64_t> per_opcode;  // "getattr" -> n
  uint64_t forget_entries = 0, forget_nlookup = 0, interrupts = 0, interrupted = 0;
};

class TestBackend : public BackendProcess {
 public:
  // options: the backend's own flags ("--queues", "4", "--fault", "eio@getattr", ...).
  explicit TestBackend(std::vector<std::string> options = {});
  const std::string& socket_path() const { return socket_; }
  // Waits (bounded) for the backend to exit after its frontend left, then reads the counts it
  // wrote. Throws if it did not exit or wrote nothing.
  BackendCounts counts();

 private:
  TempDir dir_;
  std::string socket_, stats_;
};

const char* test_backend_binary();

// A fault kind as a gtest parameter name ("used-id-out-of-range" -> "used_id_out_of_range").
std::string fault_test_name(std::string fault);

}  // namespace virtiofs::test
