#include "logging.hpp"

#include <syslog.h>
#include <unistd.h>

#include <atomic>

namespace virtiofs::mount_tool {

namespace {

std::atomic<bool> to_syslog{false};

int syslog_priority(LogLevel level) {
  switch (level) {
    case LogLevel::kError: return LOG_ERR;
    case LogLevel::kWarning: return LOG_WARNING;
    case LogLevel::kInfo: return LOG_INFO;
    case LogLevel::kDebug: return LOG_DEBUG;
  }
  return LOG_NOTICE;
}

void emit(LogLevel level, std::string_view message) {
  if (to_syslog.load(std::memory_order_acquire)) {
    syslog(syslog_priority(level), "%.*s", static_cast<int>(message.size()), message.data());
    return;
  }
  std::string line = level == LogLevel::kDebug ? "" : "virtiofs-mount: ";
  line.append(message);
  line.push_back('\n');
  [[maybe_unused]] ssize_t n = write(STDERR_FILENO, line.data(), line.size());
}

}  // namespace

void log_to_stderr() {
  to_syslog.store(false, std::memory_order_release);
  set_log_sink(emit);
}

void log_to_syslog() {
  openlog("virtiofs-mount", LOG_PID, LOG_DAEMON);
  to_syslog.store(true, std::memory_order_release);
  set_log_sink(emit);
}

void say(LogLevel level, const std::string& message) { emit(level, message); }

}  // namespace virtiofs::mount_tool
