#include "fs/request_stager.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "log/log.hpp"

namespace virtiofs::fs {

namespace {

struct Credentials {
  uint32_t uid, gid, pid;
};
const Credentials& credentials() {
  // Read once: the device acts with these on the caller's behalf.
  static const Credentials c{static_cast<uint32_t>(geteuid()), static_cast<uint32_t>(getegid()),
                             static_cast<uint32_t>(getpid())};
  return c;
}

// Writes a byte stream into a first inline buffer, then into pool chunks, recording segments.
// The plan already counted the chunks and segments, so nothing here can overrun.
class StreamWriter {
 public:
  StreamWriter(const virtio::DmaRegion& mem, ChunkPool& pool, Slot& slot, virtio::Segment* segs,
               unsigned& nsegs, bool writable)
      : mem_(mem), pool_(pool), slot_(slot), segs_(segs), nsegs_(nsegs), writable_(writable) {}

  void start(std::byte* first, size_t cap) {
    cur_ = first;
    cap_ = cap;
    len_ = 0;
  }
  void append(std::span<const std::byte> bytes) {
    while (!bytes.empty()) {
      if (len_ == cap_) next_chunk();
      const size_t n = std::min(bytes.size(), cap_ - len_);
      std::memcpy(cur_ + len_, bytes.data(), n);
      len_ += n;
      bytes = bytes.subspan(n);
    }
  }
  // Reserves `bytes` of writable room, recording it as reply pieces.
  void reserve(size_t bytes) {
    while (bytes > 0) {
      if (len_ == cap_) next_chunk();
      const size_t n = std::min(bytes, cap_ - len_);
      add_piece(cur_ + len_, static_cast<uint32_t>(n));
      len_ += n;
      bytes -= n;
    }
  }
  void finish() {
    if (len_ > 0) segs_[nsegs_++] = {mem_.device_addr(cur_), static_cast<uint32_t>(len_), writable_};
    len_ = 0;
    cap_ = 0;
  }

 private:
  void add_piece(std::byte* p, uint32_t len) {
    if (slot_.out_piece_count > 0) {
      Piece& last = slot_.out_pieces[slot_.out_piece_count - 1];
      if (last.ptr + last.len == p) {
        last.len += len;
        return;
      }
    }
    slot_.out_pieces[slot_.out_piece_count++] = Piece{p, len};
  }
  void next_chunk() {
    finish();
    const uint32_t c = pool_.take();
    slot_.chunks[slot_.chunk_count++] = c;
    cur_ = pool_.at(c);
    cap_ = pool_.chunk_bytes();
  }
  const virtio::DmaRegion& mem_;
  ChunkPool& pool_;
  Slot& slot_;
  virtio::Segment* segs_;
  unsigned& nsegs_;
  bool writable_;
  std::byte* cur_ = nullptr;
  size_t cap_ = 0, len_ = 0;
};

}  // namespace

std::error_code RequestStager::plan(const Call& call, const ChunkPool& pool, StagePlan& out) const {
  out = StagePlan{};
  if (call.raw) {
    const RawMessage& raw = *call.raw;
    out.segments = static_cast<unsigned>(raw.in.size() + raw.out.size());
    if (raw.in.empty() || out.segments > max_segments_)
      return std::make_error_code(std::errc::invalid_argument);
    for (const auto* list : {&raw.in, &raw.out})
      for (const DeviceBuffer& b : *list)
        if (b.len == 0 || !memory_.contiguous(b.data, b.len))
          return std::make_error_code(std::errc::bad_address);
    return {};
  }
  const fuse::Frame& f = call.frame;
  if (f.in_count > fuse::kMaxInPayloads) return std::make_error_code(std::errc::invalid_argument);
  // A last payload (WRITE data, READ buffer) that already lies in device memory (the app's
  // registered memory) goes to the device as its own descriptor: no copy either way.
  const auto last_in = f.in_count ? f.in[f.in_count - 1] : std::span<const std::byte>{};
  out.direct_in = !last_in.empty() && memory_.contiguous(last_in.data(), last_in.size());
  out.direct_out = f.expects_reply && !f.out_data.empty() &&
                   memory_.contiguous(f.out_data.data(), f.out_data.size());
  out.in_bytes = f.in_bytes() - (out.direct_in ? last_in.size() : 0);
  out.out_bytes = f.expects_reply ? sizeof(fuse_out_header) + f.out_args_len +
                                        (out.direct_out ? 0 : f.out_data.size())
                                  : 0;
  const uint32_t in_chunks = pool.needed(out.in_bytes, kInInline);
  const uint32_t out_chunks = pool.needed(out.out_bytes, kOutInline);
  out.chunks = in_chunks + out_chunks;
  out.segments = 1 + in_chunks + out.direct_in +
                 (out.out_bytes ? 1 + out_chunks + out.direct_out : 0);
  // More than the ring or the whole pool could ever give: it would wait for ever, and every
  // call behind it too.
  if (out.segments > max_segments_ || out.chunks > pool.capacity())
    return std::make_error_code(std::errc::invalid_argument);
  return {};
}

unsigned RequestStager::stage(Slot& slot, const Call& call, const StagePlan& plan, uint64_t unique,
                              ChunkPool& pool, std::span<virtio::Segment, kMaxSegments> segs,
                              uint64_t& zero_copy_bytes) const {
  slot.chunk_count = 0;
  slot.out_piece_count = 0;
  slot.unique = unique;
  unsigned n = 0;
  if (call.raw) {
    for (const DeviceBuffer& b : call.raw->in) segs[n++] = {memory_.device_addr(b.data), b.len, false};
    for (const DeviceBuffer& b : call.raw->out) {
      segs[n++] = {memory_.device_addr(b.data), b.len, true};
      slot.out_pieces[slot.out_piece_count++] = Piece{b.data, b.len};
    }
    return n;
  }
  const fuse::Frame& f = call.frame;
  const Credentials& cred = credentials();
  fuse_in_header header{};
  header.len = static_cast<uint32_t>(f.in_bytes());
  header.opcode = f.opcode;
  header.unique = unique;
  header.nodeid = f.nodeid;
  header.uid = cred.uid;
  header.gid = cred.gid;
  header.pid = cred.pid;

  StreamWriter in(memory_, pool, slot, segs.data(), n, false);
  in.start(slot.in_area, kInInline);
  in.append(std::as_bytes(std::span(&header, 1)));
  in.append(std::span(f.args.data(), f.args_len));
  for (uint32_t i = 0; i + (plan.direct_in ? 1 : 0) < f.in_count; ++i) in.append(f.in[i]);
  in.finish();
  if (plan.direct_in) {
    const auto last = f.in[f.in_count - 1];
    segs[n++] = {memory_.device_addr(last.data()), static_cast<uint32_t>(last.size()), false};
    zero_copy_bytes += last.size();
  }
  if (plan.out_bytes) {
    StreamWriter out(memory_, pool, slot, segs.data(), n, true);
    out.start(slot.out_area, kOutInline);
    out.reserve(plan.out_bytes);
    out.finish();
    if (plan.direct_out) {
      const auto len = static_cast<uint32_t>(f.out_data.size());
      segs[n++] = {memory_.device_addr(f.out_data.data()), len, true};
      slot.out_pieces[slot.out_piece_count++] = Piece{f.out_data.data(), len};
      // Counted when the reply says how much the device wrote there (RequestQueue::reap).
    }
  }
  return n;
}

bool RequestStager::copy_reply(const Slot& slot, Call& call, uint32_t used_len) {
  if (call.raw ? call.raw->out.empty() : !call.frame.expects_reply) return false;
  // Gather [offset, offset+len) of the reply stream out of device memory, once, into private
  // memory: nothing is re-read after it is validated.
  auto gather = [&](size_t offset, std::byte* dst, size_t len) {
    for (uint16_t i = 0; i < slot.out_piece_count && len > 0; ++i) {
      const Piece& p = slot.out_pieces[i];
      if (offset >= p.len) {
        offset -= p.len;
        continue;
      }
      const size_t n = std::min<size_t>(len, p.len - offset);
      if (dst != p.ptr + offset) std::memcpy(dst, p.ptr + offset, n);  // same: zero-copy buffer
      dst += n;
      len -= n;
      offset = 0;
    }
  };
  if (used_len == 0 && (call.raw ? call.raw->reply_optional : call.frame.reply_optional))
    return false;  // header.len stays 0
  if (used_len >= sizeof(fuse_out_header))
    gather(0, reinterpret_cast<std::byte*>(&call.reply.header), sizeof(fuse_out_header));
  bool malformed = false;
  call.ec = fuse::validate_reply(call.reply.header, used_len, slot.unique, malformed);
  if (malformed)  // (the header stays zero when used_len cannot hold one)
    log::error("the device broke the protocol: malformed reply to request %llu (used length %u; "
               "header: len %u, unique %llu, error %d)",
               static_cast<unsigned long long>(slot.unique), used_len, call.reply.header.len,
               static_cast<unsigned long long>(call.reply.header.unique), call.reply.header.error);
  if (malformed || call.ec) return malformed;
  const uint32_t payload = used_len - static_cast<uint32_t>(sizeof(fuse_out_header));
  if (call.raw) {
    // The payload stays in device memory for the owner to pass on as it is.
    call.reply.data_len = payload;
    return false;
  }
  call.reply.args_len = std::min(payload, call.frame.out_args_len);
  gather(sizeof(fuse_out_header), call.reply.args.data(), call.reply.args_len);
  call.reply.data_len = payload - call.reply.args_len;
  gather(sizeof(fuse_out_header) + call.frame.out_args_len, call.frame.out_data.data(),
         call.reply.data_len);
  return false;
}

bool RequestStager::take_dropped_reply(const Slot& slot, uint32_t used_len, DroppedReply& out) {
  out = DroppedReply{};
  out.opcode = slot.dropped_opcode;
  out.nodeid = slot.dropped_nodeid;
  // The header and the fixed args come first in the reply stream.
  const size_t want = std::min<size_t>(used_len, sizeof(fuse_out_header) + slot.dropped_out_args_len);
  std::array<std::byte, sizeof(fuse_out_header) + fuse::kMaxOutArgs> head{};
  size_t got = 0;
  for (uint16_t i = 0; i < slot.out_piece_count && got < want; ++i) {
    const size_t n = std::min<size_t>(want - got, slot.out_pieces[i].len);
    std::memcpy(head.data() + got, slot.out_pieces[i].ptr, n);
    got += n;
  }
  if (got >= sizeof(fuse_out_header)) std::memcpy(&out.reply.header, head.data(), sizeof(fuse_out_header));
  bool malformed = false;
  if (fuse::validate_reply(out.reply.header, used_len, slot.unique, malformed) || malformed)
    return malformed;
  out.reply.args_len = static_cast<uint32_t>(got - sizeof(fuse_out_header));
  std::memcpy(out.reply.args.data(), head.data() + sizeof(fuse_out_header), out.reply.args_len);
  return false;
}

}  // namespace virtiofs::fs
