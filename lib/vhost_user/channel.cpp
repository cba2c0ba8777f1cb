#include "vhost_user/channel.hpp"

#include "virtio/setup_error.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>

namespace virtiofs::vhost_user {

const char* request_name(Request r) {
  switch (r) {
    case Request::kGetFeatures: return "GET_FEATURES";
    case Request::kSetFeatures: return "SET_FEATURES";
    case Request::kSetOwner: return "SET_OWNER";
    case Request::kSetMemTable: return "SET_MEM_TABLE";
    case Request::kSetVringNum: return "SET_VRING_NUM";
    case Request::kSetVringAddr: return "SET_VRING_ADDR";
    case Request::kSetVringBase: return "SET_VRING_BASE";
    case Request::kGetVringBase: return "GET_VRING_BASE";
    case Request::kSetVringKick: return "SET_VRING_KICK";
    case Request::kSetVringCall: return "SET_VRING_CALL";
    case Request::kSetVringErr: return "SET_VRING_ERR";
    case Request::kGetProtocolFeatures: return "GET_PROTOCOL_FEATURES";
    case Request::kSetProtocolFeatures: return "SET_PROTOCOL_FEATURES";
    case Request::kGetQueueNum: return "GET_QUEUE_NUM";
    case Request::kSetVringEnable: return "SET_VRING_ENABLE";
    case Request::kGetConfig: return "GET_CONFIG";
    case Request::kGetMaxMemSlots: return "GET_MAX_MEM_SLOTS";
    case Request::kAddMemReg: return "ADD_MEM_REG";
  }
  return "UNKNOWN";
}

Channel::Channel(const std::string& socket_path) : path_(socket_path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.empty() || socket_path.size() >= sizeof(addr.sun_path))
    fail(ENAMETOOLONG, "vhost-user socket path '" + socket_path + "' is empty or too long");
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) fail(errno, "socket");
  if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    int e = errno;
    close(fd_);
    fd_ = -1;
    const char* hint = e == ENOENT        ? " (no such socket: is the backend running?)"
                       : e == ECONNREFUSED ? " (nobody is listening: the backend is gone)"
                       : e == ENOTSOCK     ? " (that path is not a socket)"
                                           : "";
    fail(e, "cannot connect to vhost-user socket '" + socket_path + "'" + hint);
  }
}

Channel::~Channel() {
  if (fd_ >= 0) close(fd_);
}

template <class F>
auto Channel::guarded(Request req, F&& io) {
  if (failure_code_)
    throw std::system_error(failure_code_, std::string("vhost-user ") + request_name(req) +
                                               ": the connection failed earlier (" + failure_ +
                                               ")");
  try {
    return io();
  } catch (const std::system_error& e) {
    failure_code_ = e.code();
    failure_ = e.what();
    throw;
  }
}

void Channel::send(Request req, uint32_t flags, std::span<const std::byte> payload,
                   std::span<const int> fds) {
  guarded(req, [&] { send_unguarded(req, flags, payload, fds); });
}

void Channel::send_unguarded(Request req, uint32_t flags, std::span<const std::byte> payload,
                             std::span<const int> fds) {
  Header h{static_cast<uint32_t>(req), kVersion | flags, static_cast<uint32_t>(payload.size())};
  iovec iov[2] = {{&h, sizeof(h)},
                  {const_cast<std::byte*>(payload.data()), payload.size()}};
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = payload.empty() ? 1 : 2;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxMemTableRegions)] = {};
  if (!fds.empty()) {
    if (fds.size() > kMaxMemTableRegions) fail(EINVAL, "too many fds for one vhost-user message");
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  const size_t total = sizeof(h) + payload.size();
  ssize_t n;
  do {
    n = sendmsg(fd_, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) fail(errno, std::string("vhost-user ") + request_name(req) + ": backend gone");
  if (static_cast<size_t>(n) != total)
    fail(EPROTO, std::string("vhost-user ") + request_name(req) + ": short send");
}

namespace {

using Deadline = std::chrono::steady_clock::time_point;

// Milliseconds left until `deadline`, rounded up so that poll never wakes just before it.
int ms_until(Deadline deadline) {
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
  return static_cast<int>(std::max<std::chrono::milliseconds::rep>(left.count(), 0));
}

void read_exact(int fd, void* buf, size_t len, Request req, Deadline deadline) {
  auto* p = static_cast<char*>(buf);
  while (len > 0) {
    pollfd pfd{fd, POLLIN, 0};
    int r = poll(&pfd, 1, ms_until(deadline));
    if (r < 0 && errno == EINTR) continue;
    if (r == 0)
      fail(ETIMEDOUT, std::string("vhost-user ") + request_name(req) + ": backend did not reply");
    if (r < 0) fail(errno, "poll on vhost-user socket");
    msghdr msg{};
    iovec iov{p, len};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 8)];
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    ssize_t n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail(errno, std::string("vhost-user ") + request_name(req) + ": receive");
    if (n == 0)
      fail(ECONNRESET, std::string("vhost-user ") + request_name(req) +
                           ": backend closed the connection");
    // No reply we ask for carries fds: close any so a hostile backend cannot leak them into us,
    // and refuse the reply (a backend sending them is confused about the protocol). Fds beyond
    // the control buffer (MSG_CTRUNC) are never installed: the kernel drops them.
    size_t fds = 0;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
        size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; ++i) {
          int f;
          std::memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
          close(f);
        }
        fds += count;
      }
    }
    if (fds > 0 || (msg.msg_flags & MSG_CTRUNC))
      fail(EPROTO, std::string("vhost-user ") + request_name(req) + ": reply carried " +
                       std::to_string(fds) + ((msg.msg_flags & MSG_CTRUNC) ? " or more" : "") +
                       " file descriptors, none expected");
    p += n;
    len -= static_cast<size_t>(n);
  }
}

}  // namespace

void check_reply_header(const Header& h, Request req, size_t min_size, size_t max_size) {
  const std::string what = std::string("vhost-user ") + request_name(req) + ": malformed reply (";
  if ((h.flags & kFlagVersionMask) != kVersion)
    fail(EPROTO, what + "version " + std::to_string(h.flags & kFlagVersionMask) + ", expected " +
                     std::to_string(kVersion) + ")");
  if (!(h.flags & kFlagReply)) fail(EPROTO, what + "reply flag missing)");
  if (h.request != static_cast<uint32_t>(req))
    fail(EPROTO, what + "answers " + request_name(static_cast<Request>(h.request)) + " (" +
                     std::to_string(h.request) + "))");
  if (h.size < min_size || h.size > max_size)
    fail(EPROTO, what + "payload of " + std::to_string(h.size) + " bytes, expected " +
                     (min_size == max_size ? "" : "at most ") + std::to_string(max_size) + ")");
}

void Channel::receive_reply(Request req, std::span<std::byte> payload) {
  receive_reply_sized(req, payload, payload.size());
}

size_t Channel::receive_reply_upto(Request req, std::span<std::byte> payload) {
  return receive_reply_sized(req, payload, 0);
}

size_t Channel::receive_reply_sized(Request req, std::span<std::byte> payload, size_t min_size) {
  return guarded(req, [&] {
    // One bound for the whole reply: a backend trickling bytes cannot stretch it.
    const Deadline deadline = std::chrono::steady_clock::now() + reply_timeout_;
    Header h;
    read_exact(fd_, &h, sizeof(h), req, deadline);
    check_reply_header(h, req, min_size, payload.size());
    read_exact(fd_, payload.data(), h.size, req, deadline);
    return size_t{h.size};
  });
}

}  // namespace virtiofs::vhost_user
