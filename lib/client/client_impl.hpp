// What the Client's sync and async halves share: the reply parsers they pair with op builders,
// the pooled calls of async operations, and Client::Impl (the session, buffers, one verdict for
// every reply).
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <stop_token>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "client/buffer_pool.hpp"
#include "client/lookup_ledger.hpp"
#include "fs/session.hpp"
#include "fuse/ops.hpp"
#include "virtiofs/client.hpp"

namespace virtiofs {

namespace client {
template <class T>
using Parser = std::error_code (*)(const fuse::Reply&, T&);

inline std::error_code parse_none(const fuse::Reply&, std::monostate&) { return {}; }
template <class T>
std::error_code parse_value(const fuse::Reply& r, T& out) { return fuse::parse(r, out); }
inline std::error_code parse_data(const fuse::Reply& r, size_t& out) {
  out = r.data_len;
  return {};
}
inline std::error_code parse_written(const fuse::Reply& r, size_t& out) {
  uint64_t n = 0;
  auto ec = fuse::parse_count(r, fuse::Count::kWritten, n);
  out = n;
  return ec;
}

// One asynchronous call: the Call, storage for copied names, and the type-erased continuation.
struct AsyncCall : fs::Call {
  std::string names[2];
  std::function<void(AsyncCall&)> finish;
  struct Pool* pool = nullptr;
};

struct Pool {
  std::mutex mu;
  std::vector<std::unique_ptr<AsyncCall>> all;
  std::vector<AsyncCall*> free;
  AsyncCall* take() {
    std::lock_guard lock(mu);
    if (free.empty()) {
      all.push_back(std::make_unique<AsyncCall>());
      all.back()->pool = this;
      return all.back().get();
    }
    AsyncCall* c = free.back();
    free.pop_back();
    return c;
  }
  void give(AsyncCall* c) {
    c->finish = nullptr;
    std::lock_guard lock(mu);
    free.push_back(c);
  }
};

}  // namespace client

using client::AsyncCall;
using client::Parser;
using client::parse_data;
using client::parse_none;
using client::parse_value;
using client::parse_written;
using client::Pool;

struct Client::Impl {
  std::unique_ptr<fs::Session> session;
  std::shared_ptr<client::BufferPool> buffers;  // shared with the IoBuffers handed out
  client::LookupLedger ledger;                  // started at connect (Options::lookup_accounting)
  std::string tag;
  Pool pool;

  // A stop requested while the call is with the device sends FUSE_INTERRUPT; the call then
  // ends with EINTR or its real result, whichever the device gives.
  template <class T>
  std::error_code call(fuse::Frame frame, Parser<T> parse, T& out, std::stop_token stop = {}) {
    fs::SyncCall c;
    c.frame = frame;
    session->submit(c);
    {
      // Registers nothing for a token that can never stop (the default).
      std::stop_callback interrupt(stop, [&] { session->interrupt(c); });
      session->wait(c);
    }
    return result(c, parse, out);
  }
  // One verdict for sync and async calls alike: the device's errno, else the parsed reply,
  // checked against the request; a reply that breaks the protocol marks the device untrusted.
  template <class T>
  std::error_code result(const fs::Call& c, Parser<T> parse, T& out) {
    if (c.ec) return c.ec;
    std::error_code ec = parse(c.reply, out);
    if (!ec) ec = fuse::check_against_request(c.frame, c.reply);
    if (!ec) note_references(ledger, out);
    return checked(ec);
  }
  std::error_code call(fuse::Frame frame, std::stop_token stop = {}) {
    std::monostate none;
    return call<std::monostate>(frame, parse_none, none, stop);
  }
  // Parsers answer EIO only for replies that break the protocol: after one, the device is not
  // trusted with anything else.
  std::error_code checked(std::error_code ec) {
    if (ec == std::errc::io_error) session->device_misbehaved();
    return ec;
  }

  // build(AsyncCall&) fills the frame (it may point names into the call's storage).
  template <class T, class Build>
  void call_async(Build&& build, Parser<T> parse, Callback<T> done) {
    AsyncCall* c = pool.take();
    build(*c);
    c->finish = [this, parse, done = std::move(done)](AsyncCall& call) {
      T value{};
      const std::error_code ec = result(call, parse, value);
      done(ec, std::move(value));
    };
    c->on_done = [](fs::Call& base) {
      auto& call = static_cast<AsyncCall&>(base);
      call.finish(call);
      call.pool->give(&call);
    };
    session->submit(*c);
  }
  static Callback<std::monostate> unit(DoneCallback done) {
    return [done = std::move(done)](std::error_code ec, std::monostate) { done(ec); };
  }
};

}  // namespace virtiofs
