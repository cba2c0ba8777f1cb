// Where virtiofs-mount's messages go, its own and the library's (virtiofs/log.hpp): standard
// error while it holds the terminal, syslog once the daemon lets go of it (as libfuse's
// fuse_log_enable_syslog).
#pragma once

#include <string>

#include "virtiofs/log.hpp"

namespace virtiofs::mount_tool {

// Standard error: "virtiofs-mount: MESSAGE"; debug lines (the -d trace) as they are.
void log_to_stderr();
// syslog, as "virtiofs-mount[PID]" in the daemon facility.
void log_to_syslog();
// The tool's own message, to where the library's go.
void say(LogLevel level, const std::string& message);

}  // namespace virtiofs::mount_tool
