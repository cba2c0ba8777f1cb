#include "options.hpp"

#include "client/open_device.hpp"
#include "mount/kernel_mount.hpp"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <system_error>

namespace virtiofs::mount_tool {

namespace {

struct DirCloser {
  void operator()(DIR* d) const { closedir(d); }
};

constexpr unsigned kNoReadahead = ~0u;  // readahead_kb= not given

struct Parsed {
  char* socket = nullptr;
  char* share = nullptr;
  unsigned queue_size = 128;
  unsigned num_queues = 0;
  unsigned poll_us = 0;
  int interrupts = 0;
  int io_uring = 0;
  unsigned io_uring_depth = 8;
  int remote_locks = 0;
  unsigned readahead_kb = kNoReadahead;
  int writeback = 0;
  int default_permissions = 0;
  int no_default_permissions = 0;
  int allow_other = 0;
  int no_allow_other = 0;
  int allow_root = 0;
  std::string tag;
  bool has_fsname = false;
  bool has_max_threads = false;
};

enum Key { kFsname = 1, kMaxThreads, kDrop };

#define OPT(t, field) {t, offsetof(Parsed, field), 0}
const fuse_opt kOptions[] = {
    OPT("socket=%s", socket),
    OPT("share=%s", share),
    OPT("queue_size=%u", queue_size),
    OPT("num_queues=%u", num_queues),
    OPT("poll_us=%u", poll_us),
    {"interrupts", offsetof(Parsed, interrupts), 1},
    {"io_uring", offsetof(Parsed, io_uring), 1},
    OPT("io_uring_depth=%u", io_uring_depth),
    {"remote_locks", offsetof(Parsed, remote_locks), 1},
    OPT("readahead_kb=%u", readahead_kb),
    {"writeback", offsetof(Parsed, writeback), 1},
    // Taken here, not by libfuse: we decide what the kernel gets (the kernel knows no "no_" forms).
    {"default_permissions", offsetof(Parsed, default_permissions), 1},
    {"no_default_permissions", offsetof(Parsed, no_default_permissions), 1},
    {"allow_other", offsetof(Parsed, allow_other), 1},
    {"no_allow_other", offsetof(Parsed, no_allow_other), 1},
    {"allow_root", offsetof(Parsed, allow_root), 1},
    FUSE_OPT_KEY("fsname=", kFsname),
    FUSE_OPT_KEY("max_threads=", kMaxThreads),
    // fstab-only options mount(8) or mount.fuse3 may pass on: they mean nothing here.
    FUSE_OPT_KEY("defaults", kDrop),
    FUSE_OPT_KEY("auto", kDrop),
    FUSE_OPT_KEY("noauto", kDrop),
    FUSE_OPT_KEY("user", kDrop),
    FUSE_OPT_KEY("nouser", kDrop),
    FUSE_OPT_KEY("users", kDrop),
    FUSE_OPT_KEY("_netdev", kDrop),
    FUSE_OPT_KEY("nofail", kDrop),
    FUSE_OPT_END,
};
#undef OPT

int on_option(void* data, const char* arg, int key, fuse_args*) {
  auto& p = *static_cast<Parsed*>(data);
  switch (key) {
    case FUSE_OPT_KEY_NONOPT:
      if (p.tag.empty()) {
        p.tag = arg;
        return 0;
      }
      return 1;  // the mount point: libfuse's command-line parser takes it
    case FUSE_OPT_KEY_OPT:
      if (std::strncmp(arg, "x-", 2) == 0 || std::strncmp(arg, "comment=", 8) == 0) return 0;
      return 1;
    case kFsname:
      p.has_fsname = true;
      return 1;
    case kMaxThreads:
      p.has_max_threads = true;
      return 1;
    case kDrop:
      return 0;
    default:
      return 1;
  }
}

bool is_power_of_two(unsigned v) { return v && !(v & (v - 1)); }

// As the Linux virtio-fs driver: the kernel checks owners and modes, because the device (virtiofsd
// with CAP_DAC_OVERRIDE) opens whatever it is asked to. When root mounts, the mount is for every
// user, as with `mount -t virtiofs`; other users ask for allow_other (fusermount3 refuses it
// without user_allow_other in /etc/fuse.conf), so that their mounts do not fail by default.
void settle_permissions(const Parsed& p, Options& out) {
  if (p.default_permissions && p.no_default_permissions)
    throw UsageError("give default_permissions or no_default_permissions, not both");
  if (p.allow_other && p.no_allow_other) throw UsageError("give allow_other or no_allow_other, not both");
  // libfuse gives the kernel allow_other for it and turns other users away in its request loop,
  // which the bridge does not run: accepting it would let every user in.
  if (p.allow_root)
    throw UsageError("allow_root is not supported (it would let every user in): use allow_other or no_allow_other");
  out.default_permissions = !p.no_default_permissions;
  out.allow_other = p.allow_other || (geteuid() == 0 && !p.no_allow_other);
  if (out.default_permissions) fuse_opt_add_arg(&out.fuse, "-odefault_permissions");
  if (out.allow_other) fuse_opt_add_arg(&out.fuse, "-oallow_other");
}

}  // namespace

void parse(int argc, char** argv, Options& out) {
  out.fuse = FUSE_ARGS_INIT(argc, argv);
  fuse_args& args = out.fuse;
  Parsed p;
  if (fuse_opt_parse(&args, &p, kOptions, on_option) != 0)
    throw UsageError("invalid options (see --help)");
  std::unique_ptr<char, decltype(&free)> socket(p.socket, free), share(p.share, free);
  fuse_cmdline_opts cmd{};
  mount::capture_libfuse_log();
  mount::take_libfuse_log();
  if (fuse_parse_cmdline(&args, &cmd) != 0) {
    std::string why = mount::take_libfuse_log();
    // libfuse resolves the mount point here: a missing one is a failure, not bad usage.
    if (why.rfind("bad mount point", 0) == 0) throw std::runtime_error(why);
    throw UsageError(why.empty() ? "invalid options (see --help)" : why);
  }
  std::unique_ptr<char, decltype(&free)> mountpoint(cmd.mountpoint, free);
  out.help = cmd.show_help;
  out.version = cmd.show_version;
  if (out.help || out.version) return;
  out.tag = p.tag;
  if (socket) out.socket = socket.get();
  if (share) out.share = share.get();
  out.queue_size = p.queue_size;
  out.num_queues = p.num_queues;
  out.poll_us = p.poll_us;
  out.readers_given = cmd.singlethread || p.has_max_threads;
  out.interrupts = p.interrupts;
  out.io_uring = p.io_uring;
  out.io_uring_depth = p.io_uring_depth;
  out.remote_locks = p.remote_locks;
  out.readahead_given = p.readahead_kb != kNoReadahead;
  if (out.readahead_given) out.readahead_kb = p.readahead_kb;
  out.writeback = p.writeback;
  out.debug = cmd.debug;
  out.foreground = cmd.foreground || cmd.debug;
  out.readers = cmd.singlethread ? 1 : p.has_max_threads ? cmd.max_threads : 2;
  if (out.tag.empty() || !mountpoint) throw UsageError("usage: virtiofs-mount [-f] [-d] [-s] [-o OPT[,OPT...]] TAG MOUNTPOINT (see --help)");
  out.mountpoint = mountpoint.get();  // fuse_parse_cmdline made it absolute
  settle_permissions(p, out);
  if (!p.has_fsname) fuse_opt_add_arg(&args, ("-ofsname=" + out.tag).c_str());
  fuse_opt_add_arg(&args, "-osubtype=virtiofs-mount");
}

void validate(Options& o) {
  try {
    client::settle_tag(o.tag, std::nullopt);  // the library's rule: its length
  } catch (const std::system_error& e) {
    throw UsageError(e.what());
  }
  if (!is_power_of_two(o.queue_size) || o.queue_size < 2 || o.queue_size > 32768)
    throw UsageError("queue_size=" + std::to_string(o.queue_size) +
                     " is not a power of two between 2 and 32768");
  if (o.num_queues > 64)
    throw UsageError("num_queues=" + std::to_string(o.num_queues) + " is more than 64");
  if (o.poll_us > 1000000)
    throw UsageError("poll_us=" + std::to_string(o.poll_us) + " is more than a second");
  if (o.io_uring_depth == 0 || o.io_uring_depth > 128)
    throw UsageError("io_uring_depth=" + std::to_string(o.io_uring_depth) + " is not between 1 and 128");
  if (o.readahead_kb > 65536)
    throw UsageError("readahead_kb=" + std::to_string(o.readahead_kb) + " is more than 65536 (64 MiB)");
  if (o.writeback && o.share.empty())
    throw UsageError("writeback is for share= (with socket= or a VFIO device, the device decides)");
  if (o.readers == 0 || o.readers > 64)
    throw UsageError("max_threads=" + std::to_string(o.readers) + " is not between 1 and 64");
  if (!o.socket.empty() && !o.share.empty())
    throw UsageError("give socket= or share=, not both");

  // The rest is about the files named, not the command line: failures, not usage errors.
  using Refused = std::runtime_error;
  struct stat st {};
  if (stat(o.mountpoint.c_str(), &st) != 0)
    throw Refused("mount point " + o.mountpoint + ": " + std::strerror(errno));
  if (!S_ISDIR(st.st_mode)) throw Refused("mount point " + o.mountpoint + " is not a directory");
  // Another file system already mounted here: mounting over it would hide it (busy).
  struct stat parent {};
  if (o.mountpoint != "/" && stat((o.mountpoint + "/..").c_str(), &parent) == 0 && parent.st_dev != st.st_dev)
    throw Refused("mount point " + o.mountpoint + " is busy: something is already mounted there");
  std::unique_ptr<DIR, DirCloser> dir(opendir(o.mountpoint.c_str()));
  if (!dir) throw Refused("mount point " + o.mountpoint + ": " + std::strerror(errno));
  while (dirent* e = readdir(dir.get())) {
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0)
      throw Refused("mount point " + o.mountpoint + " is not empty");
  }

  if (!o.socket.empty()) client::check_socket_path(o.socket);  // throws std::system_error
  if (!o.share.empty()) {
    char real[PATH_MAX];
    if (!realpath(o.share.c_str(), real)) throw Refused("share " + o.share + ": " + std::strerror(errno));
    if (stat(real, &st) != 0 || !S_ISDIR(st.st_mode))
      throw Refused("share " + o.share + " is not a directory");
    o.share = real;
  }
}

std::string permission_model(const Options& o) {
  const std::string who = o.allow_other ? "every user may use the mount (allow_other)"
                                        : "only uid " + std::to_string(geteuid()) + " may use the mount (no allow_other)";
  if (!o.default_permissions)
    return "permissions: NOT checked by the kernel (no_default_permissions), the device alone decides; " + who;
  return "permissions: checked by the kernel against the owner and mode the device reports "
         "(default_permissions); " + who;
}

void print_usage(const char* program) {
  std::printf(
      "usage: %s [-f] [-d] [-s] [-o OPT[,OPT...]] TAG MOUNTPOINT\n"
      "\n"
      "Mounts the virtio-fs device TAG at MOUNTPOINT through libvirtiofs and FUSE.\n"
      "\n"
      "Device:\n"
      "    -o share=DIR           start virtiofsd on DIR and mount it (stopped on unmount)\n"
      "    -o socket=PATH         a vhost-user-fs backend listening at PATH\n"
      "    (neither)              the VFIO-bound virtio-fs device with tag TAG\n"
      "    -o queue_size=N        descriptors per virtqueue, a power of two (128)\n"
      "    -o num_queues=N        request queues, each with its own completion thread\n"
      "                           (default: all the device offers)\n"
      "    -o poll_us=N           readers (io_uring: queue threads) keep reading /dev/fuse\n"
      "                           and the used ring without sleeping until N microseconds\n"
      "                           passed with nothing to do (0): no wake-ups, a CPU each\n"
      "    -o interrupts          forward FUSE_INTERRUPT to the device (virtiofsd 7.2 cannot\n"
      "                           take them; off: the kernel is told they are unsupported)\n"
      "    -o remote_locks        the device keeps POSIX and flock locks, seen by its other\n"
      "                           clients (off: the guest kernel keeps them, local to this\n"
      "                           mount); blocking ones wait in virtiofs-mount, not the device\n"
      "\n"
      "Mount:\n"
      "    -f                     stay in the foreground\n"
      "    -d                     print every request and reply (implies -f)\n"
      "    -s, -o max_threads=N   threads reading /dev/fuse (2); they never wait for the device\n"
      "    -o io_uring            take requests through FUSE over io_uring when the kernel\n"
      "                           offers it (Linux 6.14+, fuse module parameter enable_uring);\n"
      "                           /dev/fuse reads otherwise\n"
      "    -o io_uring_depth=N    io_uring entries per CPU, each with 1 MiB of buffer (8)\n"
      "    -o readahead_kb=N      the mount's readahead window (1024; 0: the kernel's, 128)\n"
      "    -o writeback           share=: virtiofsd offers the kernel a writeback cache\n"
      "                           (written data reaches the directory late; see the man page)\n"
      "\n"
      "Permissions (see the man page):\n"
      "    (always)               the kernel checks owners and modes (default_permissions)\n"
      "    -o no_default_permissions\n"
      "                           it does not: only for a device that checks them itself\n"
      "    -o allow_other         other users may use the mount (the default when root mounts)\n"
      "    -o no_allow_other      only the user who mounted may use it\n"
      "\n"
      "    -o ro, auto_unmount, fsname=NAME and the other libfuse mount options\n"
      "\n"
      "    -h, --help             this summary\n"
      "    -V, --version          the version\n"
      "\n"
      "TAG: at most 36 bytes. A device that reports its tag must report TAG; one that\n"
      "reports none (vhost-user backends without CONFIG) is known by it.\n"
      "Exit status: 0 mounted, 1 failed (nothing mounted), 2 bad usage.\n"
      "Unmount with: fusermount3 -u MOUNTPOINT (or umount MOUNTPOINT)\n",
      program);
}

}  // namespace virtiofs::mount_tool
