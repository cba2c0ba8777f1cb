// The command-line client (tools/virtiofs) against the real virtiofsd: its output checked
// against the host directory, and its exit statuses (0 done, 1 failed, 2 bad usage).
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <ctime>
#include <string>
#include <vector>

#include "support/virtiofsd.hpp"

using namespace virtiofs::test;

namespace {

struct CliRun {
  int status;
  std::string out;  // stdout and stderr
};

CliRun run_cli(const std::string& args) {
  const std::string cmd = std::string(VIRTIOFS_CLI) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  const int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

size_t lines(const std::string& s) { return static_cast<size_t>(std::count(s.begin(), s.end(), '\n')); }

class CliOutput : public ::testing::Test {
 protected:
  void SetUp() override {
    std::ofstream(share / "file.txt") << "twelve bytes";
    mkdir((share / "dir").c_str(), 0750);
    symlink("file.txt", (share / "link").c_str());
    chmod((share / "file.txt").c_str(), 0640);
    chown((share / "file.txt").c_str(), 1234, 5678);
  }
  // virtiofsd serves one connection and exits: one per command.
  CliRun with_backend(const std::string& args) {
    Virtiofsd backend(share.path());
    return run_cli("--socket " + backend.socket_path() + " " + args);
  }
  TempDir share;
};

TEST_F(CliOutput, LsLongShowsModeLinksOwnerSizeAndName) {
  CliRun r = with_backend("ls -l");
  ASSERT_EQ(r.status, 0) << r.out;
  std::istringstream in(r.out);
  std::string line;
  std::vector<std::string> got;
  while (std::getline(in, line)) got.push_back(line);
  ASSERT_EQ(got.size(), 3u) << r.out;  // sorted by name: dir, file.txt, link
  // Fields: mode, links, uid, gid, size, month, day, time or year, name [-> target].
  auto fields = [](const std::string& l) {
    std::istringstream f(l);
    std::vector<std::string> out;
    for (std::string w; f >> w;) out.push_back(w);
    return out;
  };
  struct stat dir_st {}, file_st {};
  ASSERT_EQ(stat((share / "dir").c_str(), &dir_st), 0);
  ASSERT_EQ(stat((share / "file.txt").c_str(), &file_st), 0);
  const auto dir = fields(got[0]), file = fields(got[1]), link = fields(got[2]);
  ASSERT_EQ(dir.size(), 9u) << got[0];
  EXPECT_EQ(dir[0], "drwxr-x---");
  EXPECT_EQ(dir[1], std::to_string(dir_st.st_nlink));
  EXPECT_EQ(dir[4], std::to_string(dir_st.st_size));
  EXPECT_EQ(dir[8], "dir");
  ASSERT_EQ(file.size(), 9u) << got[1];
  EXPECT_EQ(std::vector<std::string>(file.begin(), file.begin() + 5),
            (std::vector<std::string>{"-rw-r-----", "1", "1234", "5678", "12"}));
  char month[8];
  strftime(month, sizeof(month), "%b", localtime(&file_st.st_mtime));
  EXPECT_EQ(file[5], month);
  EXPECT_EQ(file[8], "file.txt");
  ASSERT_EQ(link.size(), 11u) << got[2];
  EXPECT_EQ(link[0], "lrwxrwxrwx");
  EXPECT_EQ(link[4], "8");
  EXPECT_EQ(link[8] + " " + link[9] + " " + link[10], "link -> file.txt");
  // Columns line up: every name starts at the same offset.
  EXPECT_EQ(got[0].rfind(" dir"), got[1].rfind(" file.txt")) << r.out;
}

TEST_F(CliOutput, LsListsNamesSortedAndAFileAsItself) {
  CliRun r = with_backend("ls");
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.out, "dir\nfile.txt\nlink\n");
  CliRun one = with_backend("ls -l file.txt");
  EXPECT_EQ(one.status, 0) << one.out;
  EXPECT_EQ(lines(one.out), 1u) << one.out;
  EXPECT_NE(one.out.find(" 12 "), std::string::npos) << one.out;
}

TEST_F(CliOutput, StatReadsLikeStat1) {
  struct stat st {};
  ASSERT_EQ(lstat((share / "file.txt").c_str(), &st), 0);
  CliRun r = with_backend("stat file.txt");
  ASSERT_EQ(r.status, 0) << r.out;
  for (const std::string& part :
       {std::string("  File: file.txt\n"), std::string("  Size: 12 "), std::string("regular file\n"),
        "Inode: " + std::to_string(st.st_ino) + " ", std::string("Links: 1\n"),
        std::string("Access: (0640/-rw-r-----)  Uid: ( 1234)   Gid: ( 5678)\n"), std::string("Access: 20"),
        std::string("Modify: 20"), std::string("Change: 20")})
    EXPECT_NE(r.out.find(part), std::string::npos) << "'" << part << "' missing from:\n" << r.out;
  CliRun link = with_backend("stat link");
  EXPECT_NE(link.out.find("  File: link -> file.txt\n"), std::string::npos) << link.out;
  EXPECT_NE(link.out.find("symbolic link"), std::string::npos) << link.out;
}

TEST_F(CliOutput, VersionAndHelp) {
  CliRun v = run_cli("--version");
  EXPECT_EQ(v.status, 0);
  EXPECT_EQ(v.out.rfind("virtiofs ", 0), 0u) << v.out;
  EXPECT_EQ(lines(v.out), 1u);
  EXPECT_EQ(run_cli("-V").out, v.out);
  CliRun h = run_cli("--help");
  EXPECT_EQ(h.status, 0);
  for (const char* word : {"--socket", "--device", "--tag", "--queue-size", "--help", "--version", "ls [-l]",
                           "cat", "put", "stat", "rm", "mkdir", "rmdir", "mv", "statfs", "bench", "probe",
                           "bind", "unbind", "exit status"})
    EXPECT_NE(h.out.find(word), std::string::npos) << word << " missing from the usage";
}

TEST_F(CliOutput, BadUsageExitsTwoWithOneLine) {
  for (const std::string& args :
       {std::string("--bogus ls"), std::string("--socket"), std::string(""), std::string("ls"),
        std::string("--socket /x.sock frobnicate"), std::string("--socket /x.sock --queue-size 100 ls"),
        std::string("--socket /x.sock --device 0000:00:04.0 ls")}) {
    CliRun r = run_cli(args);
    EXPECT_EQ(r.status, 2) << "virtiofs " << args << ": " << r.out;
    EXPECT_EQ(lines(r.out), 1u) << "virtiofs " << args << ": " << r.out;
    EXPECT_NE(r.out.find("virtiofs --help"), std::string::npos) << r.out;
  }
  EXPECT_EQ(with_backend("ls -x").status, 2);
  EXPECT_EQ(with_backend("cat").status, 2);
  EXPECT_EQ(with_backend("bench soon").status, 2);
}

TEST_F(CliOutput, ARegularFileGivenAsTheSocketIsSaidToBeOne) {
  CliRun r = run_cli("--socket " + (share / "file.txt") + " ls");
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(lines(r.out), 1u) << r.out;
  EXPECT_NE(r.out.find(share / "file.txt" + " is a regular file, not a UNIX socket (give virtiofsd's --socket-path)"),
            std::string::npos)
      << r.out;
}

TEST_F(CliOutput, FailuresExitOne) {
  CliRun r = with_backend("cat missing.txt");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.out.find("No such file or directory"), std::string::npos) << r.out;
}

}  // namespace
