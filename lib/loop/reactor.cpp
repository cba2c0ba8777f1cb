#include "loop/reactor.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

namespace virtiofs::loop {

Reactor::Reactor(unsigned entries) {
  io_uring_params params{};
  // Only this reactor's thread completes work; let the kernel skip cross-CPU task-work IPIs.
  params.flags = IORING_SETUP_COOP_TASKRUN;
  int r = io_uring_queue_init_params(entries, &ring_, &params);
  if (r == -EINVAL) {
    params = {};
    r = io_uring_queue_init_params(entries, &ring_, &params);
  }
  if (r < 0) throw std::system_error(-r, std::system_category(), "io_uring_queue_init");
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) {
    io_uring_queue_exit(&ring_);
    throw std::system_error(errno, std::system_category(), "eventfd");
  }
  watch(wake_fd_, POLLIN, [this](int) {
    uint64_t v;
    [[maybe_unused]] ssize_t n = read(wake_fd_, &v, sizeof(v));
  });
}

Reactor::~Reactor() {
  io_uring_queue_exit(&ring_);
  close(wake_fd_);
}

void Reactor::arm(Watch* w) {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (!sqe) {
    io_uring_submit(&ring_);
    sqe = io_uring_get_sqe(&ring_);
  }
  if (multishot_ && !w->once) {
    io_uring_prep_poll_multishot(sqe, w->fd, w->events);
  } else {
    io_uring_prep_poll_add(sqe, w->fd, w->events);
  }
  io_uring_sqe_set_data(sqe, w);
}

void Reactor::watch(int fd, unsigned events, Handler handler, bool once) {
  watches_.push_back(std::make_unique<Watch>(Watch{fd, events, std::move(handler), once}));
  arm(watches_.back().get());
}

void Reactor::run() {
  while (!stopping_.load(std::memory_order_acquire)) {
    int r = io_uring_submit_and_wait(&ring_, 1);
    if (r < 0 && r != -EINTR && r != -EBUSY && r != -EAGAIN)
      throw std::system_error(-r, std::system_category(), "io_uring_submit_and_wait");
    unsigned head;
    unsigned count = 0;
    io_uring_cqe* cqe;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      ++count;
      auto* w = static_cast<Watch*>(io_uring_cqe_get_data(cqe));
      if (!w) continue;
      const int res = cqe->res;
      if (res == -EINVAL && multishot_ && !w->once) {
        multishot_ = false;  // kernel without multishot poll: fall back to one-shot polls
        arm(w);
        continue;
      }
      // A multishot poll ends without IORING_CQE_F_MORE (overflow, error): re-arm it.
      if (!w->once && !(cqe->flags & IORING_CQE_F_MORE)) arm(w);
      w->handler(res);
    }
    io_uring_cq_advance(&ring_, count);
  }
}

void Reactor::stop() {
  stopping_.store(true, std::memory_order_release);
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t n = write(wake_fd_, &one, sizeof(one));
}

}  // namespace virtiofs::loop
