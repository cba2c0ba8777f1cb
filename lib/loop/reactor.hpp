// A small io_uring reactor (liburing): multishot POLL_ADD per watched fd, completions reaped in
// batches with one cq_advance. One thread runs it; watches are added before run().
#pragma once

#include <liburing.h>

#include <atomic>
#include <functional>
#include <memory>
#include <vector>

namespace virtiofs::loop {

class Reactor {
 public:
  // Called with the poll result (revents mask) or a negative errno. Setup-time object, so a
  // std::function is fine here: nothing is allocated per event.
  using Handler = std::function<void(int result)>;

  explicit Reactor(unsigned entries = 64);
  ~Reactor();
  Reactor(const Reactor&) = delete;
  Reactor& operator=(const Reactor&) = delete;

  // Watches fd for `events` (POLLIN, POLLRDHUP, ...) until the reactor stops, or for the first
  // event only when `once` (a hang-up stays signalled and would fire forever).
  void watch(int fd, unsigned events, Handler handler, bool once = false);
  // Runs on the calling thread until stop().
  void run();
  // Thread-safe; run() returns after finishing the current batch.
  void stop();
  // Polls stay armed across events (false once the kernel refused multishot poll: each event
  // re-arms, and an fd left readable fires again at once). For handlers, on the reactor's thread.
  bool multishot() const { return multishot_; }

 private:
  struct Watch {
    int fd;
    unsigned events;
    Handler handler;
    bool once;
  };
  void arm(Watch* w);

  io_uring ring_{};
  int wake_fd_ = -1;
  bool multishot_ = true;
  std::atomic<bool> stopping_{false};
  std::vector<std::unique_ptr<Watch>> watches_;
};

}  // namespace virtiofs::loop
