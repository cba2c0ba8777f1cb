// Opens a Client over a transport that is already made: Client::connect picks vhost-user or
// VFIO, tests hand in an in-process device.
#pragma once

#include <memory>

#include "virtio/transport.hpp"
#include "virtiofs/client.hpp"

namespace virtiofs::client {

struct Connector {
  // Reads the device's config, checks the tag, starts the session and settles INIT. Throws
  // std::system_error with a readable message.
  static std::unique_ptr<Client> over(std::unique_ptr<virtio::Transport> transport,
                                      const Options& options);
};

}  // namespace virtiofs::client
