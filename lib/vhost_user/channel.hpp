// One vhost-user connection: framed messages with file descriptors over a UNIX stream socket.
// Every reply is checked (reply flag, version, request it answers, exact size, no fds) before use,
// within one timeout per reply; after the first failure the channel refuses all further use.
#pragma once

#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <system_error>

#include "vhost_user/protocol.hpp"

namespace virtiofs::vhost_user {

class Channel {
 public:
  // A backend that stops answering during setup must not hang the caller: the bound for one
  // whole reply, from asking for its first byte to its last.
  static constexpr std::chrono::milliseconds kDefaultReplyTimeout{5000};

  // Connects to the backend's socket; throws std::system_error naming the path and cause.
  explicit Channel(const std::string& socket_path);
  // Adopts a connected stream socket (socketpair: tests and fuzzing); `name` appears in errors.
  Channel(int connected_fd, std::string name,
          std::chrono::milliseconds reply_timeout = kDefaultReplyTimeout)
      : fd_(connected_fd), path_(std::move(name)), reply_timeout_(reply_timeout) {}
  ~Channel();
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  int fd() const { return fd_; }

  // Sends a request with payload and fds (at most kMaxMemTableRegions). Throws on failure.
  void send(Request req, uint32_t flags, std::span<const std::byte> payload,
            std::span<const int> fds = {});
  // Receives the reply to `req` into `payload`, which must be filled exactly.
  void receive_reply(Request req, std::span<std::byte> payload);
  // Receives a reply whose size may be up to payload.size(); returns the size.
  size_t receive_reply_upto(Request req, std::span<std::byte> payload);

 private:
  // A reply of min_size..payload.size() bytes, all of it within the reply timeout.
  size_t receive_reply_sized(Request req, std::span<std::byte> payload, size_t min_size);
  void send_unguarded(Request req, uint32_t flags, std::span<const std::byte> payload,
                      std::span<const int> fds);
  // Runs one send or receive. The first failure leaves the stream at an unknown position (a
  // reply half read, a request half sent), so every later use fails at once with its cause.
  template <class F>
  auto guarded(Request req, F&& io);

  std::error_code failure_code_;
  std::string failure_;

  int fd_ = -1;
  std::string path_;
  std::chrono::milliseconds reply_timeout_ = kDefaultReplyTimeout;
};

// Validates a reply header against the request it should answer; throws std::system_error(EPROTO).
void check_reply_header(const Header& h, Request req, size_t min_size, size_t max_size);

}  // namespace virtiofs::vhost_user
