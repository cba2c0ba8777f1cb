#include "support/test_backend/memfs.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>

namespace virtiofs::test {

namespace {

template <class T>
bool take(std::span<const std::byte>& args, T& out) {
  if (args.size() < sizeof(T)) return false;
  std::memcpy(&out, args.data(), sizeof(T));
  args = args.subspan(sizeof(T));
  return true;
}

// A NUL-terminated name from the arguments, or empty when malformed.
std::string_view take_name(std::span<const std::byte>& args) {
  const char* p = reinterpret_cast<const char*>(args.data());
  const size_t len = strnlen(p, args.size());
  if (len == args.size() || len == 0) return {};
  args = args.subspan(len + 1);
  return {p, len};
}

template <class... T>
FsReply ok(const T&... parts) {
  FsReply r;
  (r.payload.insert(r.payload.end(), reinterpret_cast<const std::byte*>(&parts),
                    reinterpret_cast<const std::byte*>(&parts) + sizeof(T)),
   ...);
  return r;
}

FsReply err(int e) { return FsReply{-e, {}}; }

uint64_t now() { return static_cast<uint64_t>(time(nullptr)); }

}  // namespace

MemFs::MemFs() {
  Node& root = nodes_[FUSE_ROOT_ID];
  root.id = FUSE_ROOT_ID;
  root.mode = S_IFDIR | 0755;
  root.nlink = 2;
  root.mtime = now();
}

MemFs::Node* MemFs::node(uint64_t id) {
  auto it = nodes_.find(id);
  return it == nodes_.end() ? nullptr : &it->second;
}

fuse_attr MemFs::attr_of(const Node& n) const {
  fuse_attr a{};
  a.ino = n.id;
  a.size = n.data.size();
  a.blocks = (a.size + 511) / 512;
  a.atime = a.mtime = a.ctime = n.mtime;
  a.mode = n.mode;
  a.nlink = n.nlink;
  a.blksize = 4096;
  return a;
}

FsReply MemFs::entry_reply(Node& n) {
  ++n.nlookup;
  fuse_entry_out e{};
  e.nodeid = n.id;
  e.attr = attr_of(n);
  e.entry_valid = e.attr_valid = 1;
  return ok(e);
}

void MemFs::forget(uint64_t inode, uint64_t nlookup) {
  std::lock_guard lock(mu_);
  Node* n = node(inode);
  if (!n || inode == FUSE_ROOT_ID) return;
  n->nlookup -= std::min(n->nlookup, nlookup);
  if (n->nlookup == 0 && n->nlink == 0) nodes_.erase(inode);
}

std::optional<std::vector<std::byte>> MemFs::contents(uint64_t inode) {
  std::lock_guard lock(mu_);
  const Node* n = node(inode);
  if (!n) return std::nullopt;
  return n->data;
}

std::optional<uint64_t> MemFs::lookups(uint64_t inode) {
  std::lock_guard lock(mu_);
  const Node* n = node(inode);
  if (!n) return std::nullopt;
  return n->nlookup;
}

FsReply MemFs::make_node(Node& parent, std::string_view name, uint32_t mode) {
  if (!S_ISDIR(parent.mode)) return err(ENOTDIR);
  if (parent.children.count(std::string(name))) return err(EEXIST);
  const uint64_t id = next_id_++;
  Node& n = nodes_[id];
  n.id = id;
  n.mode = mode;
  n.nlink = S_ISDIR(mode) ? 2 : 1;
  n.mtime = now();
  parent.children[std::string(name)] = id;
  return entry_reply(n);
}

FsReply MemFs::remove(Node& parent, std::string_view name, bool dir) {
  auto it = parent.children.find(std::string(name));
  if (it == parent.children.end()) return err(ENOENT);
  Node* n = node(it->second);
  if (dir != S_ISDIR(n->mode)) return err(dir ? ENOTDIR : EISDIR);
  if (dir && !n->children.empty()) return err(ENOTEMPTY);
  parent.children.erase(it);
  n->nlink = 0;
  if (n->nlookup == 0) nodes_.erase(n->id);
  return {};
}

FsReply MemFs::readdir(Node& dir, const fuse_read_in& in) {
  if (!S_ISDIR(dir.mode)) return err(ENOTDIR);
  FsReply r;
  uint64_t index = 0;
  for (const auto& [name, id] : dir.children) {
    if (index++ < in.offset) continue;
    const size_t record = FUSE_DIRENT_ALIGN(FUSE_NAME_OFFSET + name.size());
    if (r.payload.size() + record > in.size) break;
    const size_t at = r.payload.size();
    r.payload.resize(at + record);
    fuse_dirent d{};
    d.ino = id;
    d.off = index;
    d.namelen = static_cast<uint32_t>(name.size());
    d.type = S_ISDIR(nodes_[id].mode) ? 4 /*DT_DIR*/ : 8 /*DT_REG*/;
    std::memcpy(r.payload.data() + at, &d, FUSE_NAME_OFFSET);
    std::memcpy(r.payload.data() + at + FUSE_NAME_OFFSET, name.data(), name.size());
  }
  return r;
}

FsReply MemFs::handle(const fuse_in_header& h, std::span<const std::byte> args) {
  std::lock_guard lock(mu_);
  Node* n = node(h.nodeid);
  if (!n && h.opcode != FUSE_INIT && h.opcode != FUSE_DESTROY) return err(ENOENT);
  switch (h.opcode) {
    case FUSE_INIT: {
      fuse_init_in in{};
      if (!take(args, in)) return err(EINVAL);
      fuse_init_out out{};
      out.major = FUSE_KERNEL_VERSION;
      out.minor = std::min<uint32_t>(in.minor, 36);
      out.max_readahead = in.max_readahead;
      out.flags = in.flags & (FUSE_ASYNC_READ | FUSE_BIG_WRITES | FUSE_MAX_PAGES);
      out.max_write = 1u << 20;
      out.max_pages = 256;
      out.time_gran = 1;
      out.max_background = 64;
      out.congestion_threshold = 48;
      return ok(out);
    }
    case FUSE_DESTROY:
      return {};
    case FUSE_LOOKUP: {
      std::string_view name = take_name(args);
      if (name.empty()) return err(EINVAL);
      auto it = n->children.find(std::string(name));
      if (it == n->children.end()) return err(ENOENT);
      return entry_reply(nodes_[it->second]);
    }
    case FUSE_GETATTR: {
      fuse_attr_out out{};
      out.attr = attr_of(*n);
      out.attr_valid = 1;
      return ok(out);
    }
    case FUSE_SETATTR: {
      fuse_setattr_in in{};
      if (!take(args, in)) return err(EINVAL);
      if (in.valid & FATTR_SIZE) n->data.resize(in.size);
      if (in.valid & FATTR_MODE) n->mode = (n->mode & S_IFMT) | (in.mode & 07777);
      n->mtime = now();
      fuse_attr_out out{};
      out.attr = attr_of(*n);
      return ok(out);
    }
    case FUSE_MKDIR: {
      fuse_mkdir_in in{};
      if (!take(args, in)) return err(EINVAL);
      std::string_view name = take_name(args);
      if (name.empty()) return err(EINVAL);
      return make_node(*n, name, S_IFDIR | (in.mode & 07777));
    }
    case FUSE_CREATE: {
      fuse_create_in in{};
      if (!take(args, in)) return err(EINVAL);
      std::string_view name = take_name(args);
      if (name.empty()) return err(EINVAL);
      FsReply r = make_node(*n, name, S_IFREG | (in.mode & 07777));
      if (r.error) return r;
      fuse_open_out open{};
      fuse_entry_out e;
      std::memcpy(&e, r.payload.data(), sizeof(e));
      open.fh = e.nodeid;
      return ok(e, open);
    }
    case FUSE_OPEN:
    case FUSE_OPENDIR: {
      if ((h.opcode == FUSE_OPENDIR) != S_ISDIR(n->mode)) return err(h.opcode == FUSE_OPEN ? EISDIR : ENOTDIR);
      fuse_open_out out{};
      out.fh = n->id;
      return ok(out);
    }
    case FUSE_READ: {
      fuse_read_in in{};
      if (!take(args, in)) return err(EINVAL);
      FsReply r;
      if (in.offset < n->data.size()) {
        const size_t len = std::min<size_t>(in.size, n->data.size() - in.offset);
        r.payload.assign(n->data.begin() + static_cast<ptrdiff_t>(in.offset),
                         n->data.begin() + static_cast<ptrdiff_t>(in.offset + len));
      }
      return r;
    }
    case FUSE_WRITE: {
      fuse_write_in in{};
      if (!take(args, in) || args.size() < in.size) return err(EINVAL);
      if (S_ISDIR(n->mode)) return err(EISDIR);
      if (n->data.size() < in.offset + in.size) n->data.resize(in.offset + in.size);
      std::copy_n(args.begin(), in.size, n->data.begin() + static_cast<ptrdiff_t>(in.offset));
      n->mtime = now();
      fuse_write_out out{};
      out.size = in.size;
      return ok(out);
    }
    case FUSE_READDIR: {
      fuse_read_in in{};
      if (!take(args, in)) return err(EINVAL);
      return readdir(*n, in);
    }
    case FUSE_UNLINK:
    case FUSE_RMDIR: {
      std::string_view name = take_name(args);
      if (name.empty()) return err(EINVAL);
      return remove(*n, name, h.opcode == FUSE_RMDIR);
    }
    case FUSE_STATFS: {
      fuse_statfs_out out{};
      out.st.blocks = out.st.bfree = out.st.bavail = 1u << 20;
      out.st.files = out.st.ffree = 1u << 20;
      out.st.bsize = out.st.frsize = 4096;
      out.st.namelen = 255;
      return ok(out);
    }
    case FUSE_RELEASE:
    case FUSE_RELEASEDIR:
    case FUSE_FLUSH:
    case FUSE_FSYNC:
    case FUSE_FSYNCDIR:
    case FUSE_ACCESS:
      return {};
    default:
      return err(ENOSYS);
  }
}

}  // namespace virtiofs::test
