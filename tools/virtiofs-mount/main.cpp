// virtiofs-mount: mounts a virtio-fs device through libvirtiofs and FUSE.
// Order: check everything checkable, daemonize (the parent waits for the verdict), start the
// backend (share=), connect, mount, bridge, wait for the kernel's INIT, then serve until unmount,
// SIGTERM/SIGINT/SIGHUP or device loss; then unmount, drain, DESTROY, stop the backend.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>

#include "backend.hpp"
#include "client/open_device.hpp"
#include "daemon.hpp"
#include "fs/session.hpp"
#include "logging.hpp"
#include "mount/bridge.hpp"
#include "mount/kernel_mount.hpp"
#include "options.hpp"
#include "vfio/discovery.hpp"

using namespace virtiofs;
using namespace virtiofs::mount_tool;

namespace {

constexpr auto kInitTimeout = std::chrono::seconds(10);

// Exit statuses: 0 mounted (or unmounted cleanly in the foreground), 1 failed, 2 bad usage.
constexpr int kFailed = 1;
constexpr int kBadUsage = 2;

int fail(const std::string& message, int status = kFailed) {
  say(LogLevel::kError, message);
  return status;
}

// Blocks the stop signals in every thread (threads inherit it) and returns a signalfd for them.
int stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&set, s);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  return signalfd(-1, &set, SFD_CLOEXEC);
}

enum class Ended { kSignal, kUnmounted, kDeviceLost };

Ended serve(int signal_fd, int ended_fd, int lost_fd) {
  pollfd fds[3] = {{signal_fd, POLLIN, 0}, {ended_fd, POLLIN, 0}, {lost_fd, POLLIN, 0}};
  for (;;) {
    if (poll(fds, 3, -1) < 0) continue;  // EINTR
    if (fds[0].revents) return Ended::kSignal;
    if (fds[1].revents) return Ended::kUnmounted;
    if (fds[2].revents) return Ended::kDeviceLost;
  }
}

// Everything after the checks; runs in the daemon (or in the foreground with -f).
int run(mount_tool::Options& o, mount::KernelMount& kernel, Daemon& daemon, int signal_fd) {
  std::unique_ptr<Backend> backend;
  std::string socket = o.socket;
  if (!o.share.empty()) {
    backend = std::make_unique<Backend>(o.share, o.debug, o.writeback);
    socket = backend->socket_path();
  }
  auto connect_error = [&](const std::string& what) {
    if (backend) {
      backend->stop();
      return what + " (" + backend->diagnosis() + ")";
    }
    return what;
  };

  mount::BridgeOptions bo;
  bo.readers = o.readers;
  bo.debug = o.debug;
  bo.forward_interrupts = o.interrupts;
  bo.io_uring = o.io_uring;
  bo.remote_locks = o.remote_locks;
  bo.io_uring_depth = o.io_uring_depth;
  bo.poll_us = o.poll_us;

  // The device is opened as Client::connect opens it (same tag rule, same errors).
  virtiofs::Options where;
  where.socket_path = socket;
  where.pci_device = o.pci_device;
  where.tag = o.tag;
  where.queue_size = static_cast<uint16_t>(o.queue_size);
  where.num_request_queues = o.num_queues;
  // The bridge's own threads poll (BridgeOptions::poll_us); the session's completion threads
  // would only spin beside them for the same replies.
  where.poll_us = 0;
  std::unique_ptr<fs::Session> session;
  const std::string device = !socket.empty() ? "vhost-user backend at " + socket
                             : !o.pci_device.empty() ? "VFIO device " + o.pci_device
                                                     : "VFIO device with tag " + o.tag;
  try {
    client::OpenedDevice opened = client::open_device(where);
    fs::SessionOptions so = opened.session;
    // Each reader thread submits on one queue: by default there is a reader per queue. Polled
    // readers each take a CPU while busy: by default one per queue, no more.
    if (!o.readers_given)
      bo.readers = o.poll_us && !o.io_uring ? so.num_request_queues
                                            : std::max(bo.readers, so.num_request_queues);
    so.staging_bytes = mount::Bridge::staging_bytes(so, bo);
    session = std::make_unique<fs::Session>(std::move(opened.transport), so);
  } catch (const std::exception& e) {
    return daemon.failed(connect_error("no usable " + device + ": " + e.what()));
  }
  int lost_fd = eventfd(0, EFD_CLOEXEC);
  std::atomic<int> lost_errno{0};
  session->set_failure_handler([&](std::error_code ec) {
    lost_errno = ec.value();
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = write(lost_fd, &one, sizeof(one));
  });

  if (o.debug) say(LogLevel::kInfo, permission_model(o));
  try {
    kernel.mount(o.mountpoint);
  } catch (const std::exception& e) {
    return daemon.failed(e.what());
  }
  std::optional<mount::Bridge> bridge;
  try {
    bridge.emplace(*session, kernel.fd(), bo);
  } catch (const std::exception& e) {
    kernel.unmount();
    return daemon.failed(e.what());
  }
  std::string why;
  if (!bridge->wait_init(kInitTimeout, why)) {
    kernel.unmount();
    bridge->stop();
    session->shutdown();
    bridge.reset();
    return daemon.failed(connect_error("mounting " + o.mountpoint + " failed: " + why));
  }
  // INIT set the window to min(the bdi's, the device's); only now can it be raised. Only root
  // may: a plain user's mount keeps the kernel's unless they asked (then they hear why not).
  if (o.readahead_kb && (o.readahead_given || geteuid() == 0)) {
    try {
      kernel.set_readahead_kb(o.mountpoint, o.readahead_kb);
    } catch (const std::exception& e) {
      say(LogLevel::kWarning, e.what());
    }
  }
  // The terminal goes: from now on messages go to syslog.
  if (!o.foreground) log_to_syslog();
  daemon.succeeded();

  const Ended ended = serve(signal_fd, bridge->ended_fd(), lost_fd);
  if (o.debug) {
    say(LogLevel::kDebug, std::to_string(bridge->ring_requests()) + " requests came through FUSE over io_uring");
    if (o.poll_us)
      say(LogLevel::kDebug, "polled readers: " + std::to_string(bridge->spun_reads()) +
                                " requests read without sleeping, " + std::to_string(bridge->reader_reaped()) +
                                " replies reaped; the session polled " + std::to_string(session->stats().polled) +
                                " replies, took " + std::to_string(session->stats().interrupts) + " interrupts");
  }
  kernel.unmount();
  bridge->stop();
  session->shutdown();  // DESTROY, drain what the device still holds
  bridge.reset();       // closes the clones: a still-busy detached mount now fails with ENOTCONN
  session.reset();
  if (backend) backend->stop();
  close(lost_fd);
  if (ended == Ended::kDeviceLost) {
    // EIO: the device wrote something the protocol forbids and is no longer trusted, or it set
    // DEVICE_NEEDS_RESET (the session logged which).
    const int e = lost_errno.load();
    say(LogLevel::kError, o.tag + ": " + (e == EIO ? "device broke the protocol or needs a reset" : "device lost") + " (" +
                              std::strerror(e) + "); unmounted " + o.mountpoint);
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  log_to_stderr();
  mount_tool::Options o;
  try {
    parse(argc, argv, o);
    if (o.help) {
      print_usage(argv[0]);
      return 0;
    }
    if (o.version) {
      std::printf("virtiofs-mount %s (libfuse %s)\n", VIRTIOFS_VERSION, fuse_pkgversion());
      return 0;
    }
    validate(o);
  } catch (const UsageError& e) {
    return fail(e.what(), kBadUsage);
  } catch (const std::exception& e) {
    return fail(e.what());
  }

  std::optional<mount::KernelMount> kernel;
  try {
    kernel.emplace(o.fuse);  // refuses unknown options before anything starts
  } catch (const std::exception& e) {
    return fail(e.what(), kBadUsage);
  }
  try {
    // Neither socket= nor share=: the VFIO-bound PCI device with this tag (inside a VM), found
    // before the daemon starts so that a missing one is said at once.
    if (o.socket.empty() && o.share.empty()) o.pci_device = vfio::find_vfio_fs_device(o.tag);
  } catch (const std::exception& e) {
    return fail(e.what());
  }
  fuse_opt_free_args(&o.fuse);

  Daemon daemon(o.foreground);
  if (daemon.is_parent()) return daemon.wait_verdict();
  const int signal_fd = stop_signals();
  int status = run(o, *kernel, daemon, signal_fd);
  kernel.reset();
  close(signal_fd);
  return status;
}
