#include "support/test_backend/fs_server.hpp"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <sstream>

#include "support/chain_bytes.hpp"

namespace virtiofs::test {

namespace {

void corrupt_first_dirent(std::vector<std::byte>& payload, Fault fault) {
  if (payload.size() < FUSE_NAME_OFFSET + 1) return;
  if (fault == Fault::kDirentOverrun) {
    const uint32_t namelen = static_cast<uint32_t>(payload.size()) + 64;
    std::memcpy(payload.data() + offsetof(fuse_dirent, namelen), &namelen, sizeof(namelen));
  } else {
    payload[FUSE_NAME_OFFSET] = std::byte{'/'};
  }
}

}  // namespace

FsServer::FsServer(MemFs& fs, FaultPlan& faults, const ServerOptions& options)
    : fs_(fs), faults_(faults), options_(options) {
  if (options_.hold && options_.hold_ms > 0) {
    timer_ = std::thread([this] {
      std::unique_lock lock(mu_);
      while (!stop_.load()) {
        timer_cv_.wait_for(lock, std::chrono::milliseconds(2));
        lock.unlock();
        release_expired();
        lock.lock();
      }
    });
  }
}

FsServer::~FsServer() { detach(); }

void FsServer::detach() {
  stop_.store(true);
  timer_cv_.notify_all();
  if (timer_.joinable()) timer_.join();
  std::lock_guard lock(mu_);
  held_.clear();
}

void FsServer::attach(DeviceQueues& device) {
  device_ = &device;
  per_queue_.assign(device.num_queues(), 0);
  in_flight_.assign(device.num_queues(), {});
}

void FsServer::on_chains(unsigned queue, std::vector<DeviceChain>& chains) {
  Used used;
  for (DeviceChain& chain : chains) {
    Request r{queue, std::move(chain), {}, {}};
    std::vector<std::byte> in = gather_readable(r.chain);
    std::optional<Fault> fault;
    {
      std::lock_guard lock(mu_);
      ++per_queue_[queue];
      in_flight_[queue].insert(r.chain.head);
    }
    if (in.size() < sizeof(fuse_in_header)) {
      used.emplace_back(r.chain.head, 0);  // not FUSE: hand it back untouched
      continue;
    }
    std::memcpy(&r.header, in.data(), sizeof(r.header));
    r.args.assign(in.begin() + sizeof(fuse_in_header), in.end());
    {
      std::lock_guard lock(mu_);
      ++per_opcode_[r.header.opcode];
    }
    if (r.header.opcode == FUSE_FORGET || r.header.opcode == FUSE_BATCH_FORGET) {
      std::vector<fuse_forget_one> entries;
      if (r.header.opcode == FUSE_FORGET && r.args.size() >= sizeof(fuse_forget_in)) {
        fuse_forget_in f;
        std::memcpy(&f, r.args.data(), sizeof(f));
        entries.push_back({r.header.nodeid, f.nlookup});
      } else if (r.args.size() >= sizeof(fuse_batch_forget_in)) {
        fuse_batch_forget_in b;
        std::memcpy(&b, r.args.data(), sizeof(b));
        const size_t room = (r.args.size() - sizeof(b)) / sizeof(fuse_forget_one);
        entries.resize(std::min<size_t>(b.count, room));
        if (!entries.empty())
          std::memcpy(entries.data(), r.args.data() + sizeof(b), entries.size() * sizeof(fuse_forget_one));
      }
      for (const auto& e : entries) fs_.forget(e.nodeid, e.nlookup);
      {
        std::lock_guard lock(mu_);
        forget_entries_ += entries.size();
        for (const auto& e : entries) {
          forget_nlookup_ += e.nlookup;
          // A node forgotten while a request on it is still held (not yet answered).
          for (const Held& h : held_)
            if (h.request.header.nodeid == e.nodeid) ++forgets_while_held_;
        }
      }
      used.emplace_back(r.chain.head, 0);
      continue;
    }
    if (r.header.opcode == FUSE_INTERRUPT) {
      fuse_interrupt_in in_arg{};
      if (r.args.size() >= sizeof(in_arg)) std::memcpy(&in_arg, r.args.data(), sizeof(in_arg));
      used.emplace_back(r.chain.head, 0);
      on_interrupt(in_arg.unique);
      continue;
    }
    fault = faults_.strike(r.header.opcode);
    if (fault == Fault::kDie) {
      device_->lose();
      return;  // a dead device answers nothing more
    }
    if (options_.hold && *options_.hold == r.header.opcode && !fault) {
      bool interrupted_already = false;
      {
        std::lock_guard lock(mu_);
        interrupted_already = early_interrupts_.erase(r.header.unique) > 0;
        if (interrupted_already) {
          ++interrupted_;
        } else {
          held_.push_back(Held{std::move(r), std::chrono::steady_clock::now() +
                                                 std::chrono::milliseconds(options_.hold_ms)});
        }
      }
      if (interrupted_already) answer(r, fault, used, -EINTR);  // answer() takes mu_ itself
      continue;
    }
    if (options_.delay_us) usleep(options_.delay_us);
    answer(r, fault, used);
    if (!options_.reorder) {
      device_->complete_all(queue, used);
      used.clear();
    }
  }
  if (options_.reorder) std::reverse(used.begin(), used.end());
  if (!used.empty()) device_->complete_all(queue, used);
}

void FsServer::answer(Request& r, std::optional<Fault> fault, Used& used, int32_t forced_error) {
  FsReply reply;
  if (forced_error)
    reply.error = forced_error;
  else if (fault == Fault::kEioFromNowOn)
    reply.error = -EIO;
  else
    reply = fs_.handle(r.header, r.args);

  if (fault == Fault::kAbsurdInit && r.header.opcode == FUSE_INIT &&
      reply.payload.size() >= sizeof(fuse_init_out)) {
    fuse_init_out init;
    std::memcpy(&init, reply.payload.data(), sizeof(init));
    init.max_write = 1;
    init.max_pages = 65535;
    init.flags |= FUSE_MAX_PAGES;
    std::memcpy(reply.payload.data(), &init, sizeof(init));
  }
  if (fault == Fault::kDirentOverrun || fault == Fault::kDirentBadName)
    corrupt_first_dirent(reply.payload, *fault);

  if (fault == Fault::kError) reply.error = static_cast<int32_t>(FaultPlan::value());

  fuse_out_header out{};
  out.unique = r.header.unique;
  out.error = reply.error;
  if (reply.error) reply.payload.clear();
  out.len = static_cast<uint32_t>(sizeof(out) + reply.payload.size());
  if (fault == Fault::kErrorOutOfRange) {
    out.error = -5000;
    reply.payload.clear();
    out.len = sizeof(out);
  }
  if (fault == Fault::kUnknownUnique) out.unique ^= 0x5a5a000000000000ull;
  const uint32_t true_len = out.len;
  if (fault == Fault::kHeaderLenMismatch) out.len += 16;

  std::vector<std::byte> bytes(sizeof(out) + reply.payload.size());
  std::memcpy(bytes.data(), &out, sizeof(out));
  std::copy(reply.payload.begin(), reply.payload.end(), bytes.begin() + sizeof(out));
  if (writable_bytes(r.chain) < bytes.size()) {
    // The driver gave too little room: answer EOVERFLOW rather than write past its buffers.
    out.error = -EOVERFLOW;
    out.len = sizeof(out);
    bytes.resize(sizeof(out));
    std::memcpy(bytes.data(), &out, sizeof(out));
  }
  uint32_t written = scatter(r.chain, fault == Fault::kUnwrittenPayload
                                          ? std::span<const std::byte>(bytes).first(sizeof(out))
                                          : std::span<const std::byte>(bytes));
  if (fault == Fault::kHeaderLenMismatch) written = true_len;
  if (fault == Fault::kUnwrittenPayload) written = static_cast<uint32_t>(bytes.size());

  uint32_t id = r.chain.head;
  switch (fault.value_or(Fault::kDie)) {
    case Fault::kUsedIdOutOfRange:
      id = device_->queue_size(r.queue) + 7u;
      break;
    case Fault::kUsedIdNotInFlight:
      id = not_in_flight(r.queue);
      break;
    case Fault::kUsedLenBeyondBuffer:
      written = static_cast<uint32_t>(writable_bytes(r.chain) + 4096);
      break;
    case Fault::kDoubleCompletion:
      used.emplace_back(id, written);
      break;
    case Fault::kUsedIdxJump:
      used.emplace_back(id, written);
      device_->complete_all(r.queue, used);
      used.clear();
      device_->jump_used_idx(r.queue, static_cast<uint16_t>(device_->queue_size(r.queue) + 1));
      return;
    case Fault::kScribbleHeader: {
      // The in header's unique (offset 8) is where an out header keeps its unique too: spoil it
      // now, and again if the driver writes this request's reply header there after completion
      // (until a new request lands there, or for 50 ms).
      std::byte* at = nullptr;
      for (const auto& b : r.chain.buffers)
        if (!b.writable && b.len >= sizeof(fuse_in_header)) {
          at = b.ptr;
          break;
        }
      auto* unique = at ? reinterpret_cast<uint64_t*>(at + offsetof(fuse_in_header, unique)) : nullptr;
      const uint64_t garbage = ~r.header.unique;
      if (unique) __atomic_store_n(unique, garbage, __ATOMIC_RELAXED);
      {
        std::lock_guard lock(mu_);
        in_flight_[r.queue].erase(r.chain.head);
      }
      used.emplace_back(id, written);
      device_->complete_all(r.queue, used);
      used.clear();
      // Real-time while it watches, so that it is on a CPU when the driver writes there.
      sched_param rt{1}, was{};
      int policy = SCHED_OTHER;
      pthread_getschedparam(pthread_self(), &policy, &was);
      const bool raised = pthread_setschedparam(pthread_self(), SCHED_FIFO, &rt) == 0;
      const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(50);
      while (unique && std::chrono::steady_clock::now() < until) {
        const uint64_t seen = __atomic_load_n(unique, __ATOMIC_RELAXED);
        if (seen == r.header.unique) {
          __atomic_store_n(unique, garbage, __ATOMIC_RELAXED);
          break;
        }
        if (seen != garbage) break;  // the next request landed there
      }
      if (raised) pthread_setschedparam(pthread_self(), policy, &was);
      return;
    }
    default:
      break;
  }
  {
    std::lock_guard lock(mu_);
    in_flight_[r.queue].erase(r.chain.head);
  }
  used.emplace_back(id, written);
}

uint32_t FsServer::not_in_flight(unsigned queue) {
  std::lock_guard lock(mu_);
  for (uint32_t id = 0; id < device_->queue_size(queue); ++id)
    if (!in_flight_[queue].count(id)) return id;
  return 0;
}

void FsServer::on_interrupt(uint64_t unique) {
  std::optional<Request> victim;
  {
    std::lock_guard lock(mu_);
    ++interrupts_;
    auto it = std::find_if(held_.begin(), held_.end(),
                           [&](const Held& h) { return h.request.header.unique == unique; });
    if (it == held_.end()) {
      // Not held (already answered, or not yet arrived): remember it for a late arrival.
      if (options_.hold) early_interrupts_.insert(unique);
      return;
    }
    victim = std::move(it->request);
    held_.erase(it);
    ++interrupted_;
  }
  Used used;
  answer(*victim, std::nullopt, used, -EINTR);
  device_->complete_all(victim->queue, used);
}

void FsServer::release_expired() {
  std::vector<Request> due;
  {
    std::lock_guard lock(mu_);
    const auto now = std::chrono::steady_clock::now();
    for (auto it = held_.begin(); it != held_.end();) {
      if (it->release_at <= now) {
        due.push_back(std::move(it->request));
        it = held_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (Request& r : due) {
    Used used;
    answer(r, std::nullopt, used);
    device_->complete_all(r.queue, used);
  }
}

std::string FsServer::stats_text() const {
  std::lock_guard lock(mu_);
  std::ostringstream out;
  for (size_t q = 0; q < per_queue_.size(); ++q) out << "queue " << q << " requests " << per_queue_[q] << "\n";
  for (auto [op, n] : per_opcode_) out << "opcode " << opcode_name(op) << " " << n << "\n";
  out << "forget_entries " << forget_entries_ << "\nforget_nlookup " << forget_nlookup_
      << "\nforgets_while_held " << forgets_while_held_ << "\ninterrupts " << interrupts_ << "\ninterrupted " << interrupted_ << "\n";
  return out.str();
}

}  // namespace virtiofs::test
