// Lookup-reference bookkeeping (Options::lookup_accounting): per inode, the references the
// device handed this client (replies naming a node) minus those given back with forget. A
// forget beyond them is refused before it reaches the device, where virtiofsd aborts on it
// long after the mistake. Off, nothing is stored and every call returns at once.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include "virtiofs/client.hpp"
#include "virtiofs/types.hpp"

namespace virtiofs::client {

// kDefault means on when this library was built without NDEBUG (a debug build of
// libvirtiofs): decided here, in the library, so the application's own NDEBUG plays no part.
bool lookup_accounting_on(LookupAccounting requested);

class LookupLedger {
 public:
  LookupLedger() = default;
  LookupLedger(const LookupLedger&) = delete;
  LookupLedger& operator=(const LookupLedger&) = delete;

  // Before the first request (connect): turns the bookkeeping on or leaves it off.
  void start(bool on);
  bool on() const { return shards_ != nullptr; }

  // The device handed out n references to inode. Inode 0 (no node) and the root (never
  // forgotten) are not counted.
  void add(Inode inode, uint64_t n = 1) {
    if (shards_ && inode != 0 && inode != kRootInode) add_counted(inode, n);
  }
  // Gives n references back: false, changing nothing, when fewer are held (not counting the
  // path cache's). Always true off.
  bool take(Inode inode, uint64_t n) { return !shards_ || take_counted(inode, n, false); }
  // The path cache took one of the references handed out / gives n of its own back (false,
  // changing nothing, when it holds fewer): a user's forget can't take the cache's.
  void to_cache(Inode inode) {
    if (shards_ && inode != 0 && inode != kRootInode) to_cache_counted(inode);
  }
  bool from_cache(Inode inode, uint64_t n) { return !shards_ || take_counted(inode, n, true); }
  // References held (0 when off); for tests and diagnostics.
  uint64_t held(Inode inode) const;

 private:
  // Sharded by inode so that threads looking up different nodes rarely meet on one lock.
  static constexpr size_t kShards = 16;
  struct alignas(64) Shard {
    std::mutex mu;                                 // guards counts
    struct Count {
      uint64_t all = 0;    // handed out, not given back
      uint64_t cache = 0;  // of them, the path cache's
    };
    std::unordered_map<Inode, Count> counts;  // no zero entries
  };
  Shard& shard(Inode inode) const { return shards_[inode % kShards]; }
  void add_counted(Inode inode, uint64_t n);
  bool take_counted(Inode inode, uint64_t n, bool cache);
  void to_cache_counted(Inode inode);

  std::unique_ptr<Shard[]> shards_;  // null when off
};

// Records the references a parsed reply hands out: the one place replies are counted.
template <class T>
void note_references(LookupLedger&, const T&) {}  // replies that name no node
inline void note_references(LookupLedger& ledger, const Entry& e) { ledger.add(e.inode); }
inline void note_references(LookupLedger& ledger, const Created& c) { ledger.add(c.entry.inode); }
inline void note_references(LookupLedger& ledger,
                            const std::vector<std::pair<DirEntry, Entry>>& entries) {
  for (const auto& [d, e] : entries) ledger.add(e.inode);
}

}  // namespace virtiofs::client
