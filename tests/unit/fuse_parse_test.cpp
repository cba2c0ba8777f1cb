// Reply validation, directory parsing and INIT negotiation on hand-made device output.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "fuse/dirent.hpp"
#include "fuse/init.hpp"
#include "fuse/ops.hpp"

using namespace virtiofs;
using namespace virtiofs::fuse;

TEST(ValidateReply, AcceptsWellFormedSuccessAndError) {
  bool malformed = true;
  fuse_out_header h{16 + 104, 0, 77};
  EXPECT_FALSE(validate_reply(h, 120, 77, malformed));
  EXPECT_FALSE(malformed);
  fuse_out_header e{16, -ENOENT, 77};
  EXPECT_EQ(validate_reply(e, 16, 77, malformed), std::errc::no_such_file_or_directory);
  EXPECT_FALSE(malformed);
}

TEST(ValidateReply, RejectsWhatADeviceMustNotWrite) {
  bool malformed = false;
  struct Case {
    fuse_out_header h;
    uint32_t used;
  } cases[] = {
      {{16, 0, 77}, 8},             // shorter than a header
      {{24, 0, 77}, 16},            // header length disagrees with used length
      {{16, 0, 78}, 16},            // another request's unique
      {{16, 1, 77}, 16},            // positive error
      {{16, -4096, 77}, 16},        // error outside -4095..0
      {{32, -EIO, 77}, 32},         // error reply with a payload
  };
  for (const auto& c : cases) {
    EXPECT_EQ(validate_reply(c.h, c.used, 77, malformed), std::errc::io_error);
    EXPECT_TRUE(malformed);
  }
}

namespace {
void put_dirent(std::vector<std::byte>& buf, uint64_t ino, uint64_t off, std::string_view name,
                uint32_t namelen_override = 0) {
  fuse_dirent d{ino, off, namelen_override ? namelen_override : static_cast<uint32_t>(name.size()), 4};
  const size_t start = buf.size();
  buf.resize(start + FUSE_DIRENT_ALIGN(FUSE_NAME_OFFSET + name.size()));
  std::memcpy(buf.data() + start, &d, FUSE_NAME_OFFSET);
  std::memcpy(buf.data() + start + FUSE_NAME_OFFSET, name.data(), name.size());
}
}  // namespace

TEST(Dirents, ParsesPaddedRecords) {
  std::vector<std::byte> buf;
  put_dirent(buf, 10, 1, "a");
  put_dirent(buf, 11, 2, "longer-name.txt");
  std::vector<std::string> names;
  std::vector<uint64_t> offsets;
  auto ec = parse_dirents(buf, false, [&](const DirentView& d) {
    names.emplace_back(d.name);
    offsets.push_back(d.offset);
    return true;
  });
  EXPECT_FALSE(ec);
  EXPECT_EQ(names, (std::vector<std::string>{"a", "longer-name.txt"}));
  EXPECT_EQ(offsets, (std::vector<uint64_t>{1, 2}));
}

TEST(Dirents, RejectsTruncatedAndOverlongRecords) {
  auto count = [](std::vector<std::byte>& buf, size_t& seen) {
    seen = 0;
    return parse_dirents(buf, false, [&](const DirentView&) {
      ++seen;
      return true;
    });
  };
  size_t seen;
  std::vector<std::byte> truncated;
  put_dirent(truncated, 10, 1, "ok");
  put_dirent(truncated, 11, 2, "cut-short");
  truncated.resize(truncated.size() - 12);
  EXPECT_EQ(count(truncated, seen), std::errc::io_error);
  EXPECT_EQ(seen, 1u);

  std::vector<std::byte> overlong;
  put_dirent(overlong, 10, 1, "x", 300);  // namelen beyond NAME_MAX and the buffer
  EXPECT_EQ(count(overlong, seen), std::errc::io_error);

  std::vector<std::byte> slash;
  put_dirent(slash, 10, 1, "a/b");
  EXPECT_EQ(count(slash, seen), std::errc::io_error);

  std::vector<std::byte> header_only(FUSE_NAME_OFFSET - 4);
  EXPECT_EQ(count(header_only, seen), std::errc::io_error);
}

namespace {
Reply init_reply(uint32_t major, uint32_t minor, uint32_t max_write, uint32_t max_pages,
                 uint32_t flags) {
  fuse_init_out o{};
  o.major = major;
  o.minor = minor;
  o.max_write = max_write;
  o.max_pages = static_cast<uint16_t>(max_pages);
  o.flags = flags;
  Reply r;
  std::memcpy(r.args.data(), &o, sizeof(o));
  r.args_len = sizeof(o);
  return r;
}
}  // namespace

TEST(InitNegotiation, ClampsToWhatTheRingAllows) {
  Negotiated n;
  auto r = init_reply(7, 36, 1 << 20, 256, FUSE_MAX_PAGES | FUSE_ASYNC_READ | FUSE_WRITEBACK_CACHE);
  ASSERT_FALSE(negotiate_init(r, kLibraryInitFlags, InitLimits{512 * 1024, 4096}, n));
  EXPECT_EQ(n.minor, 36u);
  EXPECT_EQ(n.max_write, 512u * 1024);
  EXPECT_EQ(n.max_read, 512u * 1024);
  EXPECT_EQ(n.max_pages, 256u);
  EXPECT_TRUE(n.flags & FUSE_ASYNC_READ);
  EXPECT_FALSE(n.flags & FUSE_WRITEBACK_CACHE) << "flags we did not offer are dropped";
}

TEST(InitNegotiation, RejectsAbsurdReplies) {
  Negotiated n;
  const InitLimits limits{1 << 20, 4096};
  EXPECT_TRUE(negotiate_init(init_reply(8, 36, 1 << 20, 256, FUSE_MAX_PAGES), kLibraryInitFlags, limits, n));
  EXPECT_TRUE(negotiate_init(init_reply(7, 20, 1 << 20, 256, FUSE_MAX_PAGES), kLibraryInitFlags, limits, n));
  EXPECT_TRUE(negotiate_init(init_reply(7, 36, 100, 256, FUSE_MAX_PAGES), kLibraryInitFlags, limits, n));
  EXPECT_TRUE(negotiate_init(init_reply(7, 36, 1 << 20, 0, FUSE_MAX_PAGES), kLibraryInitFlags, limits, n));
  EXPECT_TRUE(negotiate_init(init_reply(7, 36, 1 << 20, 60000, FUSE_MAX_PAGES), kLibraryInitFlags, limits, n));
  Reply short_reply = init_reply(7, 36, 1 << 20, 256, 0);
  short_reply.args_len = 8;
  EXPECT_TRUE(negotiate_init(short_reply, kLibraryInitFlags, limits, n));
}

TEST(Names, InvalidNamesNeverReachTheDevice) {
  EXPECT_FALSE(check_name("file.txt"));
  EXPECT_TRUE(check_name(""));
  EXPECT_TRUE(check_name("a/b"));
  EXPECT_TRUE(check_name("."));
  EXPECT_TRUE(check_name(".."));
  EXPECT_TRUE(check_name(std::string(256, 'x')));
  EXPECT_TRUE(check_name(std::string_view("a\0b", 3)));
}
