#include "mount/kernel_ring.hpp"

#include <fcntl.h>
#include <linux/fuse.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/sysinfo.h>
#include <sys/uio.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <system_error>

#include "fuse/forwarding.hpp"
#include "mount/spin_budget.hpp"
#include "mount/entry_carving.hpp"
#include "mount/fuse_uring_abi.hpp"
#include "mount/reply_room.hpp"
#include "virtio/dma_region.hpp"
#include "log/log.hpp"

namespace virtiofs::mount {

namespace {

// Inside each entry's head block (device memory): the device's copy of the in header and the
// opcode's header, then a spare for a request payload that has to move out of the way of a
// large reply, then the reply room. The kernel's own header block is private memory.
constexpr uint32_t kSpareOffset = 1024;
constexpr uint32_t kSpareBytes = 4096 - kSpareOffset;
constexpr uint32_t kReplyOffset = 4096;
constexpr uint32_t kReplyBytes = KernelRing::kHeadBytes - kReplyOffset;
static_assert(sizeof(fuse_in_header) + uring_abi::kOpInOutBytes <= kSpareOffset);

// Tags the wake-up poll's completion apart from the entries'.
constexpr uint64_t kWakeTag = 0;


}  // namespace

struct KernelRing::Entry : fs::Call {
  KernelRing* owner = nullptr;
  Queue* queue = nullptr;
  // Where the kernel writes the request header and reads the reply header: private memory, so
  // that nothing the device writes reaches the kernel as a header or changes what the bridge
  // read and validated.
  std::unique_ptr<uring_abi::RequestHeader> kernel_header = std::make_unique<uring_abi::RequestHeader>();
  std::byte* head = nullptr;  // kHeadBytes of device memory: request copy, spare, reply room
  std::byte* payload = nullptr;
  uint32_t reply_dirty = 0;    // prefixes that may hold an earlier message (mount/reply_room.hpp)
  uint32_t payload_dirty = 0;
  std::array<iovec, 2> registered{};  // what REGISTER hands the kernel: header, payload
  uint32_t last_command = 0;          // resent as is if the kernel asks to retry
  uint64_t commit_id = 0;
  uint64_t unique = 0;
  bool reply_in_head = false;  // the device wrote the reply payload into the head block's room
  std::array<fs::DeviceBuffer, 3> in{};
  std::array<fs::DeviceBuffer, 2> out{};
  fs::RawMessage message;

  uring_abi::RequestHeader& header() { return *kernel_header; }
};

struct KernelRing::Queue {
  uint16_t qid = 0;
  int fd = -1;       // a clone of the session's /dev/fuse fd, registered as fixed file 0
  int wake_fd = -1;  // stop() writes it; the poll on it ends serve()
  io_uring ring{};
  bool ring_ready = false;
  std::mutex submit_mu;  // replies are committed from the session's completion threads
  std::thread thread;
  std::vector<std::unique_ptr<Entry>> entries;
};

unsigned KernelRing::kernel_queue_count() {
  // num_possible_cpus(): count the CPUs in the "possible" list ("0-3,8-11").
  std::ifstream in("/sys/devices/system/cpu/possible");
  std::string list;
  if (!std::getline(in, list)) return static_cast<unsigned>(get_nprocs_conf());
  unsigned count = 0;
  size_t pos = 0;
  while (pos < list.size()) {
    size_t end = list.find(',', pos);
    if (end == std::string::npos) end = list.size();
    const std::string range = list.substr(pos, end - pos);
    const size_t dash = range.find('-');
    const unsigned first = static_cast<unsigned>(std::stoul(range.substr(0, dash)));
    const unsigned last = dash == std::string::npos ? first : static_cast<unsigned>(std::stoul(range.substr(dash + 1)));
    count += last - first + 1;
    pos = end + 1;
  }
  return count ? count : 1;
}

size_t KernelRing::memory_bytes(unsigned depth, uint32_t payload_bytes) {
  return entry_memory_bytes(size_t{kernel_queue_count()} * depth, kHeadBytes, payload_bytes,
                            virtio::DmaRegion::kHugePageBytes);
}

KernelRing::KernelRing(fs::Session& session, int fuse_fd, std::span<std::byte> memory,
                       unsigned depth, uint32_t payload_bytes, InFlight& in_flight, bool debug,
                       unsigned poll_us)
    : session_(session), in_flight_(in_flight), payload_bytes_(payload_bytes), debug_(debug),
      poll_us_(poll_us) {
  const unsigned count = kernel_queue_count();
  if (depth == 0 || memory.size() < memory_bytes(depth, payload_bytes))
    throw std::system_error(EINVAL, std::system_category(), "FUSE over io_uring: too little memory");
  // No piece may straddle a hugepage: in physical-address mode granules are not adjacent.
  const EntryCarving carving =
      carve_entries(size_t{count} * depth, kHeadBytes, payload_bytes, virtio::DmaRegion::kHugePageBytes,
                    reinterpret_cast<uintptr_t>(memory.data()) % virtio::DmaRegion::kHugePageBytes);
  if (carving.entries.empty() || carving.bytes > memory.size())
    throw std::system_error(EINVAL, std::system_category(), "FUSE over io_uring: too little memory");
  auto place = carving.entries.begin();
  auto fail = [this](int e, const char* what) {
    for (auto& q : queues_) {
      if (q->ring_ready) io_uring_queue_exit(&q->ring);
      if (q->fd >= 0) close(q->fd);
      if (q->wake_fd >= 0) close(q->wake_fd);
    }
    throw std::system_error(e, std::system_category(), what);
  };
  for (unsigned i = 0; i < count; ++i) {
    auto q = std::make_unique<Queue>();
    q->qid = static_cast<uint16_t>(i);
    Queue& queue = *q;
    queues_.push_back(std::move(q));
    uint32_t master = static_cast<uint32_t>(fuse_fd);
    queue.fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
    if (queue.fd < 0 || ioctl(queue.fd, FUSE_DEV_IOC_CLONE, &master) < 0) fail(errno, "cloning /dev/fuse");
    queue.wake_fd = eventfd(0, EFD_CLOEXEC);
    if (queue.wake_fd < 0) fail(errno, "eventfd");
    // SQE128: the command area holds fuse_uring_cmd_req. One SQE per entry is ever outstanding,
    // plus the wake-up poll; the CQ is doubled so that completions never overflow.
    io_uring_params params{};
    params.flags = IORING_SETUP_SQE128 | IORING_SETUP_CQSIZE;
    params.cq_entries = 2 * (depth + 1);
    if (int r = io_uring_queue_init_params(depth + 1, &queue.ring, &params); r < 0)
      fail(-r, "io_uring with 128-byte SQEs");
    queue.ring_ready = true;
    if (int r = io_uring_register_files(&queue.ring, &queue.fd, 1); r < 0)
      fail(-r, "registering /dev/fuse with io_uring");
    for (unsigned j = 0; j < depth; ++j) {
      auto e = std::make_unique<Entry>();
      e->owner = this;
      e->queue = &queue;
      e->head = memory.data() + place->head;
      e->payload = memory.data() + place->payload;
      ++place;
      e->registered = {iovec{e->kernel_header.get(), sizeof(uring_abi::RequestHeader)},
                       iovec{e->payload, payload_bytes}};
      e->on_done = &KernelRing::on_reply;
      queue.entries.push_back(std::move(e));
    }
  }
}

KernelRing::~KernelRing() {
  stop();
  // Exiting a ring cancels the commands the kernel still holds for its entries.
  for (auto& q : queues_) {
    io_uring_queue_exit(&q->ring);
    close(q->fd);
    close(q->wake_fd);
  }
}

void KernelRing::start(uint32_t max_payload) {
  max_payload_ = max_payload;
  for (auto& q : queues_) q->thread = std::thread([this, qp = q.get()] { serve(*qp); });
}

void KernelRing::stop() {
  for (auto& q : queues_) {
    if (!q->thread.joinable()) continue;
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = write(q->wake_fd, &one, sizeof(one));
    q->thread.join();
  }
}

void KernelRing::send(Entry& e, uint32_t command) {
  Queue& q = *e.queue;
  std::lock_guard lock(q.submit_mu);
  io_uring_sqe* sqe = io_uring_get_sqe(&q.ring);
  if (!sqe) {
    // Cannot happen: each entry has at most one command out, and the SQ has room for all.
    log::error("io_uring queue %u has no free SQE", q.qid);
    return;
  }
  io_uring_prep_rw(IORING_OP_URING_CMD, sqe, 0, nullptr, 0, 0);
  sqe->flags |= IOSQE_FIXED_FILE;
  sqe->cmd_op = command;
  std::memset(sqe->cmd, 0, 80);  // the SQE128 command area
  const uring_abi::CommandRequest request{0, command == uring_abi::kRegister ? 0 : e.commit_id, q.qid, {}};
  std::memcpy(sqe->cmd, &request, sizeof(request));
  if (command == uring_abi::kRegister) {
    sqe->addr = reinterpret_cast<uintptr_t>(e.registered.data());
    sqe->len = static_cast<uint32_t>(e.registered.size());
  }
  io_uring_sqe_set_data(sqe, &e);
  e.last_command = command;
  if (int r = io_uring_submit(&q.ring); r < 0)
    log::error("io_uring queue %u: submitting: %s", q.qid, std::strerror(-r));
}

void KernelRing::serve(Queue& q) {
  pthread_setname_np(pthread_self(), ("fuse-ring-" + std::to_string(q.qid)).c_str());
  // The kernel queues a request on the ring of the CPU it was made on: serve it from there.
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  CPU_SET(q.qid, &cpus);
  sched_setaffinity(0, sizeof(cpus), &cpus);  // best effort: any CPU will do
  {
    std::lock_guard lock(q.submit_mu);
    io_uring_sqe* sqe = io_uring_get_sqe(&q.ring);
    io_uring_prep_poll_add(sqe, q.wake_fd, POLLIN);
    io_uring_sqe_set_data64(sqe, kWakeTag);
  }
  // Registered from this thread, so the kernel's first copies into the entries run here.
  for (auto& e : q.entries) send(*e, uring_abi::kRegister);

  bool stopping = false;
  std::optional<fs::Session::Poller> poller;  // poll_us: held while this thread spins
  while (!stopping) {
    io_uring_cqe* cqe = nullptr;
    const int r = poll_us_ ? wait_polled(q, poller) : io_uring_wait_cqe(&q.ring, &cqe);
    if (r == -EINTR) continue;
    if (r < 0) {
      log::error("io_uring queue %u: %s", q.qid, std::strerror(-r));
      return;
    }
    unsigned head, seen = 0;
    io_uring_for_each_cqe(&q.ring, head, cqe) {
      ++seen;
      if (io_uring_cqe_get_data64(cqe) == kWakeTag) {
        stopping = true;
        continue;
      }
      Entry& e = *static_cast<Entry*>(io_uring_cqe_get_data(cqe));
      const int res = cqe->res;
      if (res == 0) {
        handle(e);
      } else if (res == -EAGAIN || res == -EINTR) {
        send(e, e.last_command);
      } else if (res != -ENOTCONN && res != -ECONNABORTED && res != -ECANCELED) {
        // ENOTCONN and the like: the file system is going away. Anything else on REGISTER: the
        // kernel turned io_uring off for this mount and serves it through /dev/fuse reads.
        if (!refused_said_.exchange(true))
          log::warn("the kernel refused FUSE over io_uring (%s: %s); "
                    "requests go through /dev/fuse reads",
                    e.last_command == uring_abi::kRegister ? "register" : "commit", std::strerror(-res));
      }
    }
    io_uring_cq_advance(&q.ring, seen);
  }
}

int KernelRing::wait_polled(Queue& q, std::optional<fs::Session::Poller>& poller) {
  SpinBudget spin(poll_us_);
  do {
    // The kernel hands a request to an entry as work for the thread that committed it last
    // (this one, when it reaped the reply): entering the kernel runs it and fills the CQ.
    const bool request = io_uring_cq_ready(&q.ring) ||
                         (io_uring_get_events(&q.ring), io_uring_cq_ready(&q.ring));
    // Reaped before each batch of requests too: with requests always waiting, replies would sit.
    if (!poller) poller.emplace(session_);
    if (poller->poll() > 0) spin.renew();  // replies committed: still busy
    if (request) return 0;
  } while (!spin.spent());  // stop()'s wake-up is a CQE too: seen here as a request is
  // Idle: interrupts back on (what came meanwhile is committed), then sleep on the CQ.
  poller.reset();
  io_uring_cqe* cqe = nullptr;
  return io_uring_wait_cqe(&q.ring, &cqe);
}

void KernelRing::handle(Entry& e) {
  requests_.fetch_add(1, std::memory_order_relaxed);
  fuse_in_header header{};
  std::memcpy(&header, e.header().in_out, sizeof(header));
  uring_abi::EntryInOut io{};
  std::memcpy(&io, &e.header().entry, sizeof(io));
  e.commit_id = io.commit_id;
  e.unique = header.unique;
  mark_written(e.payload_dirty, std::min(io.payload_sz, payload_bytes_));  // the kernel's request payload
  // The message the device gets is the classic one: in header, the opcode's header, payload.
  // The kernel's own lengths are checked all the same: a mistake here would send garbage on.
  const size_t fixed = sizeof(header) + size_t{io.payload_sz};
  if (io.payload_sz > payload_bytes_ || header.len < fixed ||
      header.len - fixed > uring_abi::kOpInOutBytes) {
    log::error("io_uring request %llu: length %u with payload %u",
               static_cast<unsigned long long>(header.unique), header.len, io.payload_sz);
    answer(e, EIO);
    return;
  }
  const auto op_len = static_cast<uint32_t>(header.len - fixed);
  std::array<std::byte, uring_abi::kOpInOutBytes> op{};
  std::memcpy(op.data(), e.header().op_in, op_len);
  const fuse::Forwarding fwd = fuse::classify(header, std::span(op.data(), op_len), max_payload_);
  if (debug_)
    log::debug("unique %llu %s nodeid %llu len %u (io_uring queue %u)",
               static_cast<unsigned long long>(header.unique), fuse::opcode_name(header.opcode),
               static_cast<unsigned long long>(header.nodeid), header.len, e.queue->qid);
  if (fwd.route == fuse::Route::kReply) return answer(e, fwd.error);
  if (fwd.route != fuse::Route::kDevice) {
    // INIT, FORGET and INTERRUPT reach the bridge through /dev/fuse only.
    return answer(e, EIO);
  }

  // The device gets its own copy of the in header and the opcode's header (a few hundred bytes
  // at most), next to each other: one descriptor.
  uint32_t n_in = 0, n_out = 0;
  std::memcpy(e.head, &header, sizeof(header));
  std::memcpy(e.head + sizeof(header), op.data(), op_len);
  e.in[n_in++] = {e.head, static_cast<uint32_t>(sizeof(header)) + op_len};
  // Reply and request payload must not share memory: the device reads one and writes the other.
  // Reply rooms are cleared of what an earlier message may have left (mount/reply_room.hpp).
  const uint32_t reply_payload = fwd.reply_bytes - static_cast<uint32_t>(sizeof(fuse_out_header));
  std::byte* reply_head = e.head + kReplyOffset;
  if (io.payload_sz == 0 || (fwd.reply_bytes > kReplyBytes && io.payload_sz <= kSpareBytes)) {
    // The reply's payload goes straight into the payload buffer (a READ's data: no copy); a
    // small request payload (GETXATTR's name) steps aside into the spare first.
    if (io.payload_sz) {
      std::memcpy(e.head + kSpareOffset, e.payload, io.payload_sz);
      e.in[n_in++] = {e.head + kSpareOffset, io.payload_sz};
    }
    e.out[n_out++] = {reply_head, static_cast<uint32_t>(sizeof(fuse_out_header))};
    if (reply_payload) e.out[n_out++] = {e.payload, std::min(reply_payload, payload_bytes_)};
    e.reply_in_head = false;
  } else if (fwd.reply_bytes <= kReplyBytes) {
    // A request with payload (WRITE, names) and a small reply: the reply goes to the head
    // block and is moved into the payload buffer when it comes.
    e.in[n_in++] = {e.payload, io.payload_sz};
    e.out[n_out++] = {reply_head, fwd.reply_bytes};
    e.reply_in_head = true;
  } else {
    log::error("io_uring request %llu (%s): %u payload bytes and a %u-byte reply do not fit an entry",
               static_cast<unsigned long long>(header.unique), fuse::opcode_name(header.opcode),
               io.payload_sz, fwd.reply_bytes);
    return answer(e, EIO);
  }
  clear_reply_room(reply_head, e.reply_dirty, e.out[0].len);
  if (n_out > 1) clear_reply_room(e.payload, e.payload_dirty, e.out[1].len);
  e.message = fs::RawMessage{std::span(e.in.data(), n_in), std::span(e.out.data(), n_out),
                             header.unique, false};
  e.raw = &e.message;
  e.ec.clear();
  in_flight_.add();
  session_.submit(e);
}

void KernelRing::answer(Entry& e, int error) {
  // The commit refuses an errno /dev/fuse would (EINVAL to the caller): say EIO instead.
  const int sent = fuse::kernel_errno(error);
  if (debug_ && sent != error)
    log::debug("   unique %llu: error %d is beyond what the kernel takes (1..%d): EIO (io_uring)",
               static_cast<unsigned long long>(e.unique), error, fuse::kKernelMaxErrno);
  const fuse_out_header out{sizeof(fuse_out_header), -sent, e.unique};
  std::memcpy(e.header().in_out, &out, sizeof(out));
  e.header().entry.payload_sz = 0;
  send(e, uring_abi::kCommitAndFetch);
}

void KernelRing::on_reply(fs::Call& call) {
  auto& e = static_cast<Entry&>(call);
  KernelRing& ring = *e.owner;
  if (e.ec) {
    ring.answer(e, e.ec.value());
  } else {
    // The validated header, into private memory; the payload is where the kernel reads it.
    const uint32_t payload = e.reply.data_len;
    if (e.reply_in_head && payload) {
      std::memcpy(e.payload, e.head + kReplyOffset + sizeof(fuse_out_header), payload);
      mark_written(e.payload_dirty, payload);
    }
    std::memcpy(e.header().in_out, &e.reply.header, sizeof(fuse_out_header));
    e.header().entry.payload_sz = payload;
    if (ring.debug_)
      log::debug("   unique %llu: %u bytes (io_uring)",
                 static_cast<unsigned long long>(e.unique), e.reply.header.len);
    ring.send(e, uring_abi::kCommitAndFetch);
  }
  // Nothing of `e` is touched after the commit: the kernel may hand it the next request now.
  ring.in_flight_.done();
}

}  // namespace virtiofs::mount
