#pragma once

#include "virtiofs/client.hpp"

// `virtiofs bench`: GETATTR round trips at queue depth 1 and 32, 1 MiB sequential reads/writes.
int run_bench(virtiofs::Client& fs, double seconds);
