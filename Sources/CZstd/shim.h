// Shim for libzstd (libzstd-dev): checkpoint and per-sample store compression.
#pragma once
#include <zstd.h>
