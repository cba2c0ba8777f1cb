// virtiofs: a command-line client of a virtio-fs device, built on the public API only.
//   virtiofs --socket PATH | --device PCI|--tag TAG  ls|cat|put|stat|rm|mkdir|rmdir|mv ...
//   virtiofs probe | bind DEVICE | unbind DEVICE   (virtio-fs PCI devices, inside a VM)
#include <fcntl.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "bench.hpp"
#include "virtiofs/client.hpp"
#include "virtiofs/devices.hpp"

namespace {

const char* kUsage =
    "usage: virtiofs --socket PATH [--tag TAG] COMMAND [ARGS]\n"
    "       virtiofs [--device PCI_ADDR] --tag TAG COMMAND [ARGS]   (VFIO, inside a VM)\n"
    "       virtiofs probe | bind PCI_ADDR|TAG | unbind PCI_ADDR|TAG\n"
    "commands:\n"
    "  ls [DIR]              list a directory\n"
    "  cat FILE              print a file\n"
    "  put LOCALFILE FILE    copy a local file onto the device\n"
    "  stat PATH             show attributes\n"
    "  rm PATH               remove a file\n"
    "  mkdir DIR             create a directory\n"
    "  rmdir DIR             remove an empty directory\n"
    "  mv FROM TO            rename\n"
    "  statfs                show file system usage\n"
    "  bench [SECONDS]       GETATTR round trips (depth 1, 32) and 1 MiB read/write MB/s\n";

int die(const std::string& what, std::error_code ec) {
  std::cerr << "virtiofs: " << what << ": " << ec.message() << "\n";
  return 1;
}

char type_char(uint32_t mode) {
  if (S_ISDIR(mode)) return 'd';
  if (S_ISLNK(mode)) return 'l';
  if (S_ISREG(mode)) return '-';
  return '?';
}

int run(virtiofs::Client& fs, const std::string& cmd, const std::vector<std::string>& args) {
  auto need = [&](size_t n) {
    if (args.size() != n) {
      std::cerr << "virtiofs: '" << cmd << "' takes " << n << " argument(s)\n" << kUsage;
      return false;
    }
    return true;
  };
  if (cmd == "ls") {
    if (args.size() > 1) return need(1) ? 0 : 2;
    const std::string dir = args.empty() ? "/" : args[0];
    std::vector<virtiofs::DirEntry> entries;
    if (auto ec = fs.list_dir(dir, entries)) return die("ls " + dir, ec);
    for (const auto& e : entries) std::cout << e.name << "\n";
    return 0;
  }
  if (cmd == "cat") {
    if (!need(1)) return 2;
    std::string data;
    if (auto ec = fs.read_file(args[0], data)) return die("cat " + args[0], ec);
    std::cout.write(data.data(), static_cast<std::streamsize>(data.size()));
    return 0;
  }
  if (cmd == "put") {
    if (!need(2)) return 2;
    std::ifstream in(args[0], std::ios::binary);
    if (!in) return die("put: cannot read " + args[0], std::error_code(errno, std::system_category()));
    std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (auto ec = fs.write_file(args[1], std::as_bytes(std::span(data)))) return die("put " + args[1], ec);
    return 0;
  }
  if (cmd == "stat") {
    if (!need(1)) return 2;
    virtiofs::Attr a;
    if (auto ec = fs.stat(args[0], a)) return die("stat " + args[0], ec);
    std::printf("%c%04o ino=%llu size=%llu nlink=%u uid=%u gid=%u mtime=%llu\n", type_char(a.mode),
                a.mode & 07777, static_cast<unsigned long long>(a.ino),
                static_cast<unsigned long long>(a.size), a.nlink, a.uid, a.gid,
                static_cast<unsigned long long>(a.mtime.sec));
    return 0;
  }
  if (cmd == "rm") {
    if (!need(1)) return 2;
    if (auto ec = fs.unlink(args[0])) return die("rm " + args[0], ec);
    return 0;
  }
  if (cmd == "mkdir") {
    if (!need(1)) return 2;
    if (auto ec = fs.mkdir(args[0])) return die("mkdir " + args[0], ec);
    return 0;
  }
  if (cmd == "rmdir") {
    if (!need(1)) return 2;
    if (auto ec = fs.rmdir(args[0])) return die("rmdir " + args[0], ec);
    return 0;
  }
  if (cmd == "mv") {
    if (!need(2)) return 2;
    if (auto ec = fs.rename(args[0], args[1])) return die("mv " + args[0] + " " + args[1], ec);
    return 0;
  }
  if (cmd == "statfs") {
    if (!need(0)) return 2;
    virtiofs::StatFs s;
    if (auto ec = fs.statfs(virtiofs::kRootInode, s)) return die("statfs", ec);
    std::printf("bsize=%u blocks=%llu bfree=%llu files=%llu ffree=%llu\n", s.bsize,
                static_cast<unsigned long long>(s.blocks), static_cast<unsigned long long>(s.bfree),
                static_cast<unsigned long long>(s.files), static_cast<unsigned long long>(s.ffree));
    return 0;
  }
  if (cmd == "bench") {
    if (args.size() > 1) return need(1) ? 0 : 2;
    return run_bench(fs, args.empty() ? 2.0 : std::stod(args[0]));
  }
  std::cerr << "virtiofs: unknown command '" << cmd << "'\n" << kUsage;
  return 2;
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
    if (!args.empty()) return std::cerr << kUsage, 2;
    return probe();
  }
  if (args.size() != 1) return std::cerr << kUsage, 2;
  const std::string address = cmd == "bind" ? virtiofs::bind_to_vfio(args[0]) : virtiofs::unbind_from_vfio(args[0]);
  std::cout << address << (cmd == "bind" ? " bound to vfio-pci\n" : " given back to the kernel\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  virtiofs::Options options;
  std::vector<std::string> rest;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if ((a == "--socket" || a == "--device" || a == "--tag" || a == "--queue-size") && i + 1 < argc) {
      std::string v = argv[++i];
      if (a == "--socket") options.socket_path = v;
      if (a == "--device") options.pci_device = v;
      if (a == "--tag") options.tag = v;
      if (a == "--queue-size") {
        char* end = nullptr;
        unsigned long n = std::strtoul(v.c_str(), &end, 10);
        if (*end || n == 0 || n > 32768) {
          std::cerr << "virtiofs: --queue-size takes a power of two from 2 to 32768\n";
          return 2;
        }
        options.queue_size = static_cast<uint16_t>(n);
      }
    } else if (a == "-h" || a == "--help") {
      std::cout << kUsage;
      return 0;
    } else if (a.rfind("--", 0) == 0) {
      std::cerr << "virtiofs: unknown or incomplete option '" << a << "'\n" << kUsage;
      return 2;
    } else {
      rest.push_back(a);
    }
  }
  if (rest.empty()) {
    std::cerr << kUsage;
    return 2;
  }
  try {
    if (rest[0] == "probe" || rest[0] == "bind" || rest[0] == "unbind")
      return device_command(rest[0], {rest.begin() + 1, rest.end()});
    // No socket: the VFIO-bound device with the tag (inside a VM).
    if (options.socket_path.empty() && options.pci_device.empty()) {
      if (options.tag.empty()) {
        std::cerr << kUsage;
        return 2;
      }
      options.pci_device = virtiofs::find_vfio_fs_device(options.tag);
    }
    auto fs = virtiofs::Client::connect(options);
    const std::string cmd = rest[0];
    rest.erase(rest.begin());
    int rc = run(*fs, cmd, rest);
    fs->close();
    return rc;
  } catch (const std::system_error& e) {
    std::cerr << "virtiofs: " << e.what() << "\n";
    return 1;
  }
}
