// Replies to the kernel: the device's (validated header from private memory, payload from where
// the device wrote it) and the bridge's own error replies, written to the clone the request
// came from.
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "mount/bridge_request.hpp"
#include "log/log.hpp"

namespace virtiofs::mount {

void Bridge::on_reply(fs::Call& call) {
  auto& q = static_cast<Request&>(call);
  Bridge& b = *q.bridge;
  if (q.lock_wait) {
    // The lock is held elsewhere: ask again later (lock_waits.hpp). Anything else is final.
    // The device's errno comes as the call's error (EIO, ENOTCONN are the session's own).
    const int error = q.ec ? q.ec.value() : -q.reply.header.error;
    if (error == EAGAIN || (error == EACCES && q.busy_eacces)) {
      b.lock_waits_->again(q, q.unique);
      return;
    }
    b.lock_waits_->end(q.unique);
    q.lock_wait = false;
  }
  if (q.opcode == FUSE_INTERRUPT && b.lock_waits_ && !q.ec && q.reply.header.error == -ENOSYS) {
    // Passed on, this ENOSYS would turn INTERRUPTs off for the whole mount, and lock waits
    // end by them: the kernel needs no answer to an INTERRUPT, so none goes.
    b.finish(q);
    return;
  }
  if (q.ec) {
    b.reply_error(q.fd, q.unique, q.ec.value());
  } else if (q.reply.header.len != 0) {  // zero: an INTERRUPT the device handed back unanswered
    // The validated header from private memory, the payload from device memory as it is.
    std::array<iovec, 3 + kLandingChunks> iov;
    int count = 0;
    iov[count++] = {&q.reply.header, sizeof(fuse_out_header)};
    size_t skip = sizeof(fuse_out_header), left = q.reply.data_len;
    for (const fs::DeviceBuffer& buf : q.message.out) {
      if (left == 0) break;
      if (skip >= buf.len) {
        skip -= buf.len;
        continue;
      }
      const size_t len = std::min<size_t>(buf.len - skip, left);
      iov[count++] = {buf.data + skip, len};
      left -= len;
      skip = 0;
    }
    b.write_reply(q.fd, iov.data(), count, q.unique);
    if (b.options_.debug)
      log::debug("   unique %llu %s: %u bytes", static_cast<unsigned long long>(q.unique),
                 fuse::opcode_name(q.opcode), q.reply.header.len);
  }
  b.finish(q);
}

void Bridge::finish(Request& q) {
  free_chunks_.give(std::span(q.chunks.data(), q.chunk_count));
  q.chunk_count = 0;
  q.raw = nullptr;
  q.lock_wait = false;  // also when the wait ended EINTR/ENOLCK (LockWaits' answer)
  free_requests_.give(std::span(&q.index, 1));
  in_flight_.done();
}

void Bridge::reply_error(int fd, uint64_t unique, int error) {
  // An errno /dev/fuse would refuse leaves the request unanswered for good: say EIO instead.
  const int sent = fuse::kernel_errno(error);
  fuse_out_header h{sizeof(fuse_out_header), -sent, unique};
  iovec iov{&h, sizeof(h)};
  write_reply(fd, &iov, 1, unique);
  if (options_.debug && sent != error)
    log::debug("   unique %llu: error %d is beyond what the kernel takes (1..%d): EIO",
               static_cast<unsigned long long>(unique), error, fuse::kKernelMaxErrno);
  else if (options_.debug)
    log::debug("   unique %llu: error %d (%s)", static_cast<unsigned long long>(unique),
               error, std::strerror(error));
}

void Bridge::write_reply(int fd, const iovec* iov, int count, uint64_t unique) {
  if (writev(fd, iov, count) >= 0) return;
  // ENOENT: the kernel gave up on the request (interrupted); ENODEV: the connection ended.
  if (errno != ENOENT && errno != ENODEV)
    log::error("the kernel refused the reply to request %llu: %s",
               static_cast<unsigned long long>(unique), std::strerror(errno));
}

}  // namespace virtiofs::mount
