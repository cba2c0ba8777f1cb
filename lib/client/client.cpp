// Client: its lifetime, buffers, statistics. Connecting is in connect.cpp, the inode
// operations in client_ops.cpp.
#include "virtiofs/client.hpp"

#include <chrono>
#include <system_error>
#include <utility>

#include "client/buffer_pool.hpp"
#include "client/client_impl.hpp"
#include "fs/session.hpp"

namespace virtiofs {

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::~Client() { close(); }

const Negotiated& Client::negotiated() const { return impl_->session->negotiated(); }
const std::string& Client::tag() const { return impl_->tag; }
// File::close's RELEASEs (and their FORGETs) finish, then the cache's references go back
// (FORGET), all before DESTROY, all within one device timeout. Refused at once in a callback:
// the RELEASEs' replies may need this very completion thread.
void Client::close() {
  fs::Session& session = *impl_->session;
  if (session.on_completion_thread())
    throw std::system_error(std::make_error_code(std::errc::resource_deadlock_would_occur),
                            "Client::close from a completion callback (it would wait for its "
                            "own thread): close the client from another thread");
  const auto deadline = std::chrono::steady_clock::now() + impl_->file_releases.timeout();
  if (!session.failure()) impl_->file_releases.wait_until(deadline);  // failed: they end at once
  drop_caches();
  session.shutdown(deadline);
}
std::error_code Client::failure() const { return impl_->session->failure(); }
Client::Stats Client::stats() const {
  Stats s = impl_->session->stats();
  s.path_cache_hits = impl_->cache.hits();
  s.path_cache_misses = impl_->cache.misses();
  return s;
}
void Client::drop_caches() { impl_->cache.clear(); }

IoBuffer Client::allocate_buffer(size_t bytes) {
  auto piece = impl_->buffers->take(bytes);
  if (piece.empty())
    throw std::system_error(std::make_error_code(std::errc::not_enough_memory),
                            "no " + std::to_string(bytes) +
                                " bytes left in the registered memory (Options::registered_memory_bytes)");
  return IoBuffer(impl_->buffers, piece);
}

IoBuffer::~IoBuffer() {
  if (pool_) pool_->give(data_);
}
IoBuffer::IoBuffer(IoBuffer&& other) noexcept
    : pool_(std::exchange(other.pool_, nullptr)), data_(std::exchange(other.data_, {})) {}
IoBuffer& IoBuffer::operator=(IoBuffer&& other) noexcept {
  if (this != &other) {
    if (pool_) pool_->give(data_);
    pool_ = std::exchange(other.pool_, nullptr);
    data_ = std::exchange(other.data_, {});
  }
  return *this;
}
unsigned Client::num_request_queues() const { return impl_->session->num_request_queues(); }

std::error_code Client::forget(Inode inode, uint64_t nlookup) {
  if (inode == kRootInode || nlookup == 0) return {};
  if (!impl_->ledger.take(inode, nlookup))  // more than was looked up
    return std::make_error_code(std::errc::invalid_argument);
  impl_->session->forget(inode, nlookup);
  return {};
}

}  // namespace virtiofs
