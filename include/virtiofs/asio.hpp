// Boost.Asio front end for virtiofs::Client (header-only; needs the Boost headers, 1.81 or
// later, and no Boost library to link):
//
//   boost::asio::io_context io;
//   virtiofs::asio::Connection fs(io, *client);         // an I/O object, like a socket
//   Entry e = co_await fs.async_lookup(kRootInode, "a.txt", boost::asio::use_awaitable);
//
// Every inode operation of Client with a reply is here as async_X, with the parameters of
// Client's asynchronous form and a completion token in place of the callback: callbacks,
// use_future, use_awaitable, deferred, as_tuple, ... . The signature is
// void(boost::system::error_code, T), or void(boost::system::error_code) for an operation with
// no result; errors are the Client's errno values in boost::system::system_category (they
// compare equal to boost::system::errc and std::errc values alike).
//
// Completion: the handler runs on its associated executor (a strand, a coroutine's executor),
// or the Connection's executor when it has none; the operation counts as work on that executor
// until the handler ran. It never runs inside the async_X call itself.
//
// Cancellation (per operation: bind_cancellation_slot, co_spawn, awaitable operators,
// parallel_group): a terminal cancellation stops the Client call through its stop_token (see
// Options::interrupts); when that ends it with EINTR, the handler gets
// boost::asio::error::operation_aborted. A request already with the device may have taken
// effect, so partial and total cancellation are not offered (a request for them alone is
// ignored). As for Asio's own objects, emit the signal where the handler will run: its strand,
// or an io_context run by one thread.
//
// With Options::app_reaps_completions and a CompletionReaper (below) on the same executor, the
// library's callbacks run there too and a handler runs straight from the reaping, with no
// thread hand-over (the fastest setup; see docs/benchmarks.md).
//
// Lifetimes: the Client and the Connection must outlive the operations, and the executor's
// context must outlive the Client's calls (close the Client before destroying the io_context).
// Names (string_view) are copied when the operation starts: with a lazy token (deferred,
// use_awaitable) only when it is launched or awaited, so keep them alive until then. Data
// buffers must stay valid until the handler runs. FORGET has no reply: call client().forget.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_allocator.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/recycling_allocator.hpp>
#include <boost/system/error_code.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <span>
#include <stop_token>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "virtiofs/client.hpp"

namespace virtiofs::asio {

namespace net = boost::asio;
using error_code = boost::system::error_code;

// A buffer for the device to fill: an Asio buffer (net::buffer(v)) or a span (IoBuffer::span()).
struct MutableBytes {
  std::span<std::byte> span;
  MutableBytes(net::mutable_buffer b) : span(static_cast<std::byte*>(b.data()), b.size()) {}
  MutableBytes(std::span<std::byte> s) : span(s) {}
};
// Bytes for the device to take.
struct ConstBytes {
  std::span<const std::byte> span;
  ConstBytes(net::const_buffer b) : span(static_cast<const std::byte*>(b.data()), b.size()) {}
  ConstBytes(net::mutable_buffer b) : ConstBytes(net::const_buffer(b)) {}
  ConstBytes(std::span<const std::byte> s) : span(s) {}
  ConstBytes(std::span<std::byte> s) : span(s) {}  // IoBuffer::span()
};

// errno values, whichever std category carries them (the device's come in system_category, the
// library's own, made with std::errc, in generic_category): one Boost category for both.
inline error_code to_error_code(std::error_code ec) {
  if (ec.category() == std::system_category() || ec.category() == std::generic_category())
    return {ec.value(), boost::system::system_category()};
  return error_code(ec);
}

namespace detail {

template <class Result>
struct Signature {
  using type = void(error_code, Result);
};
template <>
struct Signature<void> {
  using type = void(error_code);
};

// One operation in flight: the handler, work on its executor, the stop_source its cancellation
// slot drives (only when one is connected), and the result on its way to the handler. Allocated
// with the handler's allocator; freed on the handler's executor before the handler runs.
template <class Handler, class IoExecutor, class Result>
class Operation {
 public:
  using Executor = net::associated_executor_t<Handler, IoExecutor>;
  // The handler's allocator, else Asio's per-thread recycling one (as Asio's own operations).
  using HandlerAllocator = net::associated_allocator_t<Handler, net::recycling_allocator<void>>;
  using Allocator =
      typename std::allocator_traits<HandlerAllocator>::template rebind_alloc<Operation>;
  static HandlerAllocator allocator_of(const Handler& h) {
    return net::get_associated_allocator(h, net::recycling_allocator<void>());
  }

  template <class H, class Call>
  static void start(H&& handler, const IoExecutor& io, Client& client, Call& call) {
    Allocator alloc(allocator_of(handler));
    Operation* op = std::allocator_traits<Allocator>::allocate(alloc, 1);
    try {
      ::new (static_cast<void*>(op)) Operation(std::forward<H>(handler), io);
    } catch (...) {
      std::allocator_traits<Allocator>::deallocate(alloc, op, 1);
      throw;
    }
    try {
      op->begin(client, call);
    } catch (...) {  // nothing was sent (bad_alloc): no handler, no work, no slot left behind
      if (op->stop_) net::get_associated_cancellation_slot(op->handler_).clear();
      op->destroy();
      throw;
    }
  }

 private:
  using Value = std::conditional_t<std::is_void_v<Result>, std::monostate, Result>;

  // Runs where the signal is emitted (the handler's executor, by Asio's rule).
  struct Canceller {
    Operation* op;
    void operator()(net::cancellation_type type) const {
      if ((type & net::cancellation_type::terminal) == net::cancellation_type::none) return;
      op->stop_->request_stop();  // without interrupts the call may end in here: it posts
    }
  };
  // Runs on the handler's executor. Owns the operation until called: an executor that drops it
  // (an io_context destroyed with it queued) frees the handler and its work instead of leaking.
  struct Completion {
    Operation* op;
    explicit Completion(Operation* o) : op(o) {}
    Completion(Completion&& other) noexcept : op(std::exchange(other.op, nullptr)) {}
    Completion& operator=(Completion&&) = delete;
    ~Completion() {
      if (op) op->destroy();
    }
    using allocator_type = HandlerAllocator;
    allocator_type get_allocator() const noexcept { return allocator_of(op->handler_); }
    void operator()() { std::exchange(op, nullptr)->complete(); }
  };

  Operation(Handler&& handler, const IoExecutor& io)
      : handler_(std::move(handler)), work_(net::get_associated_executor(handler_, io)) {}

  template <class Call>
  void begin(Client& client, Call& call) {
    std::stop_token token;
    auto slot = net::get_associated_cancellation_slot(handler_);
    if (slot.is_connected()) {
      stop_.emplace();
      token = stop_->get_token();
      slot.template emplace<Canceller>(Canceller{this});
    }
    if constexpr (std::is_void_v<Result>)
      call(client, [this](std::error_code ec) { finish(ec); }, std::move(token));
    else
      call(client, [this](std::error_code ec, Result v) { value_ = std::move(v), finish(ec); },
           std::move(token));
  }

  // The library's callback (a library thread, the app's reaping thread, the stopping thread, or
  // inline in the async_X call). Always a post, never the handler itself: library callbacks
  // must not throw and must not close the Client, and a handler may do both. On the handler's
  // own thread a post is a push onto its executor's queue, not a thread hop.
  void finish(std::error_code ec) {
    ec_ = ec;
    net::post(work_.get_executor(), Completion(this));
  }

  void destroy() {
    Allocator alloc(allocator_of(handler_));
    this->~Operation();
    std::allocator_traits<Allocator>::deallocate(alloc, this, 1);
  }

  void complete() {
    if (stop_) net::get_associated_cancellation_slot(handler_).clear();  // before the handler
    const error_code ec = ec_ == std::errc::interrupted && stop_ && stop_->stop_requested()
                              ? error_code(net::error::operation_aborted)
                              : to_error_code(ec_);
    auto work = std::move(work_);  // declared first: released after the handler is gone
    Handler handler(std::move(handler_));
    Value value(std::move(value_));
    Allocator alloc(allocator_of(handler));
    this->~Operation();
    std::allocator_traits<Allocator>::deallocate(alloc, this, 1);
    if constexpr (std::is_void_v<Result>)
      std::move(handler)(ec);
    else
      std::move(handler)(ec, std::move(value));
  }

  Handler handler_;
  net::executor_work_guard<Executor> work_;
  std::optional<std::stop_source> stop_;
  std::error_code ec_;
  Value value_{};
};

template <class IoExecutor, class Result>
struct Initiation {
  using executor_type = IoExecutor;
  IoExecutor io;
  Client* client;
  executor_type get_executor() const noexcept { return io; }
  template <class Handler, class Call>
  void operator()(Handler&& handler, Call call) const {
    Operation<std::decay_t<Handler>, IoExecutor, Result>::start(std::forward<Handler>(handler), io,
                                                                *client, call);
  }
};

}  // namespace detail

// A Client seen as an Asio I/O object: the operations below, with `executor` for handlers that
// have none of their own. Cheap to copy; does not own the Client.
template <class Executor = net::any_io_executor>
class BasicConnection {
 public:
  using executor_type = Executor;
  template <class Other>
  struct rebind_executor {
    using other = BasicConnection<Other>;
  };

  BasicConnection(const executor_type& executor, Client& client) : ex_(executor), client_(&client) {}
  template <class Context>
    requires std::is_convertible_v<Context&, net::execution_context&>
  BasicConnection(Context& context, Client& client) : ex_(context.get_executor()), client_(&client) {}
  // From another executor type (use_awaitable_t<>::as_default_on(connection) makes one).
  template <class Other>
    requires std::is_convertible_v<const Other&, Executor>
  BasicConnection(const BasicConnection<Other>& other)
      : ex_(other.get_executor()), client_(&other.client()) {}

  executor_type get_executor() const noexcept { return ex_; }
  Client& client() const noexcept { return *client_; }

  // Every operation: Client's asynchronous form, the callback replaced by a completion token
  // (the executor type's default one, if it has one: see as_default_on).
  using Default = net::default_completion_token_t<Executor>;
  using Stop = std::stop_token;
  // clang-format off
  template <class T = Default> auto async_lookup(Inode parent, std::string_view name, T&& token = Default()) {
    return start<Entry, T>(token, [=](Client& c, auto done, Stop s) { c.lookup(parent, name, done, s); }); }
  template <class T = Default> auto async_getattr(Inode inode, T&& token = Default()) {
    return start<Attr, T>(token, [=](Client& c, auto done, Stop s) { c.getattr(inode, done, s); }); }
  template <class T = Default> auto async_setattr(Inode inode, const SetAttr& attr, T&& token = Default()) {
    return start<Attr, T>(token, [=](Client& c, auto done, Stop s) { c.setattr(inode, attr, done, s); }); }
  template <class T = Default> auto async_readlink(Inode inode, T&& token = Default()) {
    return start<std::string, T>(token, [=](Client& c, auto done, Stop s) { c.readlink(inode, done, s); }); }
  template <class T = Default> auto async_symlink(Inode parent, std::string_view name, std::string_view target, T&& token = Default()) {
    return start<Entry, T>(token, [=](Client& c, auto done, Stop s) { c.symlink(parent, name, target, done, s); }); }
  template <class T = Default> auto async_mknod(Inode parent, std::string_view name, uint32_t mode, uint32_t rdev, T&& token = Default()) {
    return start<Entry, T>(token, [=](Client& c, auto done, Stop s) { c.mknod(parent, name, mode, rdev, done, s); }); }
  template <class T = Default> auto async_mkdir(Inode parent, std::string_view name, uint32_t mode, T&& token = Default()) {
    return start<Entry, T>(token, [=](Client& c, auto done, Stop s) { c.mkdir(parent, name, mode, done, s); }); }
  template <class T = Default> auto async_unlink(Inode parent, std::string_view name, T&& token = Default()) {
    return start<void, T>(token, [=](Client& c, auto done, Stop s) { c.unlink(parent, name, done, s); }); }
  template <class T = Default> auto async_rmdir(Inode parent, std::string_view name, T&& token = Default()) {
    return start<void, T>(token, [=](Client& c, auto done, Stop s) { c.rmdir(parent, name, done, s); }); }
  template <class T = Default> auto async_rename(Inode olddir, std::string_view oldname, Inode newdir, std::string_view newname, uint32_t flags, T&& token = Default()) {
    return start<void, T>(token, [=](Client& c, auto done, Stop s) { c.rename(olddir, oldname, newdir, newname, flags, done, s); }); }
  template <class T = Default> auto async_link(Inode inode, Inode newparent, std::string_view newname, T&& token = Default()) {
    return start<Entry, T>(token, [=](Client& c, auto done, Stop s) { c.link(inode, newparent, newname, done, s); }); }
  template <class T = Default> auto async_open(Inode inode, uint32_t flags, T&& token = Default()) {
    return start<OpenFile, T>(token, [=](Client& c, auto done, Stop s) { c.open(inode, flags, done, s); }); }
  template <class T = Default> auto async_create(Inode parent, std::string_view name, uint32_t flags, uint32_t mode, T&& token = Default()) {
    return start<Created, T>(token, [=](Client& c, auto done, Stop s) { c.create(parent, name, flags, mode, done, s); }); }
  template <class T = Default> auto async_read(Inode inode, uint64_t fh, uint64_t offset, MutableBytes buf, T&& token = Default()) {
    return start<size_t, T>(token, [=](Client& c, auto done, Stop s) { c.read(inode, fh, offset, buf.span, done, s); }); }
  template <class T = Default> auto async_write(Inode inode, uint64_t fh, uint64_t offset, ConstBytes data, T&& token = Default()) {
    return start<size_t, T>(token, [=](Client& c, auto done, Stop s) { c.write(inode, fh, offset, data.span, done, s); }); }
  template <class T = Default> auto async_statfs(Inode inode, T&& token = Default()) {
    return start<StatFs, T>(token, [=](Client& c, auto done, Stop s) { c.statfs(inode, done, s); }); }
  template <class T = Default> auto async_release(Inode inode, uint64_t fh, uint32_t flags, T&& token = Default()) {
    return start<void, T>(token, [=](Client& c, auto done, Stop s) { c.release(inode, fh, flags, done, s); }); }
  template <class T = Default> auto async_fsync(Inode inode, uint64_t fh, bool datasync, T&& token = Default()) {
    return start<void, T>(token, [=](Client& c, auto done, Stop s) { c.fsync(inode, fh, datasync, done, s); }); }
  template <class T = Default> auto async_flush(Inode inode, uint64_t fh, uint64_t lock_owner, T&& token = Default()) {
    return start<void, T>(token, [=](Client& c, auto done, Stop s) { c.flush(inode, fh, lock_owner, done, s); }); }
  template <class T = Default> auto async_setxattr(Inode inode, std::string_view name, ConstBytes value, uint32_t flags, T&& token = Default()) {
    return start<void, T>(token, [=](Client& c, auto done, Stop s) { c.setxattr(inode, name, value.span, flags, done, s); }); }
  template <class T = Default> auto async_getxattr(Inode inode, std::string_view name, MutableBytes value, T&& token = Default()) {
    return start<size_t, T>(token, [=](Client& c, auto done, Stop s) { c.getxattr(inode, name, value.span, done, s); }); }
  template <class T = Default> auto async_listxattr(Inode inode, MutableBytes list, T&& token = Default()) {
    return start<size_t, T>(token, [=](Client& c, auto done, Stop s) { c.listxattr(inode, list.span, done, s); }); }
  template <class T = Default> auto async_removexattr(Inode inode, std::string_view name, T&& token = Default()) {
    return start<void, T>(token, [=](Client& c, auto done, Stop s) { c.removexattr(inode, name, done, s); }); }
  template <class T = Default> auto async_opendir(Inode inode, T&& token = Default()) {
    return start<OpenFile, T>(token, [=](Client& c, auto done, Stop s) { c.opendir(inode, done, s); }); }
  template <class T = Default> auto async_readdir(Inode inode, uint64_t fh, uint64_t offset, T&& token = Default()) {
    return start<std::vector<DirEntry>, T>(token, [=](Client& c, auto done, Stop s) { c.readdir(inode, fh, offset, done, s); }); }
  template <class T = Default> auto async_readdirplus(Inode inode, uint64_t fh, uint64_t offset, T&& token = Default()) {
    return start<std::vector<std::pair<DirEntry, Entry>>, T>(token, [=](Client& c, auto done, Stop s) { c.readdirplus(inode, fh, offset, done, s); }); }
  template <class T = Default> auto async_releasedir(Inode inode, uint64_t fh, T&& token = Default()) {
    return start<void, T>(token, [=](Client& c, auto done, Stop s) { c.releasedir(inode, fh, done, s); }); }
  template <class T = Default> auto async_fsyncdir(Inode inode, uint64_t fh, bool datasync, T&& token = Default()) {
    return start<void, T>(token, [=](Client& c, auto done, Stop s) { c.fsyncdir(inode, fh, datasync, done, s); }); }
  template <class T = Default> auto async_access(Inode inode, uint32_t mask, T&& token = Default()) {
    return start<void, T>(token, [=](Client& c, auto done, Stop s) { c.access(inode, mask, done, s); }); }
  template <class T = Default> auto async_fallocate(Inode inode, uint64_t fh, uint64_t offset, uint64_t length, uint32_t mode, T&& token = Default()) {
    return start<void, T>(token, [=](Client& c, auto done, Stop s) { c.fallocate(inode, fh, offset, length, mode, done, s); }); }
  template <class T = Default> auto async_lseek(Inode inode, uint64_t fh, uint64_t offset, uint32_t whence, T&& token = Default()) {
    return start<uint64_t, T>(token, [=](Client& c, auto done, Stop s) { c.lseek(inode, fh, offset, whence, done, s); }); }
  template <class T = Default> auto async_copy_file_range(Inode in_inode, uint64_t in_fh, uint64_t in_off, Inode out_inode, uint64_t out_fh, uint64_t out_off, uint64_t len, T&& token = Default()) {
    return start<uint64_t, T>(token, [=](Client& c, auto done, Stop s) { c.copy_file_range(in_inode, in_fh, in_off, out_inode, out_fh, out_off, len, done, s); }); }
  template <class T = Default> auto async_getlk(Inode inode, uint64_t fh, uint64_t owner, const Lock& lock, T&& token = Default()) {
    return start<Lock, T>(token, [=](Client& c, auto done, Stop s) { c.getlk(inode, fh, owner, lock, done, s); }); }
  template <class T = Default> auto async_setlk(Inode inode, uint64_t fh, uint64_t owner, const Lock& lock, bool wait, T&& token = Default()) {
    return start<void, T>(token, [=](Client& c, auto done, Stop s) { c.setlk(inode, fh, owner, lock, wait, done, s); }); }
  // clang-format on

 private:
  // The one initiation: `call(client, library_callback, stop_token)` makes the Client call.
  template <class Result, class Token, class Call>
  auto start(Token& token, Call call) {  // Token: as given (an lvalue is copied, not moved)
    return net::async_initiate<Token, typename detail::Signature<Result>::type>(
        detail::Initiation<Executor, Result>{ex_, client_}, token, std::move(call));
  }

  executor_type ex_;
  Client* client_;
};

using Connection = BasicConnection<>;

// Reaps a Client's request queues on an executor, for a client connected with
// Options::app_reaps_completions: every completion fd is watched (an Asio descriptor) and
// processed there, so the library's callbacks, and with them the handlers above, run on the
// executor's threads with no hand-over from a library thread. Watches until stop() or
// destruction; both belong where its handlers run (the executor's thread, or with the
// io_context not running), and the Client must outlive the watching. Use it on an io_context
// run by one thread, or on a strand: its stop() is not synchronised with another thread's
// processing.
template <class Executor = net::any_io_executor>
class BasicCompletionReaper {
 public:
  BasicCompletionReaper(const Executor& executor, Client& client) {
    std::vector<int> seen;
    try {
      for (unsigned q = 0; q < client.num_request_queues(); ++q) {
        const int fd = client.completion_fd(q);  // queues sharing an interrupt share it
        if (std::find(seen.begin(), seen.end(), fd) != seen.end()) continue;
        seen.push_back(fd);
        // The descriptor closes its own copy, not the Client's.
        const int own = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (own < 0) throw boost::system::system_error(errno, boost::system::system_category(), "dup");
        watches_.push_back(std::make_shared<Watch>(executor, own, client, q));
        arm(watches_.back());
        // What came before the wait, processed where the callbacks belong.
        net::post(executor, [w = watches_.back()] {
          if (w->client) w->client->process_completions(w->queue);
        });
      }
    } catch (...) {
      stop();
      throw;
    }
  }
  template <class Context>
    requires std::is_convertible_v<Context&, net::execution_context&>
  BasicCompletionReaper(Context& context, Client& client)
      : BasicCompletionReaper(context.get_executor(), client) {}
  ~BasicCompletionReaper() { stop(); }
  BasicCompletionReaper(const BasicCompletionReaper&) = delete;
  BasicCompletionReaper& operator=(const BasicCompletionReaper&) = delete;

  void stop() {
    for (auto& w : watches_) {
      w->client = nullptr;  // a wait already completed does nothing when its handler runs
      error_code ignored;
      w->fd.close(ignored);
    }
    watches_.clear();
  }

 private:
  struct Watch {
    net::posix::stream_descriptor fd;
    Client* client;
    unsigned queue;
    Watch(const Executor& ex, int own, Client& c, unsigned q) : fd(ex, own), client(&c), queue(q) {}
  };
  // Wait first, then process: whatever comes while processing fires the wait (Asio re-checks
  // readiness when a wait is queued, and the fd stays readable until processed).
  static void arm(const std::shared_ptr<Watch>& w) {
    w->fd.async_wait(net::posix::stream_descriptor::wait_read, [w](const error_code& ec) {
      if (ec || w->client == nullptr) return;
      arm(w);
      w->client->process_completions(w->queue);
    });
  }
  std::vector<std::shared_ptr<Watch>> watches_;
};

using CompletionReaper = BasicCompletionReaper<>;

}  // namespace virtiofs::asio
