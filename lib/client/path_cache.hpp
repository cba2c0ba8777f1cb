// The path layer's cache of names and attributes (Options::path_cache_entries), as the kernel's
// dcache and FUSE attribute cache: (directory inode, name) -> the node a LOOKUP found, kept for
// the device's entry_valid, and per node its attributes for attr_valid. Each cached name holds
// one lookup reference of its node; dropping the name gives it back (the sink below sends the
// FORGET). Negative entries (a LOOKUP answered with node id 0 and a timeout) hold none.
//
// Rules:
// - Nothing is served past its timeout (the clock is injectable for tests).
// - A name is only cached under a directory the cache itself holds (or the root): virtiofsd
//   reuses node ids once forgotten, so a (parent id, name) key must never outlive the parent's
//   reference. When a directory's last name goes, the names under it go first.
// - Nodes a caller is using are pinned: a name dropped meanwhile keeps its reference until the
//   last pin goes, so a node is never forgotten under a walk that is still using it.
// - Every invalidation bumps an epoch. Inserting or storing attributes says which epoch the
//   request was sent in; anything older is refused, so a reply that crossed one of this
//   client's own mutations never puts stale data back.
// - Attributes are kept only for nodes the cache holds (a reference keeps the id from reuse).
// - A mutation given up while the device holds it (Session::abandon) may still run at any
//   time: until the device hands its request back, nothing is stored (its own invalidation
//   ran when it was given up), and when it does the epoch moves, so no reply that may have
//   crossed it is kept.
#pragma once

#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "virtiofs/types.hpp"

namespace virtiofs::client {

class PathCache {
 public:
  using Clock = std::chrono::steady_clock;
  using Now = std::function<Clock::time_point()>;
  // Gives references back to the device; called with no lock held.
  using Forget = std::function<void(Inode, uint64_t)>;

  PathCache() = default;
  PathCache(const PathCache&) = delete;
  PathCache& operator=(const PathCache&) = delete;

  // Before the first request: at most `capacity` names (0: nothing is ever cached).
  void start(size_t capacity, Forget forget, Now now = {});
  bool on() const { return capacity_ != 0; }

  // What find answers for a (directory, name).
  enum class Found { kMiss, kPositive, kNegative };
  struct Hit {
    Inode inode = 0;
    uint64_t generation = 0;
    uint32_t type = 0;  // S_IFMT bits of the node
    Attr attr;
    bool attr_fresh = false;
  };
  // A fresh positive name is pinned (unpin it when done); a stale one is a miss.
  Found find(Inode parent, std::string_view name, Hit& out);
  void unpin(Inode inode);

  uint64_t epoch() const;
  // Takes the reference of `e` (a LOOKUP of parent/name sent in `epoch`) and pins the node:
  // true. False when refused (too old, parent not held, no timeout, off): the caller keeps it.
  bool insert(Inode parent, std::string_view name, const Entry& e, uint64_t epoch);
  // A LOOKUP of parent/name answered "no such entry" with a timeout.
  void insert_negative(Inode parent, std::string_view name, const Timespec& valid, uint64_t epoch);
  // A reply's attributes for a node (GETATTR, SETATTR): kept if the cache holds the node.
  void store_attr(Inode inode, const Attr& attr, const Timespec& valid, uint64_t epoch);
  // A LOOKUP through the inode API: a cached name naming another node is dropped, the same
  // node's timeouts are refreshed.
  void refresh(Inode parent, std::string_view name, const Entry& e, uint64_t epoch);

  // This client's own changes (each bumps the epoch once).
  // `removes`: the name's node may lose a link (UNLINK, RMDIR); when the cache does not hold
  // the name, that node is unknown, so every held node with other links loses its attributes.
  void drop_name(Inode parent, std::string_view name, Inode stale_attr = 0, bool removes = false);
  void drop_names(Inode p1, std::string_view n1, Inode p2, std::string_view n2);
  void drop_attr(Inode inode);
  // SETATTR's answer: the attributes replace the node's, if no other change came in between.
  void own_setattr(Inode inode, const Attr& attr, const Timespec& valid, uint64_t sent);

  // A mutation was given up while the device holds it / the device handed it back.
  void mutation_unsettled();
  void mutation_settled();

  // Drops every name, giving back every reference not pinned (pinned ones when unpinned).
  void clear();

  size_t size() const;
  uint64_t references() const;  // held by the cache now (tests)
  uint64_t hits() const { return hits_.load(std::memory_order_relaxed); }
  uint64_t misses() const { return misses_.load(std::memory_order_relaxed); }

 private:
  struct Key {
    Inode parent;
    std::string name;
  };
  struct KeyView {
    Inode parent;
    std::string_view name;
  };
  struct Less {
    using is_transparent = void;
    template <class A, class B>
    bool operator()(const A& a, const B& b) const {
      if (a.parent != b.parent) return a.parent < b.parent;
      return std::string_view(a.name) < std::string_view(b.name);
    }
  };
  struct Name;
  using Names = std::map<Key, Name, Less>;
  struct Name {
    Inode inode = 0;  // 0: negative
    uint64_t generation = 0;
    uint32_t type = 0;
    Clock::time_point expires;
    std::list<Names::iterator>::iterator lru;
  };
  struct Node {
    uint64_t names = 0;  // cached names naming it
    uint64_t refs = 0;   // references the cache holds: one per name, plus dropped ones still pinned
    uint64_t pins = 0;
    Attr attr;
    Clock::time_point attr_expires{};  // epoch of the clock: none
  };
  using Drops = std::vector<std::pair<Inode, uint64_t>>;

  // All with mu_ held.
  Clock::time_point deadline(const Timespec& valid) const;
  void erase(Names::iterator it, Drops& out);
  void erase_children(Inode dir, Drops& out);
  void release_ref(Inode inode, Drops& out);
  bool insert_locked(Inode parent, std::string_view name, const Entry& e, Drops& out);
  void put_name(Inode parent, std::string_view name, Name n, Drops& out);
  void evict(Drops& out);
  bool holds(Inode dir) const;
  bool storing(uint64_t epoch) const;  // a reply sent in `epoch` may be stored now
  void give_back(Drops& drops);  // without mu_
  void drop_linked();             // attributes of held non-directories with nlink > 1

  size_t capacity_ = 0;
  Forget forget_;
  Now now_;
  // Guards everything below. Held only for map updates: no device I/O, no callbacks, and the
  // FORGETs of dropped references go out after it is released (give_back).
  mutable std::mutex mu_;
  Names names_;
  std::list<Names::iterator> lru_;  // front: most recently used
  std::unordered_map<Inode, Node> nodes_;
  // Mutations given up that the device still holds. Its reply may be reaped before the giving
  // up is counted (-1 for a while): storing waits for 0 either way.
  int64_t unsettled_ = 0;
  // Written under mu_ only; read without it (a request's epoch when sent) and compared under it.
  std::atomic<uint64_t> epoch_{0};
  std::atomic<uint64_t> hits_{0}, misses_{0};
};

}  // namespace virtiofs::client
