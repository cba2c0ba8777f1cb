#include "client/path_walk.hpp"

#include <sys/stat.h>

#include <vector>

#include "client/path_normalize.hpp"

namespace virtiofs {

namespace client {

namespace {
bool is_directory(const Entry& e) { return S_ISDIR(e.attr.mode); }
std::error_code not_a_directory() { return std::make_error_code(std::errc::not_a_directory); }
}  // namespace

std::error_code walk(Client& fs, std::span<const std::string_view> names, Entry& out) {
  // The directories walked, each holding a lookup reference: ".." returns to the one before.
  std::vector<Entry> chain;
  auto forget_chain = [&] {
    for (const Entry& e : chain) fs.forget(e.inode, 1);
  };
  for (std::string_view name : names) {
    if (name == "..") {
      if (chain.empty()) continue;  // the root's parent is the root: the walk stays in the share
      const Entry left = chain.back();
      chain.pop_back();
      fs.forget(left.inode, 1);
      if (!is_directory(left)) {
        forget_chain();
        return not_a_directory();
      }
      continue;
    }
    // A name under a non-directory: refused here, not left to the device to answer.
    if (!chain.empty() && !is_directory(chain.back())) {
      forget_chain();
      return not_a_directory();
    }
    Entry next;
    const Inode dir = chain.empty() ? kRootInode : chain.back().inode;
    if (auto ec = fs.lookup(dir, name, next)) {
      forget_chain();
      return ec;
    }
    chain.push_back(next);
  }
  if (chain.empty()) {
    out = Entry{};
    out.inode = kRootInode;
    return fs.getattr(kRootInode, out.attr);
  }
  out = chain.back();
  chain.pop_back();
  forget_chain();
  return {};
}

std::error_code split_parent(Client& fs, std::string_view path, std::errc if_root,
                             ParentAndName& out) {
  PathParts parts;
  if (auto ec = normalize_path(path, parts)) return ec;
  if (parts.names.empty()) return std::make_error_code(if_root);
  if (!parts.ends_in_name) return std::make_error_code(std::errc::invalid_argument);
  out.name = parts.names.back();
  out.directory = parts.directory;
  return walk(fs, std::span(parts.names).first(parts.names.size() - 1), out.parent);
}

}  // namespace client

std::error_code Client::resolve(std::string_view path, Entry& out) {
  client::PathParts parts;
  if (auto ec = client::normalize_path(path, parts)) return ec;
  if (auto ec = client::walk(*this, parts.names, out)) return ec;
  if (parts.directory && !client::is_directory(out)) {
    forget(out.inode, 1);
    return client::not_a_directory();
  }
  return {};
}

}  // namespace virtiofs
