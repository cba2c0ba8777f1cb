// Test fixture: what the test backend does wrong, and when. A fault is written
// KIND[=VALUE][@OPCODE][#N]: it strikes the N-th request (default 1st) with that opcode (default
// any); VALUE is the fault's own parameter (the errno of `error`).
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace virtiofs::test {

enum class Fault {
  kUsedIdOutOfRange,   // used element id >= queue size
  kUsedIdNotInFlight,  // used element id of a head the driver did not hand over
  kDoubleCompletion,   // the same head completed twice
  kUsedLenBeyondBuffer,// used length larger than the chain's writable bytes
  kUsedIdxJump,        // used index moved by more than the ring holds
  kHeaderLenMismatch,  // fuse_out_header.len disagrees with the used length
  kUnknownUnique,      // reply for a request nobody sent
  kErrorOutOfRange,    // error outside -4095..0
  kDirentOverrun,      // READDIR record whose name runs past the reply
  kDirentBadName,      // READDIR name with a '/' in it
  kAbsurdInit,         // INIT reply with max_write 1 and max_pages 65535
  kEioFromNowOn,       // every reply from here on is -EIO (well formed)
  kError,              // the reply is error VALUE (say -600: FUSE allows it, /dev/fuse does not)
  kUnwrittenPayload,   // header and used length report the whole reply; only the header is written
  kScribbleHeader,     // after completing, overwrites the out header the driver puts where the
                       // request's in header was (a device writing memory it no longer owns)
  kDie,                // the backend is killed at once (device lost)
};

class FaultPlan {
 public:
  // Parses one KIND[@OPCODE][#N]; throws std::invalid_argument naming what is wrong.
  void add(const std::string& spec);
  // Called once per request, in arrival order: the fault that strikes it, if any.
  std::optional<Fault> strike(uint32_t opcode);
  // The VALUE of the rule that last struck on this thread (a queue's thread strikes a request
  // and answers it before taking the next).
  static int64_t value();
  static const std::vector<std::string>& kind_names();

 private:
  struct Rule {
    Fault fault;
    std::optional<uint32_t> opcode;
    uint64_t nth;
    int64_t value = 0;
    uint64_t seen = 0;
  };
  std::mutex mu_;
  std::vector<Rule> rules_;
  bool eio_ = false;
};

// FUSE opcode of a lower-case name ("getattr"), or nullopt.
std::optional<uint32_t> opcode_by_name(const std::string& name);
const char* opcode_name(uint32_t opcode);

}  // namespace virtiofs::test
