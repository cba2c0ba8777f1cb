// Where libvirtiofs's messages go. The library reports what no return value carries (why it
// judged the device broken, a device that did not answer at shutdown, the FUSE bridge's request
// trace) through one process-wide sink, as libfuse does with fuse_set_log_func. By default they
// go to standard error with a "virtiofs: " prefix; a daemon points them at syslog.
#pragma once

#include <functional>
#include <string_view>

#include "virtiofs/export.hpp"

namespace virtiofs {

enum class LogLevel { kError, kWarning, kInfo, kDebug };

// One message: a single line without its newline. Called on whatever thread the event happened
// on (a completion thread, a FUSE reader, the caller's), on several threads at once: it must be
// thread-safe, must not call set_log_sink, and should not call into a Client (it may run in
// the middle of reaping a queue or ending a session): hand the message on and return.
using LogSink = std::function<void(LogLevel level, std::string_view message)>;

// Replaces the sink; an empty one restores the default. Safe while other threads log: each
// message goes wholly to the old sink or to the new one, and once this returns the old sink is
// never called again (so it may be destroyed).
VIRTIOFS_API void set_log_sink(LogSink sink);

// The default sink: "virtiofs: MESSAGE\n" on standard error, in one write.
VIRTIOFS_API void log_to_stderr(LogLevel level, std::string_view message);

// "error", "warning", "info", "debug".
VIRTIOFS_API const char* log_level_name(LogLevel level);

}  // namespace virtiofs
