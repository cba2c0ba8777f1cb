#include "mount/bridge.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <system_error>

#include "mount/bridge_request.hpp"
#include "mount/reply_room.hpp"
#include "log/log.hpp"

namespace virtiofs::mount {

namespace {

// Readers block in read(2) on /dev/fuse; stop() wakes them with this signal (no SA_RESTART).
constexpr int kKickSignal = SIGUSR1;
void on_kick(int) {}

uint32_t chunks_for(size_t bytes, size_t head) {
  return bytes > head ? static_cast<uint32_t>((bytes - head + Bridge::kChunkBytes - 1) / Bridge::kChunkBytes)
                      : 0;
}

unsigned request_count(const fs::SessionOptions& s, const BridgeOptions& o) {
  // Enough records for every slot of every queue, plus one landing per reader.
  return std::min<unsigned>(s.max_in_flight, s.queue_size) * (s.num_request_queues + 1) + o.readers;
}
unsigned chunk_count(const BridgeOptions& o) {
  // Each reader's landing, plus 16 MiB of payload in flight.
  return (o.readers + 16) * Bridge::kLandingChunks;
}
BridgeOptions normalized(BridgeOptions o) {
  o.readers = std::max(1u, o.readers);
  return o;
}
size_t ring_bytes(const BridgeOptions& o) {
  return o.io_uring ? KernelRing::memory_bytes(o.io_uring_depth, Bridge::kMaxPayload) : 0;
}
// Staging layout: the io_uring entries at the end; before them the chunks, then two heads per
// record for as many records as fit.
unsigned records_in(std::span<std::byte> staging, const BridgeOptions& o) {
  if (staging.size() < ring_bytes(o))
    throw std::system_error(EINVAL, std::system_category(), "FUSE bridge: staging area too small");
  staging = staging.first(staging.size() - ring_bytes(o));
  const size_t chunk_bytes = size_t{chunk_count(o)} * Bridge::kChunkBytes;
  if (staging.size() < chunk_bytes + size_t{o.readers + 1} * 2 * Bridge::kHeadBytes)
    throw std::system_error(EINVAL, std::system_category(), "FUSE bridge: staging area too small");
  return static_cast<unsigned>((staging.size() - chunk_bytes) / (2 * Bridge::kHeadBytes));
}
}  // namespace

size_t Bridge::staging_bytes(const fs::SessionOptions& session, const BridgeOptions& options) {
  const BridgeOptions o = normalized(options);
  return size_t{request_count(session, o)} * 2 * kHeadBytes + size_t{chunk_count(o)} * kChunkBytes +
         ring_bytes(o);
}

Bridge::Bridge(fs::Session& session, int fuse_fd, const BridgeOptions& options)
    : session_(session),
      options_(normalized(options)),
      free_requests_(records_in(session.staging(), options_)),
      free_chunks_(chunk_count(options_)),
      chunk_dirty_(chunk_count(options_), 0) {
  const unsigned records = records_in(session.staging(), options_);
  ring_memory_ = session.staging().last(ring_bytes(options_));
  std::byte* p = session.staging().data();
  chunks_ = p;
  p += size_t{chunk_count(options_)} * kChunkBytes;
  for (unsigned i = 0; i < records; ++i) {
    auto r = std::make_unique<Request>();
    r->bridge = this;
    r->index = i;
    r->in_head = p;
    r->out_head = p + kHeadBytes;
    p += 2 * kHeadBytes;
    requests_.push_back(std::move(r));
  }

  ended_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (ended_fd_ < 0) throw std::system_error(errno, std::system_category(), "eventfd");
  if (options_.remote_locks)
    lock_waits_ = std::make_unique<LockWaits>([this](fs::Call& c) { session_.submit(c); },
                                              [this](fs::Call& c, int error) {
                                                auto& q = static_cast<Request&>(c);
                                                reply_error(q.fd, q.unique, error);
                                                finish(q);
                                              });
  struct sigaction sa {};
  sa.sa_handler = on_kick;  // no SA_RESTART: a blocked read returns EINTR
  sigemptyset(&sa.sa_mask);
  sigaction(kKickSignal, &sa, nullptr);

  fuse_fd_ = fuse_fd;
  uint32_t master = static_cast<uint32_t>(fuse_fd);
  for (unsigned i = 0; i < options_.readers; ++i) {
    auto reader = std::make_unique<Reader>();
    reader->fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
    if (reader->fd < 0 || ioctl(reader->fd, FUSE_DEV_IOC_CLONE, &master) < 0) {
      int err = errno;
      if (reader->fd >= 0) close(reader->fd);
      for (auto& r : readers_) close(r->fd);
      close(ended_fd_);
      throw std::system_error(err, std::system_category(), "cloning the /dev/fuse session");
    }
    readers_.push_back(std::move(reader));
  }
  live_readers_ = options_.readers;
  readers_poll_.store(options_.poll_us > 0, std::memory_order_release);
  for (auto& r : readers_) r->thread = std::thread([this, rp = r.get()] { read_loop(*rp); });
}

Bridge::~Bridge() {
  stop();
  // Every request handed to the session comes back (the session completes all on shutdown).
  in_flight_.wait_idle();
  ring_.reset();
  for (auto& r : readers_) close(r->fd);
  close(ended_fd_);
}

void Bridge::read_loop(Reader& r) {
  sigset_t kick;
  sigemptyset(&kick);
  sigaddset(&kick, kKickSignal);
  pthread_sigmask(SIG_UNBLOCK, &kick, nullptr);
  std::array<iovec, 1 + kLandingChunks> iov;
  while (!stopping_.load(std::memory_order_acquire)) {
    if (!ready_landing(r)) break;
    iov[0] = {r.landing->in_head, kHeadBytes};
    for (uint32_t i = 0; i < kLandingChunks; ++i)
      iov[1 + i] = {chunks_ + size_t{r.chunks[i]} * kChunkBytes, kChunkBytes};
    // Decided per read: the readers poll unless INIT set up the io_uring path (whose queue
    // threads poll then), also when io_uring was asked for and not had.
    const ssize_t n = readers_poll_.load(std::memory_order_acquire)
                          ? polled_read(r, iov.data(), static_cast<int>(iov.size()))
                          : blocking_read(r, iov.data(), static_cast<int>(iov.size()));
    if (n < 0) {
      // ENOENT: the request was interrupted before it could be read.
      if (errno == EINTR || errno == EAGAIN || errno == ENOENT) continue;
      if (errno == ENODEV) {
        mark_ended();
      } else {
        log::error("reading /dev/fuse: %s", std::strerror(errno));
        mark_ended();
      }
      break;
    }
    // What the kernel wrote into the landing chunks must not show in a later reply room.
    for (uint32_t i = 0; i < r.chunk_count && static_cast<size_t>(n) > kHeadBytes + size_t{i} * kChunkBytes; ++i)
      mark_written(chunk_dirty_[r.chunks[i]], std::min<size_t>(n - kHeadBytes - size_t{i} * kChunkBytes, kChunkBytes));
    dispatch(r, static_cast<size_t>(n));
  }
  r.poller.reset();
  if (r.landing) free_requests_.give(std::span(&r.landing->index, 1));
  r.landing = nullptr;
  free_chunks_.give(std::span(r.chunks.data(), r.chunk_count));
  r.chunk_count = 0;
  std::lock_guard lock(live_mu_);
  --live_readers_;
  live_cv_.notify_all();
}

void Bridge::dispatch(Reader& r, size_t n) {
  Request& q = *r.landing;
  fuse_in_header header{};
  if (n < sizeof(header)) return;  // the kernel never sends less; nothing to answer
  std::memcpy(&header, q.in_head, sizeof(header));
  if (header.len != n) {
    reply_error(r.fd, header.unique, EIO);
    return;
  }
  // A private copy of the fixed arguments: device memory is never read twice for a decision.
  std::array<std::byte, 128> args{};
  const size_t args_len = std::min({n - sizeof(header), size_t{kHeadBytes} - sizeof(header), args.size()});
  std::memcpy(args.data(), q.in_head + sizeof(header), args_len);
  const std::span<const std::byte> arg_span(args.data(), args_len);
  const fuse::Forwarding fwd = fuse::classify(header, arg_span, max_payload_.load(std::memory_order_relaxed));
  if (options_.debug)
    log::debug("unique %llu %s nodeid %llu len %u",
               static_cast<unsigned long long>(header.unique), fuse::opcode_name(header.opcode),
               static_cast<unsigned long long>(header.nodeid), header.len);
  switch (fwd.route) {
    case fuse::Route::kInit:
      handle_init(r, header, arg_span);
      return;
    case fuse::Route::kForget:
      handle_forget(r, header, n);
      return;
    case fuse::Route::kReply:
      reply_error(r.fd, header.unique, fwd.error);
      return;
    case fuse::Route::kDrop:
      return;
    case fuse::Route::kHiprio:
      if (lock_waits_) {
        // Interrupts end lock waits, so the kernel must keep sending them: none is refused.
        fuse_interrupt_in in{};
        std::memcpy(&in, arg_span.data(), std::min(sizeof(in), arg_span.size()));
        if (lock_waits_->interrupt(in.unique) || !options_.forward_interrupts) return;
      }
      if (!options_.forward_interrupts) {
        reply_error(r.fd, header.unique, ENOSYS);
        return;
      }
      [[fallthrough]];
    case fuse::Route::kDevice:
      forward(r, header, fwd.reply_bytes, fwd.route == fuse::Route::kHiprio, n);
      return;
  }
}

void Bridge::handle_forget(Reader& r, const fuse_in_header& header, size_t n) {
  // Reads `len` bytes at `offset` of what the reader just read (head, then its landing chunks).
  auto gather = [&](size_t offset, void* dst, size_t len) {
    auto* out = static_cast<std::byte*>(dst);
    while (len > 0) {
      std::byte* src;
      size_t avail;
      if (offset < kHeadBytes) {
        src = r.landing->in_head + offset;
        avail = kHeadBytes - offset;
      } else {
        const size_t c = (offset - kHeadBytes) / kChunkBytes, within = (offset - kHeadBytes) % kChunkBytes;
        src = chunks_ + size_t{r.chunks[c]} * kChunkBytes + within;
        avail = kChunkBytes - within;
      }
      const size_t k = std::min(avail, len);
      std::memcpy(out, src, k);
      out += k;
      offset += k;
      len -= k;
    }
  };
  size_t offset = sizeof(fuse_in_header);
  if (header.opcode == FUSE_FORGET) {
    fuse_forget_in in{};
    if (n < offset + sizeof(in)) return;
    gather(offset, &in, sizeof(in));
    session_.forget(header.nodeid, in.nlookup);
    return;
  }
  fuse_batch_forget_in batch{};
  if (n < offset + sizeof(batch)) return;
  gather(offset, &batch, sizeof(batch));
  offset += sizeof(batch);
  const size_t count = std::min<size_t>(batch.count, (n - offset) / sizeof(fuse_forget_one));
  for (size_t i = 0; i < count; ++i, offset += sizeof(fuse_forget_one)) {
    fuse_forget_one one{};
    gather(offset, &one, sizeof(one));
    session_.forget(one.nodeid, one.nlookup);
  }
}

void Bridge::forward(Reader& r, const fuse_in_header& header, uint32_t reply_bytes, bool hiprio,
                     size_t n) {
  Request& q = *r.landing;
  r.landing = nullptr;
  q.fd = r.fd;
  q.unique = header.unique;
  q.opcode = header.opcode;
  // The request: the head, then the landing chunks the kernel filled; the rest stay with the
  // reader for its next read.
  uint32_t n_in = 0;
  q.in[n_in++] = {q.in_head, static_cast<uint32_t>(std::min<size_t>(n, kHeadBytes))};
  const uint32_t used = chunks_for(n, kHeadBytes);
  size_t rest = n > kHeadBytes ? n - kHeadBytes : 0;
  for (uint32_t i = 0; i < used; ++i) {
    q.chunks[i] = r.chunks[i];
    const auto len = static_cast<uint32_t>(std::min<size_t>(rest, kChunkBytes));
    q.in[n_in++] = {chunks_ + size_t{r.chunks[i]} * kChunkBytes, len};
    rest -= len;
  }
  std::copy(r.chunks.begin() + used, r.chunks.begin() + r.chunk_count, r.chunks.begin());
  r.chunk_count -= used;
  q.chunk_count = used;
  in_flight_.add();
  // Room for the reply: the reply head, then chunks (READ, READDIR, xattrs), each cleared of
  // what an earlier message may have left in it (mount/reply_room.hpp).
  uint32_t n_out = 0;
  if (reply_bytes) {
    q.out[n_out++] = {q.out_head, std::min(reply_bytes, kHeadBytes)};
    clear_reply_room(q.out_head, q.out_dirty, q.out[0].len);
    const uint32_t more = chunks_for(reply_bytes, kHeadBytes);
    const auto room = std::span(q.chunks).subspan(q.chunk_count, more);
    // Never wait holding the poller: the replies that give chunks back come through it.
    bool got = !more || free_chunks_.try_take(room);
    if (!got) {
      r.poller.reset();
      got = free_chunks_.take(room);
    }
    if (!got) {
      q.ec = std::make_error_code(std::errc::not_connected);
      on_reply(q);
      return;
    }
    size_t left = reply_bytes - kHeadBytes * (more ? 1 : 0);
    for (uint32_t i = 0; i < more; ++i) {
      const auto len = static_cast<uint32_t>(std::min<size_t>(left, kChunkBytes));
      const uint32_t c = q.chunks[q.chunk_count + i];
      q.out[n_out++] = {chunks_ + size_t{c} * kChunkBytes, len};
      clear_reply_room(q.out[n_out - 1].data, chunk_dirty_[c], len);
      left -= len;
    }
    q.chunk_count += more;
  }
  q.message = fs::RawMessage{std::span(q.in.data(), n_in), std::span(q.out.data(), n_out),
                             header.unique, header.opcode == FUSE_INTERRUPT};
  q.raw = &q.message;
  q.on_done = &Bridge::on_reply;
  q.lock_wait = lock_waits_ && header.opcode == FUSE_SETLKW;
  if (q.lock_wait) {
    // Never a blocking request at the device: SETLK, asked again while busy (lock_waits.hpp).
    const uint32_t setlk = FUSE_SETLK;
    std::memcpy(q.in_head + offsetof(fuse_in_header, opcode), &setlk, sizeof(setlk));
    uint32_t lk_flags = 0;  // POSIX allows EACCES for a held fcntl lock; flock says EWOULDBLOCK
    if (n >= sizeof(fuse_in_header) + sizeof(fuse_lk_in))
      std::memcpy(&lk_flags, q.in_head + sizeof(fuse_in_header) + offsetof(fuse_lk_in, lk_flags),
                  sizeof(lk_flags));
    q.busy_eacces = !(lk_flags & FUSE_LK_FLOCK);
    lock_waits_->begin(q, q.unique);
  }
  if (hiprio) {
    session_.submit_hiprio(q);
  } else {
    session_.submit(q);
  }
}

void Bridge::stop() {
  stopping_.store(true, std::memory_order_release);
  free_requests_.close();
  free_chunks_.close();
  std::unique_lock lock(live_mu_);
  while (live_readers_ > 0) {
    // A reader between its stop check and read(2) misses one kick; the next one reaches it.
    for (auto& r : readers_) pthread_kill(r->thread.native_handle(), kKickSignal);
    live_cv_.wait_for(lock, std::chrono::milliseconds(20), [this] { return live_readers_ == 0; });
  }
  lock.unlock();
  for (auto& r : readers_)
    if (r->thread.joinable()) r->thread.join();
  if (ring_) ring_->stop();
  if (lock_waits_) lock_waits_->stop();
}

}  // namespace virtiofs::mount
