// virtiofs: a command-line client of a virtio-fs device, built on the public API only.
//   virtiofs --socket PATH | --device PCI|--tag TAG  ls|cat|put|stat|rm|mkdir|rmdir|mv ...
//   virtiofs probe | bind DEVICE | unbind DEVICE   (virtio-fs PCI devices, inside a VM)
// Exit status: 0 done, 1 failed, 2 bad usage.
#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

#include "bench.hpp"
#include "format.hpp"
#include "virtiofs/client.hpp"
#include "virtiofs/devices.hpp"

namespace {

constexpr int kFailed = 1;
constexpr int kBadUsage = 2;

const char* kUsage =
    "usage: virtiofs --socket PATH [--tag TAG] [--queue-size N] COMMAND [ARGS]\n"
    "       virtiofs --device PCI_ADDR [--tag TAG] [--queue-size N] COMMAND [ARGS]  (VFIO)\n"
    "       virtiofs --tag TAG [--queue-size N] COMMAND [ARGS]  (the VFIO-bound device TAG)\n"
    "       virtiofs probe | bind PCI_ADDR|TAG | unbind PCI_ADDR|TAG\n"
    "       virtiofs -h|--help | -V|--version\n"
    "options:\n"
    "  --socket PATH         virtiofsd's vhost-user socket (its --socket-path)\n"
    "  --device PCI_ADDR     a virtio-fs PCI device bound to vfio-pci (inside a VM, as root)\n"
    "  --tag TAG             the device's tag: checked when the device reports one; alone,\n"
    "                        the vfio-pci-bound device with that tag\n"
    "  --queue-size N        descriptors per virtqueue, a power of two 2..32768 (128)\n"
    "  -h, --help            this summary\n"
    "  -V, --version         the version\n"
    "commands:\n"
    "  ls [-l] [PATH]        list a directory (-l: mode, links, uid, gid, size, mtime)\n"
    "  cat FILE              print a file\n"
    "  put LOCALFILE FILE    copy a local file onto the device\n"
    "  stat PATH             show attributes, as stat(1)\n"
    "  rm PATH               remove a file\n"
    "  mkdir DIR             create a directory\n"
    "  rmdir DIR             remove an empty directory\n"
    "  mv FROM TO            rename\n"
    "  statfs                show file system usage\n"
    "  bench [SECONDS]       GETATTR round trips (depth 1, 32) and 1 MiB read/write MB/s\n"
    "  probe                 list virtio-fs PCI devices (address, driver, group, tag, queues)\n"
    "  bind PCI_ADDR|TAG     bind a virtio-fs PCI device to vfio-pci\n"
    "  unbind PCI_ADDR|TAG   give it back to the kernel's virtio-fs driver\n"
    "exit status: 0 done, 1 failed, 2 bad usage\n";

// One line naming what is wrong, then where to look.
int bad_usage(const std::string& what) {
  std::cerr << "virtiofs: " << what << " (see virtiofs --help)\n";
  return kBadUsage;
}

int die(const std::string& what, std::error_code ec) {
  std::cerr << "virtiofs: " << what << ": " << ec.message() << "\n";
  return kFailed;
}

std::string join(const std::string& dir, const std::string& name) {
  if (dir.empty() || dir == "/") return name;
  return dir.back() == '/' ? dir + name : dir + "/" + name;
}

// The target of `path` if it is a symbolic link, else "".
std::string link_target(virtiofs::Client& fs, const std::string& path, const virtiofs::Attr& a) {
  std::string target;
  if (S_ISLNK(a.mode) && fs.readlink(path, target)) target.clear();
  return target;
}

int list(virtiofs::Client& fs, const std::vector<std::string>& args) {
  bool long_format = false;
  std::optional<std::string> path;
  for (const auto& a : args) {
    if (a == "-l") {
      long_format = true;
    } else if (a.size() > 1 && a[0] == '-') {
      return bad_usage("ls: unknown option '" + a + "' (only -l)");
    } else if (path) {
      return bad_usage("ls takes one PATH");
    } else {
      path = a;
    }
  }
  const std::string dir = path.value_or("/");
  virtiofs::Attr self;
  if (auto ec = fs.stat(dir, self)) return die("ls " + dir, ec);
  std::vector<virtiofs::cli::LongEntry> shown;
  if (!S_ISDIR(self.mode)) {
    shown.push_back({dir, self, long_format ? link_target(fs, dir, self) : ""});
  } else {
    std::vector<virtiofs::DirEntry> entries;
    if (auto ec = fs.list_dir(dir, entries)) return die("ls " + dir, ec);
    std::sort(entries.begin(), entries.end(), [](auto& a, auto& b) { return a.name < b.name; });
    for (const auto& e : entries) {
      virtiofs::cli::LongEntry le{e.name, {}, ""};
      if (long_format) {
        const std::string p = join(dir, e.name);
        if (auto ec = fs.stat(p, le.attr)) return die("ls -l " + p, ec);
        le.link_target = link_target(fs, p, le.attr);
      }
      shown.push_back(std::move(le));
    }
  }
  if (long_format) {
    std::cout << virtiofs::cli::long_listing(shown);
  } else {
    for (const auto& e : shown) std::cout << e.name << "\n";
  }
  return 0;
}

int run(virtiofs::Client& fs, const std::string& cmd, const std::vector<std::string>& args) {
  auto need = [&](size_t n) {
    if (args.size() == n) return true;
    bad_usage("'" + cmd + "' takes " + std::to_string(n) + " argument(s)");
    return false;
  };
  if (cmd == "ls") return list(fs, args);
  if (cmd == "cat") {
    if (!need(1)) return kBadUsage;
    std::string data;
    if (auto ec = fs.read_file(args[0], data)) return die("cat " + args[0], ec);
    std::cout.write(data.data(), static_cast<std::streamsize>(data.size()));
    return 0;
  }
  if (cmd == "put") {
    if (!need(2)) return kBadUsage;
    std::ifstream in(args[0], std::ios::binary);
    if (!in) return die("put: cannot read " + args[0], std::error_code(errno, std::system_category()));
    std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (auto ec = fs.write_file(args[1], std::as_bytes(std::span(data)))) return die("put " + args[1], ec);
    return 0;
  }
  if (cmd == "stat") {
    if (!need(1)) return kBadUsage;
    virtiofs::Attr a;
    if (auto ec = fs.stat(args[0], a)) return die("stat " + args[0], ec);
    std::cout << virtiofs::cli::stat_report(args[0], a, link_target(fs, args[0], a));
    return 0;
  }
  if (cmd == "rm") {
    if (!need(1)) return kBadUsage;
    if (auto ec = fs.unlink(args[0])) return die("rm " + args[0], ec);
    return 0;
  }
  if (cmd == "mkdir") {
    if (!need(1)) return kBadUsage;
    if (auto ec = fs.mkdir(args[0])) return die("mkdir " + args[0], ec);
    return 0;
  }
  if (cmd == "rmdir") {
    if (!need(1)) return kBadUsage;
    if (auto ec = fs.rmdir(args[0])) return die("rmdir " + args[0], ec);
    return 0;
  }
  if (cmd == "mv") {
    if (!need(2)) return kBadUsage;
    if (auto ec = fs.rename(args[0], args[1])) return die("mv " + args[0] + " " + args[1], ec);
    return 0;
  }
  if (cmd == "statfs") {
    if (!need(0)) return kBadUsage;
    virtiofs::StatFs s;
    if (auto ec = fs.statfs(virtiofs::kRootInode, s)) return die("statfs", ec);
    std::printf("bsize=%u blocks=%llu bfree=%llu files=%llu ffree=%llu\n", s.bsize,
                static_cast<unsigned long long>(s.blocks), static_cast<unsigned long long>(s.bfree),
                static_cast<unsigned long long>(s.files), static_cast<unsigned long long>(s.ffree));
    return 0;
  }
  if (cmd == "bench") {
    if (args.size() > 1) return bad_usage("'bench' takes at most one argument");
    double seconds = 2.0;
    if (!args.empty()) {
      char* end = nullptr;
      seconds = std::strtod(args[0].c_str(), &end);
      if (args[0].empty() || *end || !(seconds > 0 && seconds <= 3600))
        return bad_usage("bench: SECONDS is a number from 0 to 3600, not '" + args[0] + "'");
    }
    return run_bench(fs, seconds);
  }
  return bad_usage("unknown command '" + cmd + "'");
}

// Lists virtio-fs PCI devices: address, driver, tag, request queues.
int probe() {
  const auto devices = virtiofs::list_pci_fs_devices();
  if (devices.empty()) {
    std::cout << "no virtio-fs PCI devices\n";
    return 0;
  }
  std::printf("%-14s %-10s %-6s %-37s %s\n", "ADDRESS", "DRIVER", "GROUP", "TAG", "QUEUES");
  for (const auto& d : devices) {
    const std::string tag = d.tag.empty() ? "? (" + d.unreadable + ")" : d.tag;
    std::printf("%-14s %-10s %-6s %-37s %s\n", d.address.c_str(),
                d.driver.empty() ? "-" : d.driver.c_str(),
                d.iommu_group < 0 ? "-" : std::to_string(d.iommu_group).c_str(), tag.c_str(),
                d.tag.empty() ? "?" : std::to_string(d.request_queues).c_str());
  }
  return 0;
}

int device_command(const std::string& cmd, const std::vector<std::string>& args) {
  if (cmd == "probe") {
    if (!args.empty()) return bad_usage("'probe' takes no argument");
    return probe();
  }
  if (args.size() != 1) return bad_usage("'" + cmd + "' takes a PCI address or a tag");
  const std::string address = cmd == "bind" ? virtiofs::bind_to_vfio(args[0]) : virtiofs::unbind_from_vfio(args[0]);
  std::cout << address << (cmd == "bind" ? " bound to vfio-pci\n" : " given back to the kernel\n");
  return 0;
}

// Takes the options before the command; returns the exit status when there is nothing to run.
std::optional<int> parse_options(int argc, char** argv, virtiofs::Options& options,
                                 std::vector<std::string>& rest) {
  int i = 1;
  for (; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::cout << kUsage;
      return 0;
    }
    if (a == "-V" || a == "--version") {
      std::cout << "virtiofs " << VIRTIOFS_VERSION << "\n";
      return 0;
    }
    if (a == "--") {
      ++i;
      break;
    }
    if (a.empty() || a[0] != '-') break;  // the command
    std::string value;
    const size_t eq = a.find('=');
    const std::string name = a.substr(0, eq);
    if (name != "--socket" && name != "--device" && name != "--tag" && name != "--queue-size")
      return bad_usage("unknown option '" + a + "'");
    if (eq != std::string::npos) {
      value = a.substr(eq + 1);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      return bad_usage(name + " needs a value");
    }
    if (name == "--socket") options.socket_path = value;
    if (name == "--device") options.pci_device = value;
    if (name == "--tag") options.tag = value;
    if (name == "--queue-size") {
      char* end = nullptr;
      const unsigned long n = std::strtoul(value.c_str(), &end, 10);
      if (value.empty() || *end || n < 2 || n > 32768 || (n & (n - 1)))
        return bad_usage("--queue-size takes a power of two from 2 to 32768, not '" + value + "'");
      options.queue_size = static_cast<uint16_t>(n);
    }
  }
  rest.assign(argv + i, argv + argc);
  if (rest.empty()) return bad_usage("no command");
  return std::nullopt;
}

}  // namespace

int main(int argc, char** argv) {
  virtiofs::Options options;
  std::vector<std::string> rest;
  if (auto status = parse_options(argc, argv, options, rest)) return *status;
  try {
    if (rest[0] == "probe" || rest[0] == "bind" || rest[0] == "unbind")
      return device_command(rest[0], {rest.begin() + 1, rest.end()});
    static const char* const kCommands[] = {"ls",    "cat",   "put", "stat",  "rm",
                                            "mkdir", "rmdir", "mv",  "statfs", "bench"};
    if (std::find(std::begin(kCommands), std::end(kCommands), rest[0]) == std::end(kCommands))
      return bad_usage("unknown command '" + rest[0] + "'");
    // Neither --socket nor --device: the library finds the VFIO-bound device with the tag.
    if (options.socket_path.empty() && options.pci_device.empty() && options.tag.empty())
      return bad_usage("give the device: --socket PATH, --device PCI_ADDR or --tag TAG");
    if (!options.socket_path.empty() && !options.pci_device.empty())
      return bad_usage("give --socket or --device, not both");
    auto fs = virtiofs::Client::connect(options);
    const std::string cmd = rest[0];
    rest.erase(rest.begin());
    int rc = run(*fs, cmd, rest);
    fs->close();
    return rc;
  } catch (const std::exception& e) {
    std::cerr << "virtiofs: " << e.what() << "\n";
    return kFailed;
  }
}
