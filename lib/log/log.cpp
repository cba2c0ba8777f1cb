#include "log/log.hpp"

#include <unistd.h>

#include <cstdio>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <utility>

namespace virtiofs {

namespace {

// Readers (threads logging) hold it shared while they call the sink; set_log_sink holds it
// exclusively to swap, so it returns only once no thread is still inside the old sink.
std::shared_mutex sink_mu;
LogSink& current_sink() {
  // Never destroyed: a thread may still log while the process exits.
  static LogSink* sink = new LogSink;  // under sink_mu; empty: log_to_stderr
  return *sink;
}

void deliver(LogLevel level, std::string_view message) {
  std::shared_lock lock(sink_mu);
  const LogSink& sink = current_sink();
  if (sink) {
    try {
      sink(level, message);
    } catch (...) {
      // A sink that throws loses its message; the library's thread must go on.
    }
  } else {
    log_to_stderr(level, message);
  }
}

}  // namespace

void set_log_sink(LogSink sink) {
  std::unique_lock lock(sink_mu);
  std::swap(current_sink(), sink);
  lock.unlock();
  // The old sink is destroyed here, outside the lock.
}

void log_to_stderr(LogLevel, std::string_view message) {
  std::string line = "virtiofs: ";
  line.append(message);
  line.push_back('\n');
  // One write: lines from several threads do not interleave.
  [[maybe_unused]] ssize_t n = ::write(STDERR_FILENO, line.data(), line.size());
}

const char* log_level_name(LogLevel level) {
  switch (level) {
    case LogLevel::kError: return "error";
    case LogLevel::kWarning: return "warning";
    case LogLevel::kInfo: return "info";
    case LogLevel::kDebug: return "debug";
  }
  return "?";
}

namespace log {

void vwrite(LogLevel level, const char* format, va_list args) {
  char small[512];
  va_list again;
  va_copy(again, args);
  const int n = std::vsnprintf(small, sizeof(small), format, args);
  std::string big;
  std::string_view message;
  if (n < 0) {
    message = format;  // unformattable: the format itself says at least where
  } else if (static_cast<size_t>(n) < sizeof(small)) {
    message = std::string_view(small, static_cast<size_t>(n));
  } else {
    big.resize(static_cast<size_t>(n) + 1);
    std::vsnprintf(big.data(), big.size(), format, again);
    big.resize(static_cast<size_t>(n));
    message = big;
  }
  va_end(again);
  while (!message.empty() && message.back() == '\n') message.remove_suffix(1);
  deliver(level, message);
}

#define VIRTIOFS_LOG_AT(name, level)          \
  void name(const char* format, ...) {        \
    va_list args;                             \
    va_start(args, format);                   \
    vwrite(level, format, args);              \
    va_end(args);                             \
  }
VIRTIOFS_LOG_AT(error, LogLevel::kError)
VIRTIOFS_LOG_AT(warn, LogLevel::kWarning)
VIRTIOFS_LOG_AT(info, LogLevel::kInfo)
VIRTIOFS_LOG_AT(debug, LogLevel::kDebug)
#undef VIRTIOFS_LOG_AT

}  // namespace log

}  // namespace virtiofs
