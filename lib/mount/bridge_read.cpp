// How a reader takes the next request from the kernel: a landing record and chunks to read
// into, then a blocking read, or a polled one (poll_us) that reaps its queue's replies between
// reads and lets go of the poller before anything that may block.
#include <fcntl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "log/log.hpp"
#include "mount/bridge_request.hpp"
#include "mount/spin_budget.hpp"

namespace virtiofs::mount {

bool Bridge::ready_landing(Reader& r) {
  if (!r.landing) {
    uint32_t i;
    if (!free_requests_.try_take(std::span(&i, 1))) {
      r.poller.reset();
      if (!free_requests_.take(std::span(&i, 1))) return false;
    }
    r.landing = requests_[i].get();
  }
  if (r.chunk_count < kLandingChunks) {
    const auto missing = std::span(r.chunks).subspan(r.chunk_count);
    if (!free_chunks_.try_take(missing)) {
      r.poller.reset();
      if (!free_chunks_.take(missing)) return false;
    }
    r.chunk_count = kLandingChunks;
  }
  return true;
}

bool Bridge::set_nonblocking(Reader& r, bool on) {
  if (r.nonblocking == on) return true;
  // A clone is its own open file: the flag concerns this reader alone.
  if (fcntl(r.fd, F_SETFL, on ? O_NONBLOCK : 0) < 0) {
    log::error("reader fd: setting O_NONBLOCK %s: %s", on ? "on" : "off", std::strerror(errno));
    return false;
  }
  r.nonblocking = on;
  return true;
}

ssize_t Bridge::blocking_read(Reader& r, const iovec* iov, int count) {
  // A blocking read waits exclusively: the kernel wakes one sleeping reader per request, where
  // poll(2) would wake them all. stop()'s signal interrupts it (EINTR).
  if (!set_nonblocking(r, false)) return -1;
  return readv(r.fd, iov, count);
}

ssize_t Bridge::polled_read(Reader& r, const iovec* iov, int count) {
  SpinBudget spin(options_.poll_us);
  if (!set_nonblocking(r, true)) return -1;
  for (;;) {
    const ssize_t n = readv(r.fd, iov, count);
    const int read_errno = errno;
    // Reaped after every read too: with requests always waiting, replies would sit otherwise.
    if (!r.poller) r.poller.emplace(session_);
    if (const size_t reaped = r.poller->poll()) {  // replies went out: still busy
      reader_reaped_.fetch_add(reaped, std::memory_order_relaxed);
      spin.renew();
    }
    if (n >= 0) spun_reads_.fetch_add(1, std::memory_order_relaxed);
    errno = read_errno;
    if (n >= 0 || read_errno != EAGAIN) return n;
    if (stopping_.load(std::memory_order_acquire)) {
      errno = EINTR;  // the caller sees stopping_ at once, rather than after a sleep
      return -1;
    }
    if (spin.spent()) break;
  }
  // Idle for poll_us: interrupts back on (what came meanwhile is reaped), and sleep until the
  // kernel has a request.
  r.poller.reset();
  return blocking_read(r, iov, count);
}

}  // namespace virtiofs::mount
