// libFuzzer: whatever a vhost-user backend sends back. The bytes arrive on a socketpair; the
// channel must accept only a well-framed reply to the request it asked, of the exact size, or
// throw. Never read past what arrived, never hang (the peer's end is shut after the bytes).
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <system_error>

#include "vhost_user/channel.hpp"

using namespace virtiofs::vhost_user;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 || size > 4096) return 0;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return 0;
  if (write(sv[1], data + 1, size - 1) != static_cast<ssize_t>(size - 1)) {
    close(sv[0]);
    close(sv[1]);
    return 0;
  }
  shutdown(sv[1], SHUT_WR);
  Channel channel(sv[0], "fuzz");  // owns sv[0]
  try {
    switch (data[0] % 3) {
      case 0: {
        uint64_t v;
        channel.receive_reply(Request::kGetFeatures, std::as_writable_bytes(std::span(&v, 1)));
        break;
      }
      case 1: {
        VringState s;
        channel.receive_reply(Request::kGetVringBase, std::as_writable_bytes(std::span(&s, 1)));
        break;
      }
      default: {
        ConfigSpace c;
        const size_t n = channel.receive_reply_upto(Request::kGetConfig, std::as_writable_bytes(std::span(&c, 1)));
        if (n > sizeof(c)) __builtin_trap();
      }
    }
  } catch (const std::system_error&) {
    // Refused: what a malformed reply must get.
  }
  close(sv[1]);
  return 0;
}
