// libFuzzer: the whole session against a device whose behaviour is the input. The loopback
// device is stepped, so nothing reaches the driver unless the input says so, step by step:
// which queue to serve and how (well, through FsServer over MemFs; or with reply bytes of its
// choosing: header len, error, unique, payload; used id and len, bad ones included), used index
// jumps, spurious interrupts, losing the device. Between device steps the input also plays the
// driver's owner: calls of several opcodes (async), interrupts, FORGETs, device_misbehaved,
// shutdown. The session may fail (EIO, ENOTCONN); it must not crash or hang, and every call
// must end exactly once by the time the session is destroyed.
#include <linux/fuse.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "fs/session.hpp"
#include "fuse/init.hpp"
#include "fuse/ops.hpp"
#include "support/chain_bytes.hpp"
#include "support/loopback_fs.hpp"
#include "virtio/features.hpp"
#include "virtiofs/log.hpp"

using namespace virtiofs;

namespace {

constexpr unsigned kMaxSteps = 256;  // bounds an input's work whatever its length

struct Input {
  const uint8_t* p;
  size_t n;
  template <class T>
  T take() {
    T v{};
    const size_t k = n < sizeof(T) ? n : sizeof(T);
    std::memcpy(&v, p, k);
    p += k;
    n -= k;
    return v;
  }
  bool empty() const { return n == 0; }
};

struct FuzzCall : fs::Call {
  std::atomic<int> ends{0};
  std::vector<std::byte> buf;
  std::string name;
  FuzzCall() {
    on_done = [](fs::Call& c) { static_cast<FuzzCall&>(c).ends.fetch_add(1); };
  }
};

// A call of the opcode the input picks; buffers live in the call.
void make_call(FuzzCall& c, Input& in) {
  const uint8_t kind = in.take<uint8_t>();
  const Inode ino = in.take<uint8_t>() % 4 ? kRootInode : 2 + in.take<uint8_t>() % 4;
  const uint32_t size = 1 + in.take<uint16_t>() % (96 * 1024);  // spills into chunks
  c.name = "n" + std::to_string(kind >> 4);
  switch (kind % 8) {
    case 0: c.frame = fuse::make_getattr(ino, nullptr); break;
    case 1: c.frame = fuse::make_lookup(ino, c.name); break;
    case 2: c.frame = fuse::make_mkdir(ino, c.name, 0755, 0); break;
    case 3: c.frame = fuse::make_create(ino, c.name, O_RDWR, 0644, 0); break;
    case 4:
      c.buf.assign(size, std::byte{0x5a});
      c.frame = fuse::make_write(ino, ino, in.take<uint16_t>(), c.buf);
      break;
    case 5:
      c.buf.resize(size);
      c.frame = fuse::make_read(ino, ino, in.take<uint16_t>(), c.buf, false, false);
      break;
    case 6:
      c.buf.resize(size % 8192 + 1);
      c.frame = fuse::make_read(ino, ino, 0, c.buf, true, kind & 8);
      break;
    default: c.frame = fuse::make_statfs(ino); break;
  }
}

// Writes a reply of the input's making into a chain the device holds and puts a used element.
void answer_badly(test::LoopbackDevice& dev, unsigned q, const test::DeviceChain& chain, Input& in) {
  const uint8_t how = in.take<uint8_t>();
  const auto header = test::request_header(chain);
  fuse_out_header out{};
  out.unique = header ? header->unique : 0;
  if (how & 1) out.unique ^= in.take<uint64_t>();
  const uint8_t err = in.take<uint8_t>();
  out.error = how & 2 ? -static_cast<int32_t>(err) * (how & 4 ? 33 : 1) : 0;
  std::vector<std::byte> payload(in.take<uint8_t>() * (how & 8 ? 64u : 1u));
  for (auto& b : payload) b = std::byte(in.take<uint8_t>());
  out.len = static_cast<uint32_t>(sizeof(out) + payload.size());
  if (how & 16) out.len = in.take<uint32_t>();
  std::vector<std::byte> bytes(sizeof(out) + payload.size());
  std::memcpy(bytes.data(), &out, sizeof(out));
  std::copy(payload.begin(), payload.end(), bytes.begin() + sizeof(out));
  uint32_t len = test::scatter(chain, bytes);
  uint32_t id = chain.head;
  if (how & 32) len = in.take<uint32_t>();
  if (how & 64) id = in.take<uint16_t>();
  dev.complete(q, id, len);
}

}  // namespace

// Broken devices are the point here: the library's reports of them would only slow the run.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  set_log_sink([](LogLevel, std::string_view) {});
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in{data, size};
  const uint8_t config = in.take<uint8_t>();
  test::LoopbackFsOptions o;
  o.device.request_queues = 1 + (config & 1);
  o.device.features = virtio::feature::kVersion1 |
                      (config & 2 ? virtio::feature::kRingIndirectDesc : 0) |
                      (config & 4 ? virtio::feature::kRingEventIdx : 0);
  o.device.shared_call_fd = config & 8;
  const bool init = config & 16;
  o.device.stepped = !init;  // INIT is served by the device threads, then everything is stepped

  fs::SessionOptions so;
  so.queue_size = config & 32 ? 4 : 8;
  so.num_request_queues = o.device.request_queues;
  so.chunks_per_queue = 4;
  so.poll_us = config & 64 ? 5 : 0;
  so.device_timeout = std::chrono::milliseconds(500);  // a backstop: the end answers everything

  // Calls outlive the session: declared first, destroyed last.
  std::deque<FuzzCall> calls;
  test::LoopbackFs loop(o);
  auto& dev = loop.device();
  auto session = std::make_unique<fs::Session>(loop.transport(), so);
  if (init) {
    try {
      session->init(fuse::kLibraryInitFlags, 0);
    } catch (const std::system_error&) {
      __builtin_trap();  // MemFs answers INIT well
    }
    dev.set_all_stepped(true);
  }

  std::vector<std::pair<unsigned, test::DeviceChain>> held;  // taken, not answered yet
  const unsigned nq = dev.num_queues();
  bool graceful = true;
  for (unsigned step = 0; step < kMaxSteps && !in.empty(); ++step) {
    const uint8_t op = in.take<uint8_t>();
    const unsigned q = (op >> 4) % nq;
    switch (op % 14) {
      case 0:  // the device serves well
        dev.serve(q, 1 + in.take<uint8_t>() % 4);
        break;
      case 1:  // the device takes chains and sits on them
        for (auto& c : dev.take(q, 1 + in.take<uint8_t>() % 4)) held.emplace_back(q, std::move(c));
        break;
      case 2:  // ... answers one well
      case 3: {  // ... or as the input says
        if (held.empty()) break;
        const size_t i = in.take<uint8_t>() % held.size();
        auto [hq, chain] = std::move(held[i]);
        held.erase(held.begin() + static_cast<ptrdiff_t>(i));
        if (op % 14 == 2) {
          dev.answer(hq, {std::move(chain)});
        } else {
          answer_badly(dev, hq, chain, in);
        }
        break;
      }
      case 4: {  // a used element out of nowhere
        const uint32_t id = in.take<uint8_t>();
        dev.complete(q, id, in.take<uint16_t>());
        break;
      }
      case 5:
        dev.jump_used_idx(q, in.take<uint16_t>());
        break;
      case 6:
        dev.interrupt(q);
        break;
      case 7:
        if (in.take<uint8_t>() < 32) dev.lose();
        break;
      case 8:
      case 9: {  // the owner submits
        FuzzCall& c = calls.emplace_back();
        make_call(c, in);
        session->submit(c);
        break;
      }
      case 10:
        if (!calls.empty()) session->interrupt(calls[in.take<uint8_t>() % calls.size()]);
        break;
      case 11:
        session->forget(2 + in.take<uint8_t>() % 8, 1 + in.take<uint8_t>() % 3);
        break;
      case 12:
        if (in.take<uint8_t>() < 32) session->device_misbehaved();
        break;
      default:  // shutdown: gracefully, or with the device dying first
        graceful = in.take<uint8_t>() & 1;
        step = kMaxSteps;
        break;
    }
  }

  if (graceful) {
    // Whatever the device still holds is answered, and from now on it serves by itself.
    for (auto& [hq, chain] : held) dev.answer(hq, {std::move(chain)});
    held.clear();
    dev.set_all_stepped(false);
  } else {
    dev.lose();
  }
  session.reset();
  for (FuzzCall& c : calls)
    if (c.ends.load() != 1) __builtin_trap();  // lost or doubled completion
  return 0;
}
