// A randomized, seeded, bounded stress of the session over the loopback device: per round a
// random ring shape (queues, size, INDIRECT, EVENT_IDX, shared call fd, poll_us, chunks), worker
// threads making random calls (sync, async, async whose callback blocks on a nested call, large
// READ/WRITE checked byte for byte, READDIR, LOOKUP+FORGET, held STATFS interrupted or given
// up), a chaos thread (interrupts or abandons, spurious device interrupts, device_misbehaved,
// device lost, shutdown) and faults from the fault plan, then the session destroyed at a random
// moment.
//
// Invariants: every call ends exactly once, with its real result or an errno the round explains
// (EINTR only if interrupted, EIO only after a fault or device_misbehaved, ENOTCONN/ETIMEDOUT
// only after a loss or shutdown); successful replies parse and READ data matches what was
// written; nothing ends after the session is gone; no hang (a watchdog loses the device, names
// what is stuck and fails the round).
//
// VIRTIOFS_STRESS_SEED repeats a run (the seed is printed on failure); VIRTIOFS_STRESS_ROUNDS
// sets how many rounds (default kDefaultRounds).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "fs/session.hpp"
#include "fuse/dirent.hpp"
#include "fuse/init.hpp"
#include "fuse/ops.hpp"
#include "support/loopback_fs.hpp"

using namespace virtiofs;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

#if defined(__SANITIZE_THREAD__)
#define STRESS_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define STRESS_TSAN 1
#endif
#endif
// ~15 s in a Debug ASan build on 2 busy cores (~100 ms a round); TSan runs a round ~8x slower.
#ifdef STRESS_TSAN
constexpr uint64_t kDefaultRounds = 25;
#else
constexpr uint64_t kDefaultRounds = 150;
#endif
// No round comes near it unless something hangs; a sanitized build on a loaded machine is slow.
constexpr auto kRoundBound = 60s;

uint64_t env_u64(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtoull(v, nullptr, 0) : fallback;
}

enum class Op { kCreate, kGetattr, kLookup, kWrite, kRead, kStatfs, kReaddir };

const char* op_name(Op op) {
  switch (op) {
    case Op::kCreate: return "CREATE";
    case Op::kGetattr: return "GETATTR";
    case Op::kLookup: return "LOOKUP";
    case Op::kWrite: return "WRITE";
    case Op::kRead: return "READ";
    case Op::kStatfs: return "STATFS";
    case Op::kReaddir: return "READDIR";
  }
  return "?";
}

struct Round;

// Every call the round makes: sync ones are waited on with Session::wait, async ones end in
// on_done and may make a nested blocking call from there. Derived from SyncCall so that both
// count their ends the same way; kept in a deque that outlives the session.
struct StressCall : fs::SyncCall {
  Round* round = nullptr;
  unsigned worker = 0;
  Op op = Op::kGetattr;
  bool sync = false;
  Inode inode = 0;
  std::vector<std::byte> data;  // WRITE source, READ/READDIR destination
  uint64_t offset = 0;
  std::string name;  // the frame points at it
  StressCall* nested = nullptr;  // made blocking from this call's on_done
  std::atomic<int> ends{0};
  std::atomic<bool> interrupted{false};
  std::atomic<bool> nested_ran{false};
  // What the round allowed when the call ended: a loss or shutdown (ENOTCONN, ETIMEDOUT), a
  // fault or misbehaviour (EIO). Set before the chaos acts, read at the end.
  std::atomic<bool> enotconn_ok{false}, eio_ok{false};
  void (*sync_done)(fs::Call&) = nullptr;  // SyncCall's own on_done

  StressCall();
  std::string describe() const {
    std::ostringstream o;
    o << op_name(op) << (sync ? " sync" : " async") << " of worker " << worker << " inode " << inode;
    if (interrupted) o << " (interrupted)";
    if (nested) o << " (nested call from its callback)";
    return o.str();
  }
};

struct Config {
  unsigned queues = 1;
  uint16_t queue_size = 8;
  bool indirect = true;
  bool event_idx = true;
  bool shared_call_fd = false;
  unsigned poll_us = 0;
  uint32_t chunks = 16;
  unsigned delay_us = 0;
  bool reorder = false;
  unsigned hold_ms = 20;
  std::vector<std::string> faults;
  unsigned workers = 2;
  unsigned ops_per_worker = 20;
  enum class End { kClean, kShutdownMidway, kDestroyInFlight } end = End::kClean;
  // Progress points (ops done by all workers) at which the chaos thread acts; 0: never.
  uint64_t misbehave_at = 0, lose_at = 0, shutdown_at = 0;
  unsigned chaos_interrupts = 0, spurious_interrupts = 0;

  std::string describe() const {
    std::ostringstream o;
    o << "queues " << queues << " size " << queue_size << (indirect ? " indirect" : " no-indirect")
      << (event_idx ? " event-idx" : " no-event-idx") << (shared_call_fd ? " shared-call-fd" : "")
      << " poll_us " << poll_us << " chunks " << chunks << " delay_us " << delay_us
      << (reorder ? " reorder" : "") << " hold_ms " << hold_ms << " workers " << workers << "x"
      << ops_per_worker << " end "
      << (end == End::kClean ? "clean" : end == End::kShutdownMidway ? "shutdown-midway" : "destroy-in-flight")
      << " misbehave@" << misbehave_at << " lose@" << lose_at << " shutdown@" << shutdown_at
      << " chaos-interrupts " << chaos_interrupts << " spurious " << spurious_interrupts << " faults";
    for (auto& f : faults) o << " " << f;
    if (faults.empty()) o << " none";
    return o.str();
  }
};

Config random_config(std::mt19937_64& rng) {
  auto pick = [&](uint64_t n) { return static_cast<unsigned>(rng() % n); };
  Config c;
  c.queues = 1 + pick(3);
  c.queue_size = pick(2) ? 8 : 16;
  c.indirect = pick(4) != 0;
  c.event_idx = pick(4) != 0;
  c.shared_call_fd = pick(3) == 0;
  const unsigned poll_choices[] = {20, fs::kAdaptivePolling, 0};  // fixed, adaptive, interrupts
  c.poll_us = poll_choices[pick(3)];
  const uint32_t chunk_choices[] = {4, 16, 24};
  c.chunks = chunk_choices[pick(3)];
  c.delay_us = pick(4) == 0 ? 50 : 0;
  c.reorder = pick(3) == 0;
  c.hold_ms = pick(2) ? 10 : 50;
  c.workers = 2 + pick(3);
  c.ops_per_worker = 10 + pick(30);
  const uint64_t total = uint64_t{c.workers} * c.ops_per_worker;
  // Half the rounds have no fault at all, so that clean rounds check the end state too.
  if (pick(2)) {
    const char* kinds[] = {"used-id-out-of-range", "used-id-not-in-flight", "double-completion",
                           "used-len-beyond-buffer", "used-idx-jump", "header-len-mismatch",
                           "unknown-unique", "error-out-of-range", "dirent-overrun",
                           "dirent-bad-name", "eio", "die"};
    const char* opcodes[] = {"getattr", "lookup", "read", "write", "statfs", "readdir", ""};
    for (unsigned n = 1 + pick(2); n > 0; --n) {
      std::string f = kinds[pick(std::size(kinds))];
      // Dirent faults rewrite payload bytes; on READ data that is a device lying about file
      // contents, which no driver can see, so they strike READDIR only.
      const char* op = f.rfind("dirent", 0) == 0 ? "readdir" : opcodes[pick(std::size(opcodes))];
      if (*op) f += std::string("@") + op;
      // Not INIT nor the CREATEs after it (an any-opcode rule counts them): the round needs a
      // session and its files.
      f += "#" + std::to_string(2 + c.workers + pick(total));
      c.faults.push_back(f);
    }
  }
  if (pick(6) == 0) c.misbehave_at = 1 + pick(total);
  if (pick(6) == 0) c.lose_at = 1 + pick(total);
  c.end = static_cast<Config::End>(pick(3));
  if (c.end == Config::End::kShutdownMidway) c.shutdown_at = 1 + pick(total);
  c.chaos_interrupts = pick(8);
  c.spurious_interrupts = pick(4);
  return c;
}

struct Round {
  Config config;
  std::string trace;  // seed and round, for every message
  std::unique_ptr<test::LoopbackFs> loop;
  fs::Session* session = nullptr;  // raw: callbacks may run while the unique_ptr is reset
  std::vector<Inode> files;        // one per worker, written only by it
  std::vector<std::vector<std::byte>> shadow;  // what each file should hold

  // Calls, per worker (only that worker appends) and the main thread's; stable addresses.
  std::vector<std::deque<StressCall>> calls;
  std::deque<StressCall> main_calls;

  std::atomic<bool> may_eio{false}, may_enotconn{false}, session_gone{false};
  std::atomic<uint64_t> progress{0};
  std::atomic<unsigned> workers_done{0};
  std::atomic<uint64_t> successful_lookups{0};
  std::mutex mu;
  std::condition_variable cv;  // progress, round end
  std::vector<StressCall*> in_flight;  // async calls the chaos thread may interrupt (under mu)
  std::vector<std::string> violations;  // under mu
  bool finished = false;               // under mu: the watchdog may stand down

  void violation(const std::string& what) {
    std::lock_guard lock(mu);
    violations.push_back(what);
  }
  bool has_fault(const char* kind) const {
    return std::any_of(config.faults.begin(), config.faults.end(),
                       [&](const std::string& f) { return f.rfind(kind, 0) == 0; });
  }
  bool has_dirent_fault() const {
    return std::any_of(config.faults.begin(), config.faults.end(),
                       [](const std::string& f) { return f.rfind("dirent", 0) == 0; });
  }
};

void on_end(StressCall& c) {
  Round& r = *c.round;
  if (c.ends.fetch_add(1) != 0) r.violation("ended twice: " + c.describe());
  if (r.session_gone.load()) r.violation("ended after the session was destroyed: " + c.describe());
  c.enotconn_ok = r.may_enotconn.load() || r.has_fault("die");
  c.eio_ok = r.may_eio.load() || !r.config.faults.empty();
}

void async_done(fs::Call& call) {
  auto& c = static_cast<StressCall&>(call);
  on_end(c);
  Round& r = *c.round;
  if (c.op == Op::kReaddir && !c.ec) {
    // The owner checks what the session cannot (directory entries) and says so.
    const auto err = fuse::parse_dirents(std::span(c.data.data(), c.reply.data_len), false,
                                         [](const fuse::DirentView&) { return true; });
    if (err) {
      if (!r.has_dirent_fault()) r.violation("READDIR reply unparsable without a dirent fault");
      r.may_eio = true;
      r.session->device_misbehaved();
    }
  }
  if (c.nested) {
    // The session documents that a callback may block: this one does, on a fresh call.
    c.nested_ran = true;
    r.session->submit(*c.nested);
    r.session->wait(*c.nested);
  }
}

StressCall::StressCall() {
  sync_done = on_done;
  on_done = [](fs::Call& call) {
    auto& c = static_cast<StressCall&>(call);
    if (!c.sync) return async_done(call);
    on_end(c);
    c.sync_done(call);  // last: the waiter may go on at once
  };
}

// Checks one ended call's result against what the round allows (main thread, at the end).
void check_result(Round& r, StressCall& c) {
  const int ends = c.ends.load();
  if (ends != 1) {
    r.violation("ended " + std::to_string(ends) + " times: " + c.describe());
    return;
  }
  if (c.ec) {
    const int e = c.ec.value();
    const bool ok = (e == EINTR && c.interrupted) || (e == EIO && c.eio_ok) ||
                    ((e == ENOTCONN || e == ETIMEDOUT) && c.enotconn_ok);
    if (!ok) r.violation("unexplained error " + c.ec.message() + ": " + c.describe());
    return;
  }
  switch (c.op) {
    case Op::kGetattr: {
      Attr a;
      if (fuse::parse(c.reply, a) || a.ino != c.inode) r.violation("bad GETATTR reply: " + c.describe());
      break;
    }
    case Op::kLookup: {
      Entry e;
      if (fuse::parse(c.reply, e) || e.inode != c.inode) r.violation("bad LOOKUP reply: " + c.describe());
      break;
    }
    case Op::kStatfs: {
      StatFs s;
      if (fuse::parse(c.reply, s) || s.bsize != 4096) r.violation("bad STATFS reply: " + c.describe());
      break;
    }
    case Op::kWrite: {
      uint64_t n = 0;
      if (fuse::parse_count(c.reply, fuse::Count::kWritten, n) || n != c.data.size())
        r.violation("bad WRITE count: " + c.describe());
      break;
    }
    case Op::kCreate:  // checked where it is made
    case Op::kRead:    // checked by its worker against the shadow
    case Op::kReaddir:
      break;
  }
  if (c.nested && !c.nested_ran) r.violation("callback did not run its nested call: " + c.describe());
}

class Worker {
 public:
  Worker(Round& r, unsigned index, uint64_t seed) : r_(r), index_(index), rng_(seed) {}

  void run() {
    for (unsigned i = 0; i < r_.config.ops_per_worker; ++i) {
      step();
      r_.progress.fetch_add(1);
      r_.cv.notify_all();
      if (pick(4) == 0) std::this_thread::yield();
    }
    r_.workers_done.fetch_add(1);
    r_.cv.notify_all();
  }

 private:
  unsigned pick(uint64_t n) { return static_cast<unsigned>(rng_() % n); }
  fs::Session& s() { return *r_.session; }
  Inode file() const { return r_.files[index_]; }

  StressCall& make(Op op, bool sync, Inode inode) {
    StressCall& c = r_.calls[index_].emplace_back();
    c.round = &r_;
    c.worker = index_;
    c.op = op;
    c.sync = sync;
    // An async call's on_done may make a blocking call: it must not run inside another
    // callback. A sync call's only records and wakes its waiter.
    c.never_blocks = sync;
    c.inode = inode;
    return c;
  }

  void run_sync(StressCall& c) {
    s().submit(c);
    s().wait(c);
  }

  void publish(StressCall& c) {
    std::lock_guard lock(r_.mu);
    r_.in_flight.push_back(&c);
  }

  void step() {
    const uint32_t max = s().max_transfer();
    switch (pick(9)) {
      case 0: {  // sync GETATTR
        StressCall& c = make(Op::kGetattr, true, pick(2) ? file() : kRootInode);
        c.frame = fuse::make_getattr(c.inode, nullptr);
        run_sync(c);
        break;
      }
      case 1: {  // sync LOOKUP, then FORGET what it took
        StressCall& c = make(Op::kLookup, true, file());
        c.name = "f" + std::to_string(index_);
        c.frame = fuse::make_lookup(kRootInode, c.name);
        run_sync(c);
        if (!c.ec) {
          r_.successful_lookups.fetch_add(1);
          s().forget(file(), 1);
        }
        break;
      }
      case 2:
      case 3: {  // large WRITE
        const uint32_t size = 1 + pick(max);
        StressCall& c = make(Op::kWrite, true, file());
        c.offset = pick(max);
        c.data.resize(size);
        const auto salt = static_cast<uint8_t>(rng_());
        for (uint32_t i = 0; i < size; ++i) c.data[i] = std::byte(static_cast<uint8_t>(i * 7 + salt));
        c.frame = fuse::make_write(file(), file(), c.offset, c.data);
        run_sync(c);
        auto& shadow = r_.shadow[index_];
        if (!c.ec) {
          if (shadow.size() < c.offset + size) shadow.resize(c.offset + size);
          std::copy(c.data.begin(), c.data.end(), shadow.begin() + static_cast<ptrdiff_t>(c.offset));
        } else if (auto now = r_.loop->fs().contents(file())) {
          // Failed: the device may or may not have applied it; what it holds is the truth.
          shadow = *now;
        }
        break;
      }
      case 4:
      case 5: {  // large READ, checked byte for byte
        const uint32_t size = 1 + pick(max);
        StressCall& c = make(Op::kRead, true, file());
        c.offset = pick(max);
        c.data.assign(size, std::byte{0xee});
        c.frame = fuse::make_read(file(), file(), c.offset, c.data, false, false);
        run_sync(c);
        if (!c.ec) check_read(c);
        break;
      }
      case 6: {  // async GETATTR, its callback maybe blocking on a nested one
        StressCall& c = make(Op::kGetattr, false, file());
        c.frame = fuse::make_getattr(file(), nullptr);
        if (pick(2)) {
          StressCall& n = make(Op::kGetattr, true, kRootInode);
          n.frame = fuse::make_getattr(kRootInode, nullptr);
          c.nested = &n;
        }
        s().submit(c);
        publish(c);
        break;
      }
      case 7: {  // async STATFS, held by the device until interrupted (or hold_ms)
        StressCall& c = make(Op::kStatfs, false, kRootInode);
        c.frame = fuse::make_statfs(kRootInode);
        s().submit(c);
        publish(c);
        if (pick(3)) {
          if (pick(2)) std::this_thread::yield();
          c.interrupted = true;
          if (pick(2))
            s().interrupt(c);
          else
            s().abandon(c);  // given up: the device's late answer is dropped
        }
        break;
      }
      default: {  // async READDIR of the root
        StressCall& c = make(Op::kReaddir, false, kRootInode);
        c.data.resize(4096);
        c.frame = fuse::make_read(kRootInode, kRootInode, 0, c.data, true, false);
        s().submit(c);
        publish(c);
        break;
      }
    }
  }

  void check_read(StressCall& c) {
    const auto& shadow = r_.shadow[index_];
    const size_t expect =
        c.offset >= shadow.size() ? 0 : std::min<size_t>(c.data.size(), shadow.size() - c.offset);
    if (c.reply.data_len != expect) {
      r_.violation("READ returned " + std::to_string(c.reply.data_len) + " bytes, expected " +
                   std::to_string(expect) + ": " + c.describe());
      return;
    }
    if (!std::equal(c.data.begin(), c.data.begin() + static_cast<ptrdiff_t>(expect),
                    shadow.begin() + static_cast<ptrdiff_t>(c.offset)))
      r_.violation("READ data differs from what was written at offset " +
                   std::to_string(c.offset) + ": " + c.describe());
  }

  Round& r_;
  unsigned index_;
  std::mt19937_64 rng_;
};

// Acts at the round's progress points: interrupts or abandons, spurious interrupts, device_misbehaved,
// device lost, shutdown. Ends when the workers have.
void chaos(Round& r, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const Config& c = r.config;
  const uint64_t total = uint64_t{c.workers} * c.ops_per_worker;
  struct Event {
    uint64_t at;
    int what;  // 0 interrupt, 1 spurious, 2 misbehave, 3 lose, 4 shutdown
  };
  std::vector<Event> events;
  for (unsigned i = 0; i < c.chaos_interrupts; ++i) events.push_back({1 + rng() % total, 0});
  for (unsigned i = 0; i < c.spurious_interrupts; ++i) events.push_back({1 + rng() % total, 1});
  if (c.misbehave_at) events.push_back({c.misbehave_at, 2});
  if (c.lose_at) events.push_back({c.lose_at, 3});
  if (c.shutdown_at) events.push_back({c.shutdown_at, 4});
  std::sort(events.begin(), events.end(), [](auto& a, auto& b) { return a.at < b.at; });
  for (const Event& e : events) {
    {
      std::unique_lock lock(r.mu);
      r.cv.wait(lock, [&] { return r.progress.load() >= e.at || r.workers_done.load() == c.workers; });
    }
    switch (e.what) {
      case 0: {
        StressCall* victim = nullptr;
        {
          std::lock_guard lock(r.mu);
          if (!r.in_flight.empty()) victim = r.in_flight[rng() % r.in_flight.size()];
        }
        if (victim) {
          victim->interrupted = true;
          if (rng() % 2)
            r.session->interrupt(*victim);
          else
            r.session->abandon(*victim);  // racing its reaper, failures and shutdown
        }
        break;
      }
      case 1:
        r.loop->device().interrupt(static_cast<unsigned>(rng() % r.loop->device().num_queues()));
        break;
      case 2:
        r.may_eio = true;
        r.session->device_misbehaved();
        break;
      case 3:
        r.may_enotconn = true;
        r.loop->device().lose();
        break;
      default:
        r.may_enotconn = true;
        r.session->shutdown();
        break;
    }
  }
}

// The round's calls not ended yet, for a hang report.
std::string stuck_calls(Round& r) {
  std::ostringstream o;
  size_t n = 0;
  auto scan = [&](std::deque<StressCall>& calls) {
    for (StressCall& c : calls)
      if (c.ends.load() == 0 && n++ < 20) o << "\n  not ended: " << c.describe();
  };
  for (auto& calls : r.calls) scan(calls);
  scan(r.main_calls);
  o << "\n  " << n << " call(s) not ended; workers done " << r.workers_done.load() << "/"
    << r.config.workers << ", progress " << r.progress.load();
  return o.str();
}

struct Outcome {
  uint64_t calls = 0, ok = 0, eintr = 0, eio = 0, enotconn = 0, other = 0;
  uint64_t clean_rounds = 0;  // rounds whose end state (file bytes, lookups) was checked
};

// One round: device, session, INIT, one file per worker; workers and chaos; then the end the
// config asks for. Returns what went wrong (empty: nothing).
std::vector<std::string> run_round(uint64_t seed, Outcome& outcome) {
  std::mt19937_64 rng(seed);
  Round r;
  r.config = random_config(rng);
  if (seed % 8 == 0) {
    // A control round (one seed in eight, so every run of 8 or more has some, and a seed
    // repeats as it ran): no faults, no loss, a clean end, so its files are checked.
    r.config.faults.clear();
    r.config.misbehave_at = r.config.lose_at = r.config.shutdown_at = 0;
    r.config.end = Config::End::kClean;
  }
  r.trace = "VIRTIOFS_STRESS_SEED=" + std::to_string(seed) + " (round seed)";
  const Config& c = r.config;

  test::LoopbackFsOptions o;
  o.device.request_queues = c.queues;
  o.device.features = virtio::feature::kVersion1 | (c.indirect ? virtio::feature::kRingIndirectDesc : 0) |
                      (c.event_idx ? virtio::feature::kRingEventIdx : 0);
  o.device.shared_call_fd = c.shared_call_fd;
  o.server.delay_us = c.delay_us;
  o.server.reorder = c.reorder;
  o.server.hold = FUSE_STATFS;
  o.server.hold_ms = c.hold_ms;
  o.faults = c.faults;
  r.loop = std::make_unique<test::LoopbackFs>(o);
  r.calls.resize(c.workers);
  r.shadow.resize(c.workers);

  fs::SessionOptions so;
  so.queue_size = c.queue_size;
  so.num_request_queues = c.queues;
  so.chunks_per_queue = c.chunks;
  so.poll_us = c.poll_us;
  so.device_timeout = 3000ms;
  auto session = std::make_unique<fs::Session>(r.loop->transport(), so);
  r.session = session.get();
  session->set_failure_handler([&r](std::error_code ec) {
    // Only what the round did may break the session.
    if (ec == std::errc::io_error && !r.may_eio && r.config.faults.empty())
      r.violation("session failed with EIO with no fault and no misbehaviour");
    if (ec == std::errc::not_connected && !r.may_enotconn && r.config.faults.empty())
      r.violation("session lost with no loss planned");
  });
  session->init(fuse::kLibraryInitFlags, 0);

  // Watchdog: past the bound, say what is stuck and lose the device so that everything ends.
  std::thread watchdog([&r] {
    std::unique_lock lock(r.mu);
    if (r.cv.wait_for(lock, kRoundBound, [&] { return r.finished; })) return;
    lock.unlock();
    const std::string stuck = stuck_calls(r);
    r.violation("round hung for " + std::to_string(kRoundBound.count()) + " s:" + stuck);
    r.may_eio = r.may_enotconn = true;
    r.loop->device().lose();
    lock.lock();
    if (r.cv.wait_for(lock, kRoundBound, [&] { return r.finished; })) return;
    std::fprintf(stderr, "%s: still hung after the device was lost:%s\n", r.trace.c_str(), stuck.c_str());
    std::abort();  // joinable threads are stuck: nothing else ends this process
  });
  auto finish_watchdog = [&] {
    {
      std::lock_guard lock(r.mu);
      r.finished = true;
    }
    r.cv.notify_all();
    watchdog.join();
  };

  // One file per worker (CREATE gives it one lookup reference), made before faults can strike:
  // the fault plan counts from INIT, so CREATE may meet one; then the round just has no file.
  for (unsigned w = 0; w < c.workers; ++w) {
    StressCall& create = r.main_calls.emplace_back();
    create.round = &r;
    create.op = Op::kCreate;
    create.sync = true;
    create.name = "f" + std::to_string(w);
    create.frame = fuse::make_create(kRootInode, create.name, O_RDWR, 0644, 0);
    session->submit(create);
    session->wait(create);
    Created created;
    if (create.ec || fuse::parse(create.reply, created)) {
      r.violation("CREATE failed: " + create.ec.message());
      r.may_eio = r.may_enotconn = true;
      r.loop->device().lose();
      break;
    }
    r.files.push_back(created.entry.inode);
  }
  std::vector<std::thread> threads;
  if (r.files.size() == c.workers) {
    for (unsigned w = 0; w < c.workers; ++w)
      threads.emplace_back([&r, w, s = rng()] { Worker(r, w, s).run(); });
    threads.emplace_back([&r, s = rng()] { chaos(r, s); });
  }
  for (auto& t : threads) t.join();

  if (c.end == Config::End::kClean) {
    // Every async call ends by itself (held STATFS after hold_ms): wait for them, bounded by
    // the watchdog, then check the end state while the device is healthy.
    auto all_ended = [&] {
      for (auto& calls : r.calls)
        for (StressCall& call : calls)
          if (call.ends.load() == 0) return false;
      return true;
    };
    while (!all_ended()) {
      std::unique_lock lock(r.mu);
      if (r.finished) break;
      r.cv.wait_for(lock, 1ms);
    }
    const bool healthy = !session->failure() && c.faults.empty() && !r.may_eio && !r.may_enotconn;
    if (healthy) {
      ++outcome.clean_rounds;
      for (unsigned w = 0; w < c.workers; ++w) {
        auto stored = r.loop->fs().contents(r.files[w]);
        if (!stored || *stored != r.shadow[w]) r.violation("file of worker " + std::to_string(w) + " differs from what was written");
        session->forget(r.files[w], 1);  // CREATE's reference
      }
      session->shutdown();  // FORGETs reach the device before DESTROY
      for (unsigned w = 0; w < c.workers; ++w)
        if (r.loop->fs().lookups(r.files[w]).value_or(0) != 0)
          r.violation("file of worker " + std::to_string(w) + " still has lookups after FORGETs (" +
                      std::to_string(r.successful_lookups.load()) + " LOOKUPs in all)");
    }
  }
  r.may_enotconn = true;  // the destructor ends what is still in flight with ENOTCONN
  session.reset();        // with calls in flight unless the round ended clean
  r.session_gone = true;
  finish_watchdog();

  for (StressCall& call : r.main_calls) check_result(r, call);
  for (auto& calls : r.calls)
    for (StressCall& call : calls) {
      check_result(r, call);
      ++outcome.calls;
      const int e = call.ec.value();
      (e == 0 ? outcome.ok : e == EINTR ? outcome.eintr : e == EIO ? outcome.eio
                           : e == ENOTCONN ? outcome.enotconn : outcome.other)++;
    }
  for (unsigned q = 0; q < r.loop->device().num_queues(); ++q)
    if (auto err = r.loop->device().error(q); !err.empty())
      r.violation("the device refused what queue " + std::to_string(q) + " published: " + err);
  r.loop.reset();
  for (auto& v : r.violations) v = c.describe() + ": " + v;
  return r.violations;
}

TEST(SessionStress, RandomRoundsOfCallsFaultsAndShutdown) {
  const uint64_t seed = env_u64("VIRTIOFS_STRESS_SEED",
                                static_cast<uint64_t>(Clock::now().time_since_epoch().count()));
  const uint64_t rounds = env_u64("VIRTIOFS_STRESS_ROUNDS", kDefaultRounds);
  SCOPED_TRACE("VIRTIOFS_STRESS_SEED=" + std::to_string(seed) + " VIRTIOFS_STRESS_ROUNDS=" +
               std::to_string(rounds));
  Outcome outcome;
  const auto start = Clock::now();
  for (uint64_t round = 0; round < rounds; ++round) {
    const auto violations = run_round(seed + round, outcome);
    for (const auto& v : violations)
      ADD_FAILURE() << "round " << round << " (alone: VIRTIOFS_STRESS_SEED=" << seed + round
                    << " VIRTIOFS_STRESS_ROUNDS=1): " << v;
    if (!violations.empty()) break;  // one failing round says it; the seed repeats it
  }
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
  std::printf("session stress: seed %llu, %llu rounds in %lld ms: %llu calls, %llu ok, %llu EINTR, "
              "%llu EIO, %llu ENOTCONN, %llu other; end state checked in %llu rounds\n",
              static_cast<unsigned long long>(seed), static_cast<unsigned long long>(rounds),
              static_cast<long long>(ms), static_cast<unsigned long long>(outcome.calls),
              static_cast<unsigned long long>(outcome.ok), static_cast<unsigned long long>(outcome.eintr),
              static_cast<unsigned long long>(outcome.eio), static_cast<unsigned long long>(outcome.enotconn),
              static_cast<unsigned long long>(outcome.other),
              static_cast<unsigned long long>(outcome.clean_rounds));
  RecordProperty("rounds", static_cast<int>(rounds));
  // The rounds must have exercised the paths they claim to.
  EXPECT_GT(outcome.ok, 0u);
  if (rounds >= 20) {
    EXPECT_GT(outcome.eintr, 0u) << "no interrupt ever won";
    EXPECT_GT(outcome.enotconn, 0u) << "no call ever met a loss or shutdown";
    EXPECT_GT(outcome.clean_rounds, 0u) << "no round ended clean enough to check its files";
  }
}

}  // namespace
