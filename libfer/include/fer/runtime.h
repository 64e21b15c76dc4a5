// Process-wide settings, made once by a program at its start (the apps, the
// test binary), never by the library's functions.
#pragma once

namespace fer {

// CPU settings for LibTorch work; returns the threads in use.
// - intra-op threads (0 = all cores);
// - glibc malloc keeps freed memory instead of returning it to the kernel.
//   Without this, every activation above glibc's mmap threshold (e.g. the
//   75 MB first conv output of a 256-image batch) is mmap'd, page-faulted and
//   unmapped on every pass: a 256-image forward pass ran at ~120 img/s instead
//   of ~1000, and a training step at ~210 instead of ~330 img/s (fer-bench).
int configure_cpu_runtime(int threads, bool keep_freed_memory = true);

}  // namespace fer
