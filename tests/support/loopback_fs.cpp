#include "support/loopback_fs.hpp"

#include <sstream>

#include "support/loopback_transport.hpp"

namespace virtiofs::test {

LoopbackFs::LoopbackFs(const LoopbackFsOptions& options)
    : server_(fs_, faults_, options.server),
      device_(std::make_shared<LoopbackDevice>(options.device, server_)) {
  for (const std::string& f : options.faults) faults_.add(f);
  server_.attach(*device_);
}

LoopbackFs::~LoopbackFs() {
  // The device's threads call the server: stop them first, then the server's hold timer.
  device_->stop();
  server_.detach();
}

std::unique_ptr<virtio::Transport> LoopbackFs::transport() {
  return std::make_unique<LoopbackTransport>(device_);
}

uint64_t LoopbackFs::stat(const std::string& key) const {
  std::istringstream lines(server_.stats_text());
  for (std::string line; std::getline(lines, line);) {
    if (line.size() > key.size() && line.compare(0, key.size(), key) == 0 && line[key.size()] == ' ')
      return std::stoull(line.substr(key.size() + 1));
  }
  return 0;
}

}  // namespace virtiofs::test
