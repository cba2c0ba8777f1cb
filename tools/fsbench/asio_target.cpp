// The library target's stat_each through virtiofs/asio.hpp: the same LOOKUP+FORGET per name as
// the callback form, from `depth` coroutines that each co_await one lookup at a time.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <atomic>
#include <boost/asio/system_executor.hpp>
#include <condition_variable>
#include <mutex>
#include <optional>

#include "target.hpp"
#include "virtiofs/asio.hpp"

namespace virtiofs::bench {

bool asio_stat_each(Client& client, Inode dir, const std::vector<std::string>& names,
                    unsigned depth, bool reap) {
  namespace net = boost::asio;
  net::io_context io(1);  // run by this thread only: `next`, `ok`, `ended` need no lock
  virtiofs::asio::Connection fs(io, client);
  std::optional<virtiofs::asio::CompletionReaper> reaper;
  if (reap) reaper.emplace(io, client);
  size_t next = 0;
  unsigned ended = 0;
  bool ok = true;
  auto worker = [&]() -> net::awaitable<void> {
    while (next < names.size()) {
      const Entry e = co_await fs.async_lookup(dir, names[next++], net::use_awaitable);
      client.forget(e.inode, 1);
    }
  };
  for (unsigned i = 0; i < depth; ++i)
    net::co_spawn(io, worker(), [&](std::exception_ptr error) {
      ok &= !error;
      if (++ended == depth && reaper) reaper->stop();  // its waits are all that is left
    });
  io.run();  // until every coroutine ended: the pending lookups keep it running
  return ok && next >= names.size();
}

bool asio_inline_stat_each(Client& client, Inode dir, const std::vector<std::string>& names,
                           unsigned depth) {
  namespace net = boost::asio;
  using Executor = net::system_executor;  // runs a handler wherever it is dispatched from
  virtiofs::asio::BasicConnection<Executor> fs(Executor(), client);
  std::atomic<size_t> next{0};
  std::atomic<bool> ok{true};
  std::mutex mu;
  std::condition_variable cv;
  unsigned ended = 0;  // guarded by mu
  auto worker = [&]() -> net::awaitable<void, Executor> {
    for (size_t i; (i = next.fetch_add(1)) < names.size();) {
      const Entry e = co_await fs.async_lookup(dir, names[i], net::use_awaitable_t<Executor>());
      client.forget(e.inode, 1);
    }
  };
  for (unsigned i = 0; i < depth; ++i)
    net::co_spawn(Executor(), worker(), [&](std::exception_ptr error) {
      if (error) ok = false;
      std::lock_guard lock(mu);
      if (++ended == depth) cv.notify_all();
    });
  std::unique_lock lock(mu);
  cv.wait(lock, [&] { return ended == depth; });
  return ok;
}

}  // namespace virtiofs::bench
