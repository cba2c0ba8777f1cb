#include "client/lookup_ledger.hpp"

namespace virtiofs::client {

bool lookup_accounting_on(LookupAccounting requested) {
  switch (requested) {
    case LookupAccounting::kOn:
      return true;
    case LookupAccounting::kOff:
      return false;
    case LookupAccounting::kDefault:
      break;
  }
#ifdef NDEBUG
  return false;
#else
  return true;
#endif
}

void LookupLedger::start(bool on) {
  if (on) shards_ = std::make_unique<Shard[]>(kShards);
}

uint64_t LookupLedger::held(Inode inode) const {
  if (!shards_) return 0;
  Shard& s = shard(inode);
  std::lock_guard lock(s.mu);
  auto it = s.counts.find(inode);
  return it == s.counts.end() ? 0 : it->second.all;
}

void LookupLedger::add_counted(Inode inode, uint64_t n) {
  if (n == 0) return;
  Shard& s = shard(inode);
  std::lock_guard lock(s.mu);
  s.counts[inode].all += n;
}

void LookupLedger::to_cache_counted(Inode inode) {
  Shard& s = shard(inode);
  std::lock_guard lock(s.mu);
  auto it = s.counts.find(inode);
  if (it != s.counts.end() && it->second.cache < it->second.all) ++it->second.cache;
}

bool LookupLedger::take_counted(Inode inode, uint64_t n, bool cache) {
  if (n == 0) return true;
  Shard& s = shard(inode);
  std::lock_guard lock(s.mu);
  auto it = s.counts.find(inode);
  if (it == s.counts.end()) return false;
  auto& c = it->second;
  if (cache ? c.cache < n : c.all - c.cache < n) return false;
  c.all -= n;
  if (cache) c.cache -= n;
  if (c.all == 0) s.counts.erase(it);
  return true;
}

}  // namespace virtiofs::client
