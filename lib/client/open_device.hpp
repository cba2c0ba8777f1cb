// Opening a virtio-fs device: the one way Client::connect and virtiofs-mount both take. Makes the
// transport, reads the device's config, settles the tag and the request queues, and fills the
// session's options; what comes after (INIT, the FUSE bridge) is the caller's.
//
// Where the device is (Options, exactly one of):
//  - socket_path: a vhost-user-fs backend's UNIX socket (virtiofsd --socket-path);
//  - pci_device: a virtio-fs PCI device bound to vfio-pci;
//  - neither, with a tag: the vfio-pci-bound virtio-fs device with that tag (inside a VM).
//
// The tag rule (Options::tag, virtiofs-mount's TAG):
//  - at most 36 bytes (the size of virtio-fs's config field);
//  - a device that reports its tag (every PCI device; vhost-user backends offering CONFIG) must
//    report the tag given; with none given, the device's tag is taken;
//  - a device that reports none (vhost-user backends without CONFIG, such as QEMU's C virtiofsd)
//    is known by the tag given, which may be empty.
//
// Every error is a std::system_error whose message names the cause and the fix.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "fs/session_options.hpp"
#include "virtio/transport.hpp"
#include "virtiofs/client.hpp"

namespace virtiofs::client {

struct OpenedDevice {
  std::unique_ptr<virtio::Transport> transport;
  fs::SessionOptions session;  // queue count settled; sizes from the Options
  std::string tag;             // by the tag rule
};

// The tag rule: the tag the device goes by, given the one asked for and the one the device
// reports (nullopt: it reports none). Throws EINVAL (too long) or ENODEV (another tag).
std::string settle_tag(const std::string& wanted, const std::optional<std::string>& reported);

// Refuses, before any connection attempt, a socket path that is missing or not a UNIX socket
// (a regular file given for virtiofsd's socket, say). Throws the errno with a readable message.
void check_socket_path(const std::string& path);

// All of it: transport, config, tag, queues, session options.
OpenedDevice open_device(const Options& options);
// The same over a transport already made (tests hand in an in-process device).
OpenedDevice settle_device(std::unique_ptr<virtio::Transport> transport, const Options& options);

}  // namespace virtiofs::client
