#include "support/test_backend_process.hpp"

#include <fstream>
#include <sstream>
#include <stdexcept>

namespace virtiofs::test {

const char* test_backend_binary() { return VIRTIOFS_TEST_BACKEND; }

TestBackend::TestBackend(std::vector<std::string> options)
    : socket_(dir_ / "backend.sock"), stats_(dir_ / "stats") {
  std::vector<std::string> args = {test_backend_binary(), "--socket", socket_, "--stats", stats_};
  args.insert(args.end(), options.begin(), options.end());
  pid_ = spawn_listening(args, socket_, "virtiofs-test-backend");
}

std::string fault_test_name(std::string fault) {
  for (auto& c : fault)
    if (c == '-') c = '_';
  return fault;
}

BackendCounts TestBackend::counts() {
  if (!wait_exit(5000)) throw std::runtime_error("test backend did not exit after its frontend left");
  std::ifstream in(stats_);
  if (!in) throw std::runtime_error("test backend wrote no counts");
  BackendCounts c;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string key, name;
    uint64_t n = 0;
    f >> key;
    if (key == "queue") {
      size_t q;
      f >> q >> name >> n;
      if (c.per_queue.size() <= q) c.per_queue.resize(q + 1);
      c.per_queue[q] = n;
    } else if (key == "opcode") {
      f >> name >> n;
      c.per_opcode[name] = n;
    } else {
      f >> n;
      if (key == "forget_entries") c.forget_entries = n;
      if (key == "forget_nlookup") c.forget_nlookup = n;
      if (key == "interrupts") c.interrupts = n;
      if (key == "interrupted") c.interrupted = n;
    }
  }
  return c;
}

}  // namespace virtiofs::test
