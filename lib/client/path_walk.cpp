#include "client/path_walk.hpp"

#include <sys/stat.h>

#include "client/client_impl.hpp"
#include "client/path_normalize.hpp"

namespace virtiofs {

namespace client {

namespace {
std::error_code not_a_directory() { return std::make_error_code(std::errc::not_a_directory); }
}  // namespace

PathWalk::PathWalk(Client& fs) : fs_(fs), impl_(*fs.impl_) {}

PathWalk::~PathWalk() {
  while (!chain_.empty()) pop();
}

void PathWalk::pop() {
  const Held h = chain_.back();
  chain_.pop_back();
  let_go(fs_, h);
}

void PathWalk::let_go(Client& fs, const Held& h) {
  if (h.kind == Held::Kind::kPinned)
    fs.impl_->cache.unpin(h.inode);
  else if (h.kind == Held::Kind::kOwned)
    fs.impl_->forget_ref(h.inode, 1);
}

Held PathWalk::take_last() {
  if (chain_.empty()) return root_;
  Held h = chain_.back();
  chain_.pop_back();
  return h;
}

const Held& PathWalk::last() const { return chain_.empty() ? root_ : chain_.back(); }

std::error_code PathWalk::walk(std::span<const std::string_view> names) {
  for (std::string_view name : names) {
    if (name == "..") {
      if (chain_.empty()) continue;  // the root's parent is the root: the walk stays in the share
      const bool was_directory = chain_.back().is_directory();
      pop();
      if (!was_directory) return not_a_directory();
      continue;
    }
    if (auto ec = step(name)) return ec;
  }
  return {};
}

std::error_code PathWalk::step(std::string_view name) {
  // A name under a non-directory: refused here, not left to the device to answer.
  if (!last().is_directory()) return not_a_directory();
  const Inode dir = last().inode;
  Held next;
  next.parent = dir;
  next.name = name;
  PathCache::Hit hit;
  const auto found = impl_.cache.find(dir, name, hit);
  if (found != PathCache::Found::kMiss && !checked_) {
    // A client that failed answers nothing from its cache either (once per walk: it locks).
    checked_ = true;
    if (auto ec = impl_.session->failure()) {
      if (found == PathCache::Found::kPositive) impl_.cache.unpin(hit.inode);
      return ec;
    }
  }
  switch (found) {
    case PathCache::Found::kPositive:
      next.kind = Held::Kind::kPinned;
      next.inode = hit.inode;
      next.generation = hit.generation;
      next.type = hit.type;
      next.attr = hit.attr;
      next.attr_known = hit.attr_fresh;
      chain_.push_back(next);
      return {};
    case PathCache::Found::kNegative:
      return std::make_error_code(std::errc::no_such_file_or_directory);
    case PathCache::Found::kMiss:
      break;
  }
  const uint64_t sent = impl_.cache.on() ? impl_.cache.epoch() : 0;
  Entry e;
  if (auto ec = fs_.lookup(dir, name, e)) {
    // A negative entry (node id 0 with a timeout); an error reply leaves entry_valid at 0.
    if (ec == std::errc::no_such_file_or_directory)
      impl_.cache.insert_negative(dir, name, e.entry_valid, sent);
    return ec;
  }
  next.kind = Held::Kind::kOwned;
  if (impl_.cache.insert(dir, name, e, sent)) {
    impl_.ledger.to_cache(e.inode);  // before the pin goes: nothing gives it back until then
    next.kind = Held::Kind::kPinned;
  }
  next.inode = e.inode;
  next.generation = e.generation;
  next.type = e.attr.mode & S_IFMT;
  next.attr = e.attr;
  next.attr_known = true;
  chain_.push_back(next);
  return {};
}

std::error_code PathWalk::attributes(Attr& out) {
  const Held& h = last();
  if (h.attr_known) {
    out = h.attr;
    return {};
  }
  return fs_.getattr(h.inode, out);  // refreshes the cache's copy (cache_hooks.hpp)
}

std::error_code PathWalk::take_entry(Entry& out) {
  const Held h = last();
  out = Entry{};
  out.inode = h.inode;
  out.generation = h.generation;
  switch (h.kind) {
    case Held::Kind::kRoot:
      return fs_.getattr(kRootInode, out.attr);
    case Held::Kind::kOwned:
      out.attr = h.attr;
      if (!h.attr_known) {
        if (auto ec = fs_.getattr(h.inode, out.attr)) return ec;
      }
      chain_.pop_back();  // the reference is the caller's now
      return {};
    case Held::Kind::kPinned:
      break;
  }
  // The cache keeps its reference: the caller gets one of its own, and the cache the reply's
  // news (a name that changed meanwhile is dropped from it: cache_hooks.hpp).
  return fs_.lookup(h.parent, h.name, out);
}

void PathWalk::keep_created(Client& fs, Inode parent, std::string_view name, const Entry& e,
                            uint64_t sent) {
  auto& impl = *fs.impl_;
  // The reply's own hook bumped the epoch once: one more means another change came between.
  if (impl.cache.on() && impl.cache.insert(parent, name, e, sent + 1)) {
    impl.ledger.to_cache(e.inode);
    impl.cache.unpin(e.inode);
  }
  else
    impl.forget_ref(e.inode, 1);
}

Held PathWalk::keep_opened(Client& fs, Inode parent, std::string_view name, const Entry& e,
                          uint64_t sent) {
  auto& impl = *fs.impl_;
  Held h;
  h.kind = Held::Kind::kOwned;
  if (impl.cache.on() && impl.cache.insert(parent, name, e, sent + 1)) {
    impl.ledger.to_cache(e.inode);
    h.kind = Held::Kind::kPinned;
  }
  h.parent = parent;
  h.inode = e.inode;
  h.generation = e.generation;
  h.type = e.attr.mode & S_IFMT;
  h.attr = e.attr;
  h.attr_known = true;
  return h;
}

uint64_t PathWalk::epoch(Client& fs) {
  return fs.impl_->cache.on() ? fs.impl_->cache.epoch() : 0;
}

std::error_code split_parent(PathWalk& walk, std::string_view path, std::errc if_root,
                             ParentAndName& out) {
  PathParts parts;
  if (auto ec = normalize_path(path, parts)) return ec;
  if (parts.names.empty()) return std::make_error_code(if_root);
  if (!parts.ends_in_name) return std::make_error_code(std::errc::invalid_argument);
  out.name = parts.names.back();
  out.directory = parts.directory;
  if (auto ec = walk.walk(std::span(parts.names).first(parts.names.size() - 1))) return ec;
  if (!walk.last().is_directory()) return not_a_directory();
  return {};
}

}  // namespace client

std::error_code Client::resolve(std::string_view path, Entry& out) {
  client::PathParts parts;
  if (auto ec = client::normalize_path(path, parts)) return ec;
  client::PathWalk walk(*this);
  if (auto ec = walk.walk(parts.names)) return ec;
  if (parts.directory && !walk.last().is_directory()) return client::not_a_directory();
  return walk.take_entry(out);
}

}  // namespace virtiofs
