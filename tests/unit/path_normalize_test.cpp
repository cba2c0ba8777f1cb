// normalize_path: every rule of the "paths" section of client.hpp, one table row each.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "client/path_normalize.hpp"

using virtiofs::client::normalize_path;
using virtiofs::client::PathParts;

namespace {

struct Case {
  std::string path;
  std::vector<std::string> names;
  bool directory;
  bool ends_in_name;
};

const Case kCases[] = {
    // The root, however it is spelled.
    {"", {}, true, false},
    {"/", {}, true, false},
    {"//", {}, true, false},
    {".", {}, true, false},
    {"./", {}, true, false},
    {"/././/.", {}, true, false},
    // Plain names; a leading '/' changes nothing.
    {"a", {"a"}, false, true},
    {"/a", {"a"}, false, true},
    {"a/b", {"a", "b"}, false, true},
    {"/a/b", {"a", "b"}, false, true},
    // Repeated slashes count as one; "." components go.
    {"a//b", {"a", "b"}, false, true},
    {"d0//s0/./f0", {"d0", "s0", "f0"}, false, true},
    {"./a/./b", {"a", "b"}, false, true},
    {"///a///b", {"a", "b"}, false, true},
    // A trailing '/' or "/." asks for a directory; only '/' keeps the last name an entry.
    {"a/", {"a"}, true, true},
    {"a//", {"a"}, true, true},
    {"a/b/", {"a", "b"}, true, true},
    {"a/.", {"a"}, true, false},
    {"a/./", {"a"}, true, false},
    // ".." stays for the walk; ending in it asks for a directory and names no entry.
    {"..", {".."}, true, false},
    {"a/..", {"a", ".."}, true, false},
    {"a/../b", {"a", "..", "b"}, false, true},
    {"../a", {"..", "a"}, false, true},
    {"a/../", {"a", ".."}, true, false},
    // Names that merely start with dots are names.
    {"...", {"..."}, false, true},
    {".a/..b", {".a", "..b"}, false, true},
};

TEST(NormalizePath, EveryRuleOfThePathSection) {
  for (const Case& c : kCases) {
    SCOPED_TRACE("path \"" + c.path + "\"");
    PathParts parts;
    ASSERT_FALSE(normalize_path(c.path, parts));
    std::vector<std::string> names(parts.names.begin(), parts.names.end());
    EXPECT_EQ(names, c.names);
    EXPECT_EQ(parts.directory, c.directory);
    EXPECT_EQ(parts.ends_in_name, c.ends_in_name);
  }
}

TEST(NormalizePath, NamesViewThePathItself) {
  const std::string path = "a//bc/";
  PathParts parts;
  ASSERT_FALSE(normalize_path(path, parts));
  ASSERT_EQ(parts.names.size(), 2u);
  EXPECT_EQ(parts.names[1].data(), path.data() + 3);
}

TEST(NormalizePath, NameOfNameMaxBytesIsTakenOneMoreIsEnametoolong) {
  PathParts parts;
  EXPECT_FALSE(normalize_path("d/" + std::string(255, 'n'), parts));
  EXPECT_EQ(normalize_path("d/" + std::string(256, 'n') + "/x", parts),
            std::errc::filename_too_long);
  EXPECT_EQ(normalize_path(std::string(256, 'n') + "/", parts), std::errc::filename_too_long);
}

TEST(NormalizePath, PathOfPathMaxBytesIsEnametoolongOneLessIsTaken) {
  auto path_of = [](size_t bytes) {
    std::string p;
    while (p.size() < bytes) p += "abcdefg/";
    p.resize(bytes);
    if (p.back() == '/') p.back() = 'x';
    return p;
  };
  PathParts parts;
  EXPECT_FALSE(normalize_path(path_of(4095), parts));
  EXPECT_EQ(normalize_path(path_of(4096), parts), std::errc::filename_too_long);
}

TEST(NormalizePath, NulByteIsEinval) {
  PathParts parts;
  EXPECT_EQ(normalize_path(std::string("a\0b", 3), parts), std::errc::invalid_argument);
  EXPECT_EQ(normalize_path(std::string("a/\0", 3), parts), std::errc::invalid_argument);
}

TEST(NormalizePath, AFailureLeavesNoNamesBehind) {
  PathParts parts;
  ASSERT_FALSE(normalize_path("a/b", parts));
  EXPECT_EQ(normalize_path("c/" + std::string(300, 'x'), parts), std::errc::filename_too_long);
  EXPECT_TRUE(parts.names.empty());
  ASSERT_FALSE(normalize_path("a/b", parts));
  EXPECT_EQ(normalize_path(std::string("c/\0", 3), parts), std::errc::invalid_argument);
  EXPECT_TRUE(parts.names.empty());
}

}  // namespace
