// Batched prediction over uint8 image sets.
#pragma once

#include <torch/torch.h>

#include "fer/dataset.h"
#include "fer/lime.h"
#include "fer/model.h"

namespace fer {

// "auto" -> CUDA when available, else CPU; "cpu"; "cuda" / "cuda:N".
// Throws std::runtime_error when CUDA is asked for and not available.
torch::Device resolve_device(const std::string& spec);

// Process-wide CPU settings for LibTorch work; returns the threads in use.
// - intra-op threads (0 = all cores);
// - glibc malloc keeps freed memory instead of returning it to the kernel.
//   Without this, every activation above glibc's mmap threshold (e.g. the
//   75 MB first conv output of a 256-image batch) is mmap'd, page-faulted and
//   unmapped on every pass: a 256-image forward pass ran at ~120 img/s instead
//   of ~1000, and a training step at ~210 instead of ~330 img/s (fer-bench).
int configure_cpu_runtime(int threads, bool keep_freed_memory = true);

// The images of `data` as a uint8 tensor [N,48,48] (a copy, CPU).
torch::Tensor images_tensor(const Dataset& data);
torch::Tensor labels_tensor(const Dataset& data);

struct PredictOptions {
  // Images per forward pass; bounds peak memory for large image sets.
  int64_t batch_size = 64;
  bool tta = false;  // average with the horizontally mirrored image
  bool progress = false;
  std::string progress_label = "predict";
};

// Requires images_u8 [N,48,48] uint8. Returns softmax probabilities [N,classes]
// as float32 on the CPU. Puts the model in eval mode.
torch::Tensor predict_probabilities(ClassifierImpl& model, const torch::Tensor& images_u8, const torch::Device& device,
                                    const PredictOptions& options = {});

// A LIME predictor over `model`: float images [n, 48*48] in [0,1] -> softmax
// probabilities [n, classes], computed on `device`. The model must outlive it.
BatchPredictor probability_predictor(ClassifierImpl& model, const torch::Device& device);

}  // namespace fer
