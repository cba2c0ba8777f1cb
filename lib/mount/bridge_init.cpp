// FUSE_INIT settled three ways (kernel, bridge, device), the io_uring path prepared before the
// kernel hears of it, and the wait for it all.
#include <unistd.h>

#include <cstdio>
#include <string>
#include <system_error>

#include "mount/bridge_request.hpp"
#include "mount/fuse_uring_abi.hpp"
#include "log/log.hpp"

namespace virtiofs::mount {

void Bridge::handle_init(Reader& r, const fuse_in_header& header, std::span<const std::byte> args) {
  auto done = [&](std::string error) {
    std::lock_guard lock(init_mu_);
    init_done_ = true;
    init_error_ = std::move(error);
    init_cv_.notify_all();
  };
  // Session::init waits for the device's reply without taking the polling role back: no poller.
  r.poller.reset();
  fuse::KernelInit kernel;
  if (fuse::parse_kernel_init(args, kernel)) {
    reply_error(r.fd, header.unique, EPROTO);
    done("the kernel speaks FUSE " + std::to_string(kernel.major) + "." +
         std::to_string(kernel.minor) + ", too old for virtio-fs");
    return;
  }
  try {
    session_.init(fuse::device_offer(kernel, options_.remote_locks), kernel.max_readahead,
                  fuse::device_minor(kernel));
  } catch (const std::system_error& e) {
    reply_error(r.fd, header.unique, e.code().value());
    done(e.what());
    return;
  }
  fuse_init_out out{};
  const uint32_t len = fuse::make_kernel_init_reply(
      kernel, session_.negotiated(), std::min(kMaxPayload, session_.max_transfer()), out,
      options_.remote_locks);
  if (const uint64_t missing = fuse::kRemoteLockFlags & ~session_.negotiated().flags;
      options_.remote_locks && missing)
    log::warn("-o remote_locks: the device keeps no %s locks (virtiofsd: -o posix_lock,flock); "
              "the kernel keeps them, local to this mount",
              missing == fuse::kRemoteLockFlags ? "POSIX or flock"
              : (missing & FUSE_POSIX_LOCKS) ? "POSIX" : "flock");
  const uint32_t pages = (out.flags & FUSE_MAX_PAGES) ? out.max_pages : 32;
  max_payload_.store(std::min(kMaxPayload, pages * 4096), std::memory_order_relaxed);
  if (prepare_ring(kernel)) {
    // Between kernel and bridge only: the device never hears of it.
    out.flags |= FUSE_INIT_EXT;
    out.flags2 |= static_cast<uint32_t>(uring_abi::kFuseOverIoUring >> 32);
    readers_poll_.store(false, std::memory_order_release);  // the queue threads poll instead
  } else if (options_.io_uring && options_.poll_us) {
    log::warn("-o poll_us: no FUSE over io_uring, the /dev/fuse readers poll instead");
  }
  fuse_out_header h{static_cast<uint32_t>(sizeof(fuse_out_header) + len), 0, header.unique};
  iovec iov[2] = {{&h, sizeof(h)}, {&out, len}};
  write_reply(r.fd, iov, 2, header.unique);
  // The kernel holds new requests until every CPU's queue has an entry: register at once.
  if (ring_) ring_->start(max_payload_.load(std::memory_order_relaxed));
  if (options_.debug)
    log::debug("INIT: kernel 7.%u, device 7.%u -> 7.%u, max_write %u, max_pages %u, "
               "max_readahead %u, max_background %u, congestion_threshold %u, flags %#llx",
               kernel.minor, session_.negotiated().minor, out.minor, out.max_write, out.max_pages,
               out.max_readahead, out.max_background, out.congestion_threshold,
               static_cast<unsigned long long>(out.flags | uint64_t{out.flags2} << 32));
  done({});
}

bool Bridge::prepare_ring(const fuse::KernelInit& kernel) {
  if (!options_.io_uring) return false;
  if (options_.remote_locks) {
    // Lock waits are the bridge's (lock_waits.hpp), on the /dev/fuse path only.
    log::warn("-o remote_locks: serving through /dev/fuse reads, not FUSE over io_uring");
    return false;
  }
  if (!(kernel.flags & uring_abi::kFuseOverIoUring)) {
    log::warn("the kernel does not offer FUSE over io_uring (Linux 6.14+, "
              "fuse module parameter enable_uring); serving through /dev/fuse reads");
    return false;
  }
  try {
    ring_ = std::make_unique<KernelRing>(session_, fuse_fd_, ring_memory_, options_.io_uring_depth,
                                         kMaxPayload, in_flight_, options_.debug, options_.poll_us);
  } catch (const std::system_error& e) {
    log::warn("FUSE over io_uring unavailable (%s); serving through "
              "/dev/fuse reads", e.what());
    return false;
  }
  if (options_.debug)
    log::debug("FUSE over io_uring: %u queues of %u entries", KernelRing::kernel_queue_count(),
               options_.io_uring_depth);
  return true;
}

void Bridge::mark_ended() {
  uint64_t one = 1;
  [[maybe_unused]] ssize_t w = write(ended_fd_, &one, sizeof(one));
  std::lock_guard lock(init_mu_);
  if (!init_done_) {
    init_done_ = true;
    init_error_ = "the kernel ended the FUSE connection before INIT";
    init_cv_.notify_all();
  }
}

bool Bridge::wait_init(std::chrono::milliseconds timeout, std::string& error) {
  std::unique_lock lock(init_mu_);
  if (!init_cv_.wait_for(lock, timeout, [this] { return init_done_; })) {
    error = "the kernel sent no FUSE_INIT";
    return false;
  }
  error = init_error_;
  return error.empty();
}

}  // namespace virtiofs::mount
