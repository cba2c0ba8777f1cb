// The backend's end of a vhost-user socketpair, played by a test step by step: it reads what the
// frontend sent (header, payload, fds) and writes replies, well-formed or not, with or without fds.
// Replies may be written before the frontend asks (the socket holds them), so most tests need no
// thread; the frontend's reply timeout bounds any test whose code under test misbehaves.
#pragma once

#include <dirent.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <optional>
#include <span>
#include <stdexcept>
#include <utility>
#include <vector>

#include "vhost_user/protocol.hpp"

namespace virtiofs::vhost_user::test {

class UniqueFd {
 public:
  explicit UniqueFd(int fd = -1) : fd_(fd) {}
  ~UniqueFd() { reset(); }
  UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }
  void reset() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

// One message as the frontend framed it.
struct Message {
  Header header{};
  std::vector<std::byte> payload;
  std::vector<UniqueFd> fds;

  Request request() const { return static_cast<Request>(header.request); }
  template <class T>
  T as() const {
    T v{};
    std::memcpy(&v, payload.data(), std::min(sizeof(v), payload.size()));
    return v;
  }
};

class Peer {
 public:
  Peer() {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
      throw std::runtime_error("socketpair");
    frontend_ = UniqueFd(sv[0]);
    backend_ = UniqueFd(sv[1]);
  }

  // The frontend's end, handed over once: the Channel or Frontend owns it from then on.
  int take_frontend_end() { return frontend_.release(); }

  // The next message the frontend sent, or nullopt if none is there within `wait` (or it hung up).
  std::optional<Message> receive(std::chrono::milliseconds wait = std::chrono::seconds(2)) {
    pollfd pfd{backend_.get(), POLLIN, 0};
    if (poll(&pfd, 1, static_cast<int>(wait.count())) != 1) return std::nullopt;
    Message m;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 16)];
    iovec iov{&m.header, sizeof(m.header)};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    // The frontend sends each message in one sendmsg: the header arrives whole, fds with it.
    if (recvmsg(backend_.get(), &msg, MSG_CMSG_CLOEXEC | MSG_WAITALL) != sizeof(m.header))
      return std::nullopt;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
      const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        m.fds.emplace_back(fd);
      }
    }
    m.payload.resize(m.header.size);
    if (m.header.size != 0 &&
        recv(backend_.get(), m.payload.data(), m.payload.size(), MSG_WAITALL) !=
            static_cast<ssize_t>(m.payload.size()))
      return std::nullopt;
    return m;
  }

  // Raw bytes, with `fds` attached to the first of them.
  void send_bytes(std::span<const std::byte> bytes, std::span<const int> fds = {}) {
    iovec iov{const_cast<std::byte*>(bytes.data()), bytes.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    std::vector<char> control(CMSG_SPACE(sizeof(int) * fds.size()));
    if (!fds.empty()) {
      msg.msg_control = control.data();
      msg.msg_controllen = control.size();
      cmsghdr* c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
      std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
    }
    if (sendmsg(backend_.get(), &msg, MSG_NOSIGNAL) != static_cast<ssize_t>(bytes.size()))
      throw std::runtime_error("peer: short send");
  }

  void send_header(uint32_t request, uint32_t flags, uint32_t size, std::span<const int> fds = {}) {
    const Header h{request, flags, size};
    send_bytes(std::as_bytes(std::span(&h, 1)), fds);
  }

  // A well-formed reply to `req` carrying `payload`, unless the flags say otherwise.
  template <class T>
  void reply(Request req, const T& payload, uint32_t flags = kVersion | kFlagReply) {
    send_header(static_cast<uint32_t>(req), flags, sizeof(T));
    send_bytes(std::as_bytes(std::span(&payload, 1)));
  }

  // The REPLY_ACK status for `req`: 0 is success.
  void ack(Request req, uint64_t status = 0) { reply(req, status); }

  void hang_up() { backend_.reset(); }

 private:
  UniqueFd frontend_;
  UniqueFd backend_;
};

// Open fds of this process, to show that none leak.
inline size_t open_fd_count() {
  size_t n = 0;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (readdir(d)) ++n;
    closedir(d);
  }
  return n;
}

}  // namespace virtiofs::vhost_user::test
