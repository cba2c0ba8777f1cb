// The library's own messages, printf-style, to the sink set through virtiofs/log.hpp. For what
// a caller cannot learn otherwise; errors it gets as return values or exceptions are not logged.
#pragma once

#include <cstdarg>

#include "virtiofs/log.hpp"

namespace virtiofs::log {

#define VIRTIOFS_PRINTF(f) __attribute__((format(printf, f, f + 1)))
void error(const char* format, ...) VIRTIOFS_PRINTF(1);
void warn(const char* format, ...) VIRTIOFS_PRINTF(1);
void info(const char* format, ...) VIRTIOFS_PRINTF(1);
void debug(const char* format, ...) VIRTIOFS_PRINTF(1);
#undef VIRTIOFS_PRINTF

void vwrite(LogLevel level, const char* format, va_list args);

}  // namespace virtiofs::log
