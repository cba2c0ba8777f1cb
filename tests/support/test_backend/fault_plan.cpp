#include "support/test_backend/fault_plan.hpp"

#include <linux/fuse.h>

#include <stdexcept>
#include <utility>

namespace virtiofs::test {

namespace {

const std::pair<const char*, Fault> kFaults[] = {
    {"used-id-out-of-range", Fault::kUsedIdOutOfRange},
    {"used-id-not-in-flight", Fault::kUsedIdNotInFlight},
    {"double-completion", Fault::kDoubleCompletion},
    {"used-len-beyond-buffer", Fault::kUsedLenBeyondBuffer},
    {"used-idx-jump", Fault::kUsedIdxJump},
    {"header-len-mismatch", Fault::kHeaderLenMismatch},
    {"unknown-unique", Fault::kUnknownUnique},
    {"error-out-of-range", Fault::kErrorOutOfRange},
    {"dirent-overrun", Fault::kDirentOverrun},
    {"dirent-bad-name", Fault::kDirentBadName},
    {"absurd-init", Fault::kAbsurdInit},
    {"eio", Fault::kEioFromNowOn},
    {"error", Fault::kError},
    {"unwritten-payload", Fault::kUnwrittenPayload},
    {"scribble-header", Fault::kScribbleHeader},
    {"die", Fault::kDie},
};

const std::pair<const char*, uint32_t> kOpcodes[] = {
    {"lookup", FUSE_LOOKUP},   {"forget", FUSE_FORGET},       {"getattr", FUSE_GETATTR},
    {"setattr", FUSE_SETATTR}, {"mkdir", FUSE_MKDIR},         {"unlink", FUSE_UNLINK},
    {"rmdir", FUSE_RMDIR},     {"open", FUSE_OPEN},           {"read", FUSE_READ},
    {"write", FUSE_WRITE},     {"statfs", FUSE_STATFS},       {"release", FUSE_RELEASE},
    {"fsync", FUSE_FSYNC},     {"flush", FUSE_FLUSH},         {"init", FUSE_INIT},
    {"opendir", FUSE_OPENDIR}, {"readdir", FUSE_READDIR},     {"releasedir", FUSE_RELEASEDIR},
    {"access", FUSE_ACCESS},   {"create", FUSE_CREATE},       {"interrupt", FUSE_INTERRUPT},
    {"destroy", FUSE_DESTROY}, {"batch_forget", FUSE_BATCH_FORGET},
};

thread_local int64_t struck_value = 0;

}  // namespace

int64_t FaultPlan::value() { return struck_value; }

std::optional<uint32_t> opcode_by_name(const std::string& name) {
  for (auto& [n, op] : kOpcodes)
    if (name == n) return op;
  return std::nullopt;
}

const char* opcode_name(uint32_t opcode) {
  for (auto& [n, op] : kOpcodes)
    if (op == opcode) return n;
  return "other";
}

const std::vector<std::string>& FaultPlan::kind_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (auto& f : kFaults) v.emplace_back(f.first);
    return v;
  }();
  return names;
}

void FaultPlan::add(const std::string& spec) {
  std::string kind = spec, op, nth, value;
  if (auto hash = kind.find('#'); hash != std::string::npos) {
    nth = kind.substr(hash + 1);
    kind.resize(hash);
  }
  if (auto at = kind.find('@'); at != std::string::npos) {
    op = kind.substr(at + 1);
    kind.resize(at);
  }
  if (auto eq = kind.find('='); eq != std::string::npos) {
    value = kind.substr(eq + 1);
    kind.resize(eq);
  }
  Rule rule{Fault::kDie, std::nullopt, 1};
  bool known = false;
  for (auto& [name, f] : kFaults)
    if (kind == name) rule.fault = f, known = true;
  if (!known) throw std::invalid_argument("unknown fault '" + kind + "'");
  if (!op.empty()) {
    rule.opcode = opcode_by_name(op);
    if (!rule.opcode) throw std::invalid_argument("unknown opcode '" + op + "'");
  }
  if (!value.empty()) {
    size_t used = 0;
    rule.value = std::stoll(value, &used);
    if (used != value.size()) throw std::invalid_argument("bad value '" + value + "'");
  }
  if (rule.fault == Fault::kError && (rule.value >= 0 || value.empty()))
    throw std::invalid_argument("error=VALUE needs a negative errno");
  if (!nth.empty()) {
    rule.nth = std::stoull(nth);
    if (rule.nth == 0) throw std::invalid_argument("#N counts from 1");
  }
  std::lock_guard lock(mu_);
  rules_.push_back(rule);
}

std::optional<Fault> FaultPlan::strike(uint32_t opcode) {
  std::lock_guard lock(mu_);
  if (eio_ && opcode != FUSE_INIT) return Fault::kEioFromNowOn;
  for (Rule& r : rules_) {
    if (r.opcode && *r.opcode != opcode) continue;
    if (!r.opcode && (opcode == FUSE_INIT || opcode == FUSE_FORGET ||
                      opcode == FUSE_BATCH_FORGET || opcode == FUSE_INTERRUPT))
      continue;  // "any request" means one that has a reply, after INIT
    if (++r.seen != r.nth) continue;
    if (r.fault == Fault::kEioFromNowOn) eio_ = true;
    struck_value = r.value;
    return r.fault;
  }
  return std::nullopt;
}

}  // namespace virtiofs::test
