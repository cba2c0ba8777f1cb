// Every wait of the session has an end: a device that stays connected but never answers fails
// INIT and shutdown within SessionOptions::device_timeout, and the device is stopped before the
// memory it may still touch goes away, on the constructor's failure path too.
#include <gtest/gtest.h>

#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "support/loopback_transport.hpp"
#include "unit/session_fixture.hpp"

using namespace virtiofs;
using namespace virtiofs::test;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto kTimeout = std::chrono::milliseconds(300);

fs::SessionOptions bounded_session() {
  fs::SessionOptions o = small_session();
  o.device_timeout = kTimeout;
  return o;
}

// Runs `body` on a thread; waits for it at most the device timeout plus the test bound. If it
// overruns, the device is lost so that the thread can end, and the test fails.
template <class Body>
void expect_bounded(LoopbackFs& loop, const char* what, Body body) {
  std::atomic<bool> finished{false};
  std::thread t([&] {
    body();
    finished = true;
  });
  const bool in_time = eventually([&] { return finished.load(); }, kTimeout + kBound);
  if (!in_time) loop.device().lose();
  t.join();
  EXPECT_TRUE(in_time) << what << " waited past its bound";
}

TEST(SessionBounds, ASilentDeviceFailsInitWithEtimedoutWithinTheBound) {
  LoopbackFsOptions o;
  o.device.stepped = true;  // takes nothing, answers nothing, stays connected
  LoopbackFs loop(o);
  auto session = std::make_unique<fs::Session>(loop.transport(), bounded_session());
  std::error_code code;
  std::string message;
  const auto started = Clock::now();
  expect_bounded(loop, "INIT", [&] {
    try {
      session->init(fuse::kLibraryInitFlags, 0);
    } catch (const std::system_error& e) {
      code = e.code();
      message = e.what();
    }
  });
  EXPECT_GE(Clock::now() - started, kTimeout) << "INIT gave up before its bound";
  EXPECT_EQ(code, std::errc::timed_out) << message;
  EXPECT_NE(message.find("did not answer FUSE_INIT"), std::string::npos) << message;
  EXPECT_EQ(session->failure(), std::errc::timed_out);
  expect_bounded(loop, "shutdown after a failed INIT", [&] { session.reset(); });
}

TEST(SessionBounds, ASilentDeviceAtShutdownIsStoppedWithinTheBound) {
  LoopbackFs loop;
  auto session = std::make_unique<fs::Session>(loop.transport(), bounded_session());
  session->init(fuse::kLibraryInitFlags, 0);
  auto& dev = loop.device();
  for (unsigned q = 0; q < dev.num_queues(); ++q) dev.set_silent(q, true);
  Recorder recorder;
  TestCall pending;
  pending.recorder = &recorder;
  pending.frame = fuse::make_getattr(kRootInode, nullptr);
  session->submit(pending);
  ASSERT_TRUE(eventually([&] { return dev.chains_taken(1) >= 2; }));  // INIT, GETATTR

  expect_bounded(loop, "shutdown", [&] { session->shutdown(); });
  EXPECT_TRUE(recorder.wait_count(1, 0ms)) << "the call the device swallowed never ended";
  EXPECT_TRUE(pending.ec == std::errc::timed_out || pending.ec == std::errc::not_connected)
      << pending.ec.message();
  EXPECT_EQ(loop.stat("opcode destroy"), 0u) << "DESTROY was sent into a silent device";
  EXPECT_GE(dev.chains_taken(1), 3u) << "DESTROY never reached the device";
  EXPECT_TRUE(dev.stopped()) << "shutdown left the device running";
}

// Two threads shut down at once: the second returns only when the first is done, so that after
// either returns the device is stopped and every call has ended (their buffers are free).
TEST(SessionBounds, ASecondShutdownWaitsForTheFirstToFinish) {
  LoopbackFsOptions o;
  o.server.hold = FUSE_STATFS;  // held for ever: only the shutdown's bound ends it
  LoopbackFs loop(o);
  auto session = std::make_unique<fs::Session>(loop.transport(), bounded_session());
  session->init(fuse::kLibraryInitFlags, 0);
  Recorder recorder;
  TestCall held;
  held.recorder = &recorder;
  held.frame = fuse::make_statfs(kRootInode);
  session->submit(held);
  ASSERT_TRUE(eventually([&] { return loop.stat("opcode statfs") == 1; }));
  std::atomic<bool> first_done{false};
  std::thread first([&] {
    session->shutdown();
    first_done = true;
  });
  // The first is in its drain (the held STATFS keeps it there until the bound).
  ASSERT_TRUE(eventually([&] { return loop.stat("opcode destroy") == 1; }));
  bool ended_when_second_returned = false, stopped_when_second_returned = false;
  expect_bounded(loop, "the second shutdown", [&] {
    session->shutdown();
    ended_when_second_returned = recorder.count() == 1;
    stopped_when_second_returned = loop.device().stopped();
  });
  first.join();
  EXPECT_TRUE(first_done.load());
  EXPECT_TRUE(ended_when_second_returned) << "the second shutdown returned with a call in flight";
  EXPECT_TRUE(stopped_when_second_returned) << "the second shutdown returned before the device stopped";
}

// What a transport saw of the session, kept by the test past the transport's end.
struct StopRecord {
  bool started = false;
  int stops = 0;
  bool memory_mapped_at_stop = false;
};

// A transport that fails after the device started: the session must stop the device before
// the memory it registered is unmapped.
class FailingAfterStart final : public virtio::Transport {
 public:
  FailingAfterStart(std::unique_ptr<virtio::Transport> inner, StopRecord& record)
      : inner_(std::move(inner)), record_(record) {}
  ~FailingAfterStart() override {
    if (record_.stops == 0) inner_->stop();  // the test's own clean-up: no device thread stays
  }
  uint64_t device_features() override { return inner_->device_features(); }
  void set_driver_features(uint64_t f) override { inner_->set_driver_features(f); }
  std::optional<unsigned> max_queues() override { return inner_->max_queues(); }
  virtio::DeviceConfig read_config() override { return inner_->read_config(); }
  std::unique_ptr<virtio::DmaRegion> allocate_memory(size_t bytes, const std::string& name) override {
    auto region = inner_->allocate_memory(bytes, name);
    memory_ = region->base();
    return region;
  }
  void register_memory(const virtio::DmaRegion& r) override { inner_->register_memory(r); }
  void setup_queue(const virtio::QueueSetup& q) override { inner_->setup_queue(q); }
  void start() override {
    inner_->start();
    record_.started = true;
  }
  int call_fd(unsigned index) const override { return inner_->call_fd(index); }
  void notify(unsigned index) override { inner_->notify(index); }
  LivenessWatch liveness() const override {
    throw std::system_error(std::make_error_code(std::errc::io_error), "liveness watch refused");
  }
  void stop() override {
    unsigned char resident;
    record_.memory_mapped_at_stop =
        mincore(memory_, static_cast<size_t>(sysconf(_SC_PAGESIZE)), &resident) == 0;
    ++record_.stops;
    inner_->stop();
  }

 private:
  std::unique_ptr<virtio::Transport> inner_;
  StopRecord& record_;
  void* memory_ = nullptr;
};

TEST(SessionBounds, AConstructorFailingAfterStartStopsTheDeviceBeforeFreeingItsMemory) {
  LoopbackFs loop;
  StopRecord record;
  EXPECT_THROW(fs::Session(std::make_unique<FailingAfterStart>(loop.transport(), record),
                           small_session()),
               std::system_error);
  ASSERT_TRUE(record.started) << "the failure came before the device started: nothing shown";
  EXPECT_EQ(record.stops, 1) << "the device was left running after the constructor failed";
  EXPECT_TRUE(record.memory_mapped_at_stop) << "the device was stopped after its memory went";
}

}  // namespace
