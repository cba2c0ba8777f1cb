// Opens a Client over a transport that is already made: Client::connect opens the device
// (open_device.hpp), tests hand in an in-process device.
#pragma once

#include <memory>

#include "virtio/transport.hpp"
#include "virtiofs/client.hpp"

namespace virtiofs::client {

struct OpenedDevice;

struct Connector {
  // Reads the device's config, settles the tag (open_device.hpp's rule), starts the session and
  // settles INIT. Throws std::system_error with a readable message.
  static std::unique_ptr<Client> over(std::unique_ptr<virtio::Transport> transport,
                                      const Options& options);
  // Starts the session on an opened device and settles INIT; the client-side choices
  // (interrupts) come from `options`.
  static std::unique_ptr<Client> start(OpenedDevice device, const Options& options);
};

}  // namespace virtiofs::client
