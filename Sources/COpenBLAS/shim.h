// Shim for Debian's OpenBLAS (libopenblas-dev): CBLAS plus the thread-count controls.
#pragma once
#include <cblas.h>
