// Client::Impl: the session and buffers behind a Client, and the two ways any operation
// (operations.hpp) runs — waited for on a stack SyncCall, or started on a pooled AsyncCall —
// with one verdict for both and one cancellation rule.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "client/buffer_pool.hpp"
#include "client/cache_hooks.hpp"
#include "client/file_releases.hpp"
#include "client/lookup_ledger.hpp"
#include "client/path_cache.hpp"
#include "client/file_operations.hpp"
#include "client/operations.hpp"
#include "fs/session.hpp"
#include "log/log.hpp"
#include "virtiofs/client.hpp"

namespace virtiofs {

namespace client {

inline std::error_code eintr() { return std::make_error_code(std::errc::interrupted); }

// A reply that broke the protocol after partial parsing must not leak the lookup references it
// handed out (READDIRPLUS entries before the bad record).
template <class T>
void give_back(fs::Session&, T&) {}
inline void give_back(fs::Session& session, std::vector<std::pair<DirEntry, Entry>>& entries) {
  for (auto& [d, e] : entries)
    if (e.inode != 0 && e.inode != kRootInode) session.forget(e.inode, 1);
  entries.clear();
}

template <class Op>
struct CallPool;

// What an operation's asynchronous caller is handed: a DoneCallback when it produces nothing.
template <class Result>
using DoneFor = std::conditional_t<std::is_same_v<Result, std::monostate>, DoneCallback,
                                   Callback<Result>>;
template <class Result>
void finish(DoneFor<Result>& done, std::error_code ec, Result&& value) {
  if constexpr (std::is_same_v<Result, std::monostate>)
    done(ec);
  else
    done(ec, std::move(value));
}

// One asynchronous call of operation Op: the call, the operation with its own copies of the
// names it references, the user's callback and the stop registration. Two references keep it
// from the pool: the submitter's (until its stop registration is in place) and the completion's
// (until the callback returned); the last one out unregisters the stop callback — waiting for
// one running on another thread — and only then recycles the call, so a cancellation never
// reaches a call that was reused.
template <class Op>
struct AsyncCall : fs::Call {
  struct Stopper {
    struct Runner* runner;
    AsyncCall* call;
    void operator()() const noexcept;
  };
  std::optional<Op> op;
  std::string names[2];
  DoneFor<typename Op::Result> done;
  std::optional<std::stop_callback<Stopper>> on_stop;
  std::atomic<int> refs{0};
  uint64_t epoch = 0;  // the path cache's when sent
  struct Runner* runner = nullptr;
  CallPool<Op>* pool = nullptr;

  void release();
};

// Recycled calls of one operation: after warm-up, an asynchronous call allocates nothing.
template <class Op>
struct CallPool {
  std::mutex mu;  // guards both vectors
  std::vector<std::unique_ptr<AsyncCall<Op>>> all;
  std::vector<AsyncCall<Op>*> free;
  AsyncCall<Op>* take() {
    std::lock_guard lock(mu);
    if (free.empty()) {
      all.push_back(std::make_unique<AsyncCall<Op>>());
      all.back()->pool = this;
      return all.back().get();
    }
    AsyncCall<Op>* c = free.back();
    free.pop_back();
    return c;
  }
  void give(AsyncCall<Op>* c) {
    std::lock_guard lock(mu);
    free.push_back(c);
  }
};

template <class... Ops>
using CallPools = std::tuple<CallPool<Ops>...>;
using AllCallPools =
    CallPools<op::Lookup, op::Mknod, op::Mkdir, op::Symlink, op::Link, op::Unlink, op::Rmdir,
              op::Rename, op::Getattr, op::Setattr, op::Readlink, op::Access, op::Statfs,
              op::Setxattr, op::Getxattr, op::Listxattr, op::Removexattr, op::Open, op::Create,
              op::Read, op::Write, op::Release, op::Fsync, op::Flush, op::Fallocate, op::Lseek,
              op::CopyFileRange, op::Getlk, op::Setlk, op::Opendir, op::Releasedir, op::Fsyncdir,
              op::Readdir, op::Readdirplus>;

// Runs operations on a session: what Client::Impl adds to it is buffers and names.
struct Runner {
  std::unique_ptr<fs::Session> session;
  bool interrupts = false;  // Options::interrupts
  LookupLedger ledger;      // started at connect (Options::lookup_accounting)
  PathCache cache;          // started at connect (Options::path_cache_entries)
  AllCallPools pools;

  // Gives back references this library took itself: a walk's own, or the path cache's. One
  // the ledger refuses is a bug of this library's: reported, never sent (virtiofsd aborts).
  void forget_ref(Inode inode, uint64_t n, bool cached = false) {
    if (inode == kRootInode || n == 0) return;
    if (cached ? ledger.from_cache(inode, n) : ledger.take(inode, n))
      session->forget(inode, n);
    else
      log::warn("path layer: a FORGET of %llu reference(s) of node %llu refused by the ledger",
                static_cast<unsigned long long>(n), static_cast<unsigned long long>(inode));
  }

  // A stop for a call the device holds: FUSE_INTERRUPT, or give the call up (Options::interrupts).
  void cancel(fs::Call& c) {
    if (interrupts)
      session->interrupt(c);
    else
      session->abandon(c);
  }

  template <class Op>
  std::error_code run(Op op, typename Op::Result& out, std::stop_token stop) {
    if (auto ec = op.check()) return ec;
    if (stop.stop_requested()) return eintr();  // never sent: nothing to interrupt
    fs::SyncCall c;
    c.frame = op.frame(session->negotiated());
    c.abandonable = op.abandonable();
    const uint64_t epoch = cache.on() ? cache.epoch() : 0;
    session->submit_for_wait(c);
    {
      // Registers nothing for a token that can never stop (the default). A stop that came
      // between the check above and here runs the cancellation now.
      std::stop_callback on_stop(stop, [&] { cancel(c); });
      session->wait(c);
    }
    return result(op, c, out, epoch);
  }

  template <class Op>
  void start(Op op, DoneFor<typename Op::Result> done, std::stop_token stop) {
    using Result = typename Op::Result;
    if (auto ec = op.check()) return finish<Result>(done, ec, Result{});
    if (stop.stop_requested()) return finish<Result>(done, eintr(), Result{});
    auto* c = std::get<CallPool<Op>>(pools).take();
    c->runner = this;
    c->op.emplace(std::move(op));
    int n = 0;
    c->op->names([&](std::string_view& name) {
      c->names[n].assign(name);
      name = c->names[n++];
    });
    c->frame = c->op->frame(session->negotiated());
    c->abandonable = c->op->abandonable();
    c->ec.clear();
    c->reply = {};
    c->done = std::move(done);
    c->refs.store(2, std::memory_order_relaxed);
    c->epoch = cache.on() ? cache.epoch() : 0;
    c->on_done = [](fs::Call& base) {
      auto& call = static_cast<AsyncCall<Op>&>(base);
      Result value{};
      const std::error_code ec = call.runner->result(*call.op, call, value, call.epoch);
      finish<Result>(call.done, ec, std::move(value));
      call.done = nullptr;
      call.release();
    };
    session->submit(*c);
    if (stop.stop_possible()) c->on_stop.emplace(stop, typename AsyncCall<Op>::Stopper{this, c});
    c->release();
  }

  // A reply to a call given up on (Session::abandon) gave something out: give it back, so that
  // cancelling leaks nothing on the device. READDIRPLUS entries are not kept (their data is
  // dropped): the device frees those references when the session ends.
  void give_back_dropped(const fs::DroppedReply& d) {
    // The device is done with it: the cache may store again (result() counted it).
    if (may_change_cached(d.opcode)) cache.mutation_settled();
    if (d.reply.header.error != 0) return;  // nothing was handed out
    Entry entry;
    OpenFile file;
    Created created;
    std::error_code ec;
    switch (d.opcode) {
      case FUSE_LOOKUP: case FUSE_MKNOD: case FUSE_MKDIR: case FUSE_SYMLINK: case FUSE_LINK:
        ec = fuse::parse(d.reply, entry);
        if (!ec) session->forget(entry.inode, 1);
        break;
      case FUSE_CREATE:
        // A node id of 0 (ENOENT) still came with an open file, as the kernel sees it.
        ec = fuse::parse(d.reply, created);
        if (!ec || ec == std::errc::no_such_file_or_directory) {
          // FORGET only once the file is released: never drop the node before its handle.
          const Inode inode = ec ? 0 : created.entry.inode;
          start(op::Release(ec ? d.nodeid : inode, created.file.fh, 0),
                [this, inode](std::error_code) {
                  if (inode != 0) session->forget(inode, 1);
                },
                {});
          ec.clear();
        }
        break;
      case FUSE_OPEN:
        ec = fuse::parse(d.reply, file);
        if (!ec) release_dropped(op::Release(d.nodeid, file.fh, 0));
        break;
      case FUSE_OPENDIR:
        ec = fuse::parse(d.reply, file);
        if (!ec) release_dropped(op::Releasedir(d.nodeid, file.fh));
        break;
      default:
        break;
    }
    // The same verdict as for a reply someone waited for: a malformed one fails the device.
    checked(ec);
  }
  template <class Op>
  void release_dropped(Op op) {
    start(std::move(op), [](std::error_code) {}, {});
  }
  // One verdict for sync and async calls alike: the device's errno, else the parsed reply,
  // checked against the request; a reply that breaks the protocol marks the device untrusted.
  // Every answer updates the path cache (cache_hooks.hpp) before the caller sees it, so a
  // path call after this one sees this one's change.
  template <class Op>
  std::error_code result(Op& op, const fs::Call& c, typename Op::Result& out, uint64_t epoch) {
    std::error_code ec = c.ec;
    if (!ec) {
      ec = op.parse(c.reply, out);
      if (!ec) ec = fuse::check_against_request(c.frame, c.reply);
      if (ec)
        give_back(*session, out);
      else
        note_references(ledger, out);
    }
    if (cache.on()) {
      // Given up while the device holds it: it may still run, after this drop (PathCache).
      if (c.left_with_device && may_change_cached(c.frame.opcode)) cache.mutation_unsettled();
      observe(cache, op, c.reply, out, ec, epoch);
    }
    return c.ec ? c.ec : checked(ec);
  }
  // Parsers answer EIO only for replies that break the protocol: after one, the device is not
  // trusted with anything else.
  std::error_code checked(std::error_code ec) {
    if (ec == std::errc::io_error) session->device_misbehaved();
    return ec;
  }
};

template <class Op>
void AsyncCall<Op>::Stopper::operator()() const noexcept {
  runner->cancel(*call);
}
template <class Op>
void AsyncCall<Op>::release() {
  if (refs.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  on_stop.reset();  // waits for a cancellation running on another thread
  pool->give(this);
}

}  // namespace client

struct Client::Impl : client::Runner {
  std::shared_ptr<client::BufferPool> buffers;  // shared with the IoBuffers handed out
  std::string tag;
  client::FileReleases file_releases;  // File::close's RELEASEs still with the device
};

}  // namespace virtiofs
