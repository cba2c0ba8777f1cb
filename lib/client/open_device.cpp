#include "client/open_device.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <utility>

#include "fs/session.hpp"
#include "vfio/discovery.hpp"
#include "vfio/vfio_transport.hpp"
#include "vhost_user/frontend.hpp"
#include "virtio/features.hpp"
#include "virtio/setup_error.hpp"

namespace virtiofs::client {

namespace {

void check_tag_length(const std::string& tag) {
  if (tag.size() > virtio::kTagSize)
    fail(EINVAL, "tag '" + tag + "' is longer than " + std::to_string(virtio::kTagSize) +
                     " bytes (virtio-fs tags are at most that)");
}

const char* file_kind(mode_t mode) {
  if (S_ISREG(mode)) return "a regular file";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  return "a special file";
}

std::unique_ptr<virtio::Transport> make_transport(const Options& o) {
  if (!o.socket_path.empty() && !o.pci_device.empty())
    fail(EINVAL, "give one device: Options::socket_path or Options::pci_device, not both");
  if (!o.socket_path.empty()) {
    check_socket_path(o.socket_path);
    return std::make_unique<vhost_user::Frontend>(o.socket_path);
  }
  if (!o.pci_device.empty()) return std::make_unique<vfio::VfioTransport>(o.pci_device);
  if (o.tag.empty())
    fail(EINVAL, "no device given: set Options::socket_path (a vhost-user socket), "
                 "Options::pci_device, or Options::tag (a vfio-pci-bound device's tag)");
  return std::make_unique<vfio::VfioTransport>(vfio::find_vfio_fs_device(o.tag));
}

}  // namespace

std::string settle_tag(const std::string& wanted, const std::optional<std::string>& reported) {
  check_tag_length(wanted);
  if (!reported) return wanted;
  if (!wanted.empty() && *reported != wanted)
    fail(ENODEV, "the device's tag is '" + *reported + "', not '" + wanted +
                     "' (give its tag, or none to take it)");
  return *reported;
}

void check_socket_path(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) {
    const int err = errno;
    if (err == ENOENT)
      fail(err, "no socket at " + path + " (start virtiofsd with --socket-path=" + path +
                    ", or give the path it listens on)");
    fail(err, "socket " + path);
  }
  if (!S_ISSOCK(st.st_mode))
    fail(ENOTSOCK, path + " is " + file_kind(st.st_mode) +
                       ", not a UNIX socket (give virtiofsd's --socket-path)");
}

static_assert(kAdaptivePolling == fs::kAdaptivePolling);

OpenedDevice settle_device(std::unique_ptr<virtio::Transport> transport, const Options& o) {
  check_tag_length(o.tag);
  OpenedDevice out;
  const virtio::DeviceConfig config = transport->read_config();
  out.tag = settle_tag(o.tag, config.tag);
  out.session.queue_size = o.queue_size;
  out.session.num_request_queues = fs::request_queue_count(o.num_request_queues, *transport, config);
  out.session.max_transfer = o.max_transfer;
  out.session.poll_us = o.poll_us;
  out.session.app_reaps_completions = o.app_reaps_completions;
  out.session.app_memory_bytes = o.registered_memory_bytes;
  out.transport = std::move(transport);
  return out;
}

OpenedDevice open_device(const Options& o) {
  check_tag_length(o.tag);  // before anything is opened
  return settle_device(make_transport(o), o);
}

}  // namespace virtiofs::client
