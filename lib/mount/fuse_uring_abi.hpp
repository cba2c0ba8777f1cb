// The kernel's FUSE-over-io_uring ABI (include/uapi/linux/fuse.h, FUSE 7.42, Linux 6.14+). The
// build's headers (Debian 12: Linux 6.1, libfuse 3.14) predate it, so it is spelled out here
// under our own names; the layout is checked below against the kernel's.
#pragma once

#include <cstddef>
#include <cstdint>

namespace virtiofs::mount::uring_abi {

// INIT flag (bit 9 of flags2): the server takes requests through io_uring.
inline constexpr uint64_t kFuseOverIoUring = uint64_t{1} << 41;

inline constexpr size_t kInOutHeaderBytes = 128;  // fuse_in_header / fuse_out_header
inline constexpr size_t kOpInOutBytes = 128;      // the opcode's own header

// fuse_uring_ent_in_out
struct EntryInOut {
  uint64_t flags;
  uint64_t commit_id;   // the request's unique: quoted back when committing its reply
  uint32_t payload_sz;  // bytes of payload in the payload buffer (request, then reply)
  uint32_t padding;
  uint64_t reserved;
};

// fuse_uring_req_header: the first of the two buffers each ring entry registers.
struct RequestHeader {
  std::byte in_out[kInOutHeaderBytes];
  std::byte op_in[kOpInOutBytes];
  EntryInOut entry;
};

// fuse_uring_cmd: IORING_OP_URING_CMD's cmd_op.
enum Command : uint32_t {
  kRegister = 1,        // register header + payload buffers, then wait for a request
  kCommitAndFetch = 2,  // hand back a reply, then wait for the next request
};

// fuse_uring_cmd_req: in the SQE128 command area.
struct CommandRequest {
  uint64_t flags;
  uint64_t commit_id;
  uint16_t qid;
  uint8_t padding[6];
};

static_assert(sizeof(EntryInOut) == 32);
static_assert(sizeof(RequestHeader) == 288);
static_assert(offsetof(RequestHeader, entry) == 256);
static_assert(sizeof(CommandRequest) == 24);

}  // namespace virtiofs::mount::uring_abi
