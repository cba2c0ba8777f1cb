#pragma once

// The public headers use C++20 (std::span, std::stop_token). Neither the CMake package (which
// carries cxx_std_20) nor pkg-config (which leaves the standard to the application) can add it
// behind a project's back, so say plainly what is missing.
#if __cplusplus < 202002L
#error "libvirtiofs needs C++20: compile with -std=c++20 (or later)"
#endif

// Only what is marked VIRTIOFS_API leaves libvirtiofs.so (it is built with -fvisibility=hidden
// and lib/virtiofs.map).
#if defined(VIRTIOFS_BUILDING)
#define VIRTIOFS_API __attribute__((visibility("default")))
#else
#define VIRTIOFS_API
#endif
