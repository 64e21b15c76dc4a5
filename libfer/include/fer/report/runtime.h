// Process-wide settings, made once by a program at its start (the apps, the
// test binary), never by the library's functions.
#pragma once

#include <string>

namespace fer {

// CPU settings for LibTorch work; returns the threads in use.
// - intra-op threads (0 = all cores);
// - glibc malloc keeps freed memory instead of returning it to the kernel.
//   Without this, every activation above glibc's mmap threshold (e.g. the
//   75 MB first conv output of a 256-image batch) is mmap'd, page-faulted and
//   unmapped on every pass: a 256-image forward pass ran at ~120 img/s instead
//   of ~1000, and a training step at ~210 instead of ~330 img/s (fer-bench).
int configure_cpu_runtime(int threads, bool keep_freed_memory = true);

// A threads setting of 0 (all cores) yields to OMP_NUM_THREADS when it is set,
// as in PyTorch: torchrun sets 1 per rank, fer-train --nproc cores / ranks, the
// test scripts cores / suites run side by side. Returns `configured` when > 0,
// else OMP_NUM_THREADS when it is a positive number, else 0 (all cores).
int threads_or_omp(int configured);

// Some oneDNN builds compute wrong convolution gradients on some CPUs (seen:
// Debian 13's LibTorch 2.6 with oneDNN 3.7.2 on an AMD EPYC: in a chain of two
// convolutions the first one's weight gradient was 50-80% off, varying from
// run to run; training and DeepSHAP were wrong). Computes that gradient with
// oneDNN and with LibTorch's native kernels, on one thread and on the threads
// in use; when they disagree, turns oneDNN off for the process (correct,
// slower) and returns a sentence saying so for the caller to show; returns ""
// when they agree or LibTorch has no oneDNN. Call after configure_cpu_runtime.
std::string turn_off_onednn_if_its_gradients_are_wrong();

}  // namespace fer
