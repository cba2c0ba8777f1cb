#include "client/path_cache.hpp"

#include <algorithm>

namespace virtiofs::client {

namespace {
constexpr uint64_t kMaxValidSec = 365ull * 24 * 3600;  // a device's "forever" stays finite
bool positive(const Timespec& t) { return t.sec != 0 || t.nsec != 0; }
}  // namespace

void PathCache::start(size_t capacity, Forget forget, Now now) {
  capacity_ = capacity;
  forget_ = std::move(forget);
  now_ = now ? std::move(now) : Now([] { return Clock::now(); });
  nodes_[kRootInode];  // always held: attributes of the root may be kept
}

PathCache::Clock::time_point PathCache::deadline(const Timespec& valid) const {
  const auto sec = std::min<uint64_t>(valid.sec, kMaxValidSec);
  const auto nsec = std::min<uint32_t>(valid.nsec, 999'999'999u);
  return now_() + std::chrono::seconds(sec) + std::chrono::nanoseconds(nsec);
}

bool PathCache::holds(Inode dir) const {
  if (dir == kRootInode) return true;
  auto it = nodes_.find(dir);
  return it != nodes_.end() && it->second.names > 0;
}

namespace {
// The same node id with another file type or generation is another object (as fuse_iget and
// fuse_dentry_revalidate see it): the old one's names below must not be served under it.
template <class N>
bool same_object(const N& n, const Entry& e) {
  return n.inode == e.inode && n.generation == e.generation && n.type == (e.attr.mode & S_IFMT);
}
}  // namespace

bool PathCache::storing(uint64_t epoch) const {
  return unsettled_ == 0 && epoch == epoch_.load(std::memory_order_relaxed);
}

void PathCache::give_back(Drops& drops) {
  for (auto [inode, n] : drops)
    if (inode != kRootInode && n != 0 && forget_) forget_(inode, n);
  drops.clear();
}

void PathCache::release_ref(Inode inode, Drops& out) {
  auto it = nodes_.find(inode);
  if (it == nodes_.end()) return;
  Node& node = it->second;
  if (node.pins == 0 && node.refs > node.names) {
    out.emplace_back(inode, node.refs - node.names);
    node.refs = node.names;
  }
  if (node.names == 0 && node.refs == 0 && node.pins == 0 && inode != kRootInode) nodes_.erase(it);
}

void PathCache::erase_children(Inode dir, Drops& out) {
  auto it = names_.lower_bound(KeyView{dir, {}});
  while (it != names_.end() && it->first.parent == dir) {
    auto next = std::next(it);
    erase(it, out);
    // erase may have removed more names (grandchildren sort under other parents): find again.
    next = names_.lower_bound(KeyView{dir, {}});
    it = next;
  }
}

void PathCache::erase(Names::iterator it, Drops& out) {
  const Inode inode = it->second.inode;
  lru_.erase(it->second.lru);
  names_.erase(it);
  if (inode == 0) return;
  auto nit = nodes_.find(inode);
  if (nit == nodes_.end()) return;
  if (--nit->second.names == 0) erase_children(inode, out);  // its key must not outlive it
  release_ref(inode, out);
}

void PathCache::evict(Drops& out) {
  while (names_.size() > capacity_ && !lru_.empty()) erase(lru_.back(), out);
}

void PathCache::put_name(Inode parent, std::string_view name, Name n, Drops& out) {
  auto it = names_.find(KeyView{parent, name});
  if (it != names_.end()) erase(it, out);
  if (!holds(parent)) return;  // erasing may have dropped the parent itself (a loop)
  auto [pos, ok] = names_.emplace(Key{parent, std::string(name)}, n);
  lru_.push_front(pos);
  pos->second.lru = lru_.begin();
}

PathCache::Found PathCache::find(Inode parent, std::string_view name, Hit& out) {
  if (!on()) return Found::kMiss;
  std::lock_guard lock(mu_);
  auto it = names_.find(KeyView{parent, name});
  if (it == names_.end() || it->second.expires <= now_()) {
    misses_.fetch_add(1, std::memory_order_relaxed);
    return Found::kMiss;
  }
  hits_.fetch_add(1, std::memory_order_relaxed);
  lru_.splice(lru_.begin(), lru_, it->second.lru);
  const Name& n = it->second;
  if (n.inode == 0) return Found::kNegative;
  Node& node = nodes_.at(n.inode);
  ++node.pins;
  out.inode = n.inode;
  out.generation = n.generation;
  out.type = n.type;
  out.attr_fresh = node.attr_expires > now_();
  if (out.attr_fresh) out.attr = node.attr;
  return Found::kPositive;
}

void PathCache::unpin(Inode inode) {
  Drops drops;
  {
    std::lock_guard lock(mu_);
    auto it = nodes_.find(inode);
    if (it == nodes_.end() || it->second.pins == 0) return;
    --it->second.pins;
    release_ref(inode, drops);
  }
  give_back(drops);
}

uint64_t PathCache::epoch() const { return epoch_.load(std::memory_order_acquire); }

bool PathCache::insert(Inode parent, std::string_view name, const Entry& e, uint64_t epoch) {
  if (!on() || e.inode == 0 || e.inode == kRootInode || !positive(e.entry_valid)) return false;
  Drops drops;
  bool taken = false;
  {
    std::lock_guard lock(mu_);
    if (!storing(epoch) || !holds(parent)) return false;
    taken = insert_locked(parent, name, e, drops);
  }
  give_back(drops);
  return taken;
}

bool PathCache::insert_locked(Inode parent, std::string_view name, const Entry& e, Drops& drops) {
  {
    auto old = names_.find(KeyView{parent, name});
    if (old != names_.end() && same_object(old->second, e)) {
      // Revalidated: the same node, whose names below stay; the new reference is one too many.
      old->second.expires = deadline(e.entry_valid);
      lru_.splice(lru_.begin(), lru_, old->second.lru);
      drops.emplace_back(e.inode, 1);
    } else {
      Name n{e.inode, e.generation, e.attr.mode & S_IFMT, deadline(e.entry_valid), {}};
      put_name(parent, name, n, drops);
      if (!holds(parent)) return false;
      Node& node = nodes_[e.inode];
      ++node.names;
      ++node.refs;
    }
    Node& node = nodes_[e.inode];
    ++node.pins;
    if (positive(e.attr_valid)) {
      node.attr = e.attr;
      node.attr_expires = deadline(e.attr_valid);
    }
    evict(drops);
  }
  return true;
}

void PathCache::insert_negative(Inode parent, std::string_view name, const Timespec& valid,
                                uint64_t epoch) {
  if (!on() || !positive(valid)) return;
  Drops drops;
  {
    std::lock_guard lock(mu_);
    if (!storing(epoch) || !holds(parent)) return;
    put_name(parent, name, Name{0, 0, 0, deadline(valid), {}}, drops);
    evict(drops);
  }
  give_back(drops);
}

void PathCache::store_attr(Inode inode, const Attr& attr, const Timespec& valid, uint64_t epoch) {
  if (!on()) return;
  std::lock_guard lock(mu_);
  auto it = nodes_.find(inode);
  if (!storing(epoch) || it == nodes_.end()) return;
  if (!positive(valid)) {
    it->second.attr_expires = {};
    return;
  }
  it->second.attr = attr;
  it->second.attr_expires = deadline(valid);
}

void PathCache::refresh(Inode parent, std::string_view name, const Entry& e, uint64_t epoch) {
  if (!on()) return;
  Drops drops;
  {
    std::lock_guard lock(mu_);
    auto it = names_.find(KeyView{parent, name});
    if (it == names_.end()) return;
    if (!same_object(it->second, e)) {
      erase(it, drops);  // the name moved on: never serve the old node for it
      epoch_.fetch_add(1, std::memory_order_release);
    } else if (storing(epoch) && positive(e.entry_valid)) {
      it->second.expires = deadline(e.entry_valid);
      Node& node = nodes_.at(e.inode);
      if (positive(e.attr_valid)) {
        node.attr = e.attr;
        node.attr_expires = deadline(e.attr_valid);
      }
    }
  }
  give_back(drops);
}

void PathCache::drop_linked() {
  for (auto& [inode, node] : nodes_)
    if (node.attr.nlink > 1 && (node.attr.mode & S_IFMT) != S_IFDIR) node.attr_expires = {};
}

void PathCache::drop_name(Inode parent, std::string_view name, Inode stale_attr, bool removes) {
  if (!on()) return;
  Drops drops;
  {
    std::lock_guard lock(mu_);
    epoch_.fetch_add(1, std::memory_order_release);
    auto it = names_.find(KeyView{parent, name});
    if (it != names_.end()) {
      const Inode victim = it->second.inode;
      erase(it, drops);
      if (auto n = nodes_.find(victim); n != nodes_.end()) n->second.attr_expires = {};
    } else if (removes) {
      drop_linked();  // another name of a node held here may have gone (a hard link)
    }
    if (auto n = nodes_.find(stale_attr); n != nodes_.end()) n->second.attr_expires = {};
    // The directory's own mtime, ctime and link count changed too.
    if (auto n = nodes_.find(parent); n != nodes_.end()) n->second.attr_expires = {};
  }
  give_back(drops);
}

void PathCache::drop_names(Inode p1, std::string_view n1, Inode p2, std::string_view n2) {
  if (!on()) return;
  Drops drops;
  {
    std::lock_guard lock(mu_);
    epoch_.fetch_add(1, std::memory_order_release);
    for (auto [p, n] : {std::pair{p1, n1}, std::pair{p2, n2}}) {
      if (auto it = names_.find(KeyView{p, n}); it != names_.end()) {
        const Inode moved = it->second.inode;
        erase(it, drops);
        if (auto node = nodes_.find(moved); node != nodes_.end()) node->second.attr_expires = {};
      } else {
        drop_linked();  // an uncached target replaced: its node is unknown (a hard link?)
      }
      if (auto node = nodes_.find(p); node != nodes_.end()) node->second.attr_expires = {};
    }
  }
  give_back(drops);
}

void PathCache::drop_attr(Inode inode) {
  if (!on()) return;
  std::lock_guard lock(mu_);
  epoch_.fetch_add(1, std::memory_order_release);
  if (auto it = nodes_.find(inode); it != nodes_.end()) it->second.attr_expires = {};
}

void PathCache::own_setattr(Inode inode, const Attr& attr, const Timespec& valid, uint64_t sent) {
  if (!on()) return;
  std::lock_guard lock(mu_);
  const bool current = storing(sent);
  epoch_.fetch_add(1, std::memory_order_release);
  auto it = nodes_.find(inode);
  if (it == nodes_.end()) return;
  if (current && positive(valid)) {
    it->second.attr = attr;
    it->second.attr_expires = deadline(valid);
  } else {
    it->second.attr_expires = {};
  }
}

void PathCache::mutation_unsettled() {
  if (!on()) return;
  std::lock_guard lock(mu_);
  ++unsettled_;
  epoch_.fetch_add(1, std::memory_order_release);
}

void PathCache::mutation_settled() {
  if (!on()) return;
  std::lock_guard lock(mu_);
  --unsettled_;
  // A reply sent before the device ran the mutation may come after this: refused by the epoch.
  epoch_.fetch_add(1, std::memory_order_release);
}

void PathCache::clear() {
  if (!on()) return;
  Drops drops;
  {
    std::lock_guard lock(mu_);
    epoch_.fetch_add(1, std::memory_order_release);
    while (!lru_.empty()) erase(lru_.back(), drops);
    if (auto n = nodes_.find(kRootInode); n != nodes_.end()) n->second.attr_expires = {};
  }
  give_back(drops);
}

size_t PathCache::size() const {
  std::lock_guard lock(mu_);
  return names_.size();
}

uint64_t PathCache::references() const {
  std::lock_guard lock(mu_);
  uint64_t n = 0;
  for (const auto& [inode, node] : nodes_) n += inode == kRootInode ? 0 : node.refs;
  return n;
}

}  // namespace virtiofs::client
