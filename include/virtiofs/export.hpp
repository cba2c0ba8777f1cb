#pragma once

#if defined(VIRTIOFS_BUILDING)
#define VIRTIOFS_API __attribute__((visibility("default")))
#else
#define VIRTIOFS_API
#endif
