// Test fixture: a small in-memory file system answering FUSE requests (the subset the test
// backend serves). Thread-safe; one lock, as a fixture needs nothing faster.
#pragma once

#include <linux/fuse.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace virtiofs::test {

struct FsReply {
  int32_t error = 0;  // -errno
  std::vector<std::byte> payload;
};

class MemFs {
 public:
  MemFs();
  // Answers one request (header + its arguments, as they came off the ring).
  FsReply handle(const fuse_in_header& header, std::span<const std::byte> args);
  // Drops lookup references (FORGET, BATCH_FORGET).
  void forget(uint64_t inode, uint64_t nlookup);

  // For in-process tests, to check what requests did: a file's bytes, a node's lookup count
  // (nullopt: no such node).
  std::optional<std::vector<std::byte>> contents(uint64_t inode);
  std::optional<uint64_t> lookups(uint64_t inode);

 private:
  struct Node {
    uint64_t id = 0;
    uint32_t mode = 0;
    uint32_t nlink = 1;
    uint64_t nlookup = 0;
    std::vector<std::byte> data;                 // regular files
    std::map<std::string, uint64_t> children;    // directories
    uint64_t mtime = 0;
  };
  Node* node(uint64_t id);
  fuse_attr attr_of(const Node& n) const;
  FsReply entry_reply(Node& n);
  FsReply make_node(Node& parent, std::string_view name, uint32_t mode);
  FsReply remove(Node& parent, std::string_view name, bool dir);
  FsReply readdir(Node& dir, const fuse_read_in& in);

  std::mutex mu_;
  std::map<uint64_t, Node> nodes_;
  uint64_t next_id_ = 2;
};

}  // namespace virtiofs::test
