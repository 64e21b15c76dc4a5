// Batched prediction over uint8 image sets.
#pragma once

#include <torch/torch.h>

#include "fer/dataset.h"
#include "fer/model.h"

namespace fer {

// "auto" -> CUDA when available, else CPU; "cpu"; "cuda" / "cuda:N".
// Throws std::runtime_error when CUDA is asked for and not available.
torch::Device resolve_device(const std::string& spec);

// Sets LibTorch's intra-op threads (0 = all cores); returns the number in use.
int configure_threads(int threads);

// The images of `data` as a uint8 tensor [N,48,48] (a copy, CPU).
torch::Tensor images_tensor(const Dataset& data);
torch::Tensor labels_tensor(const Dataset& data);

struct PredictOptions {
  // Images per forward pass. Large CPU batches are split into chunks of this
  // size: with Debian's LibTorch a 256-image forward pass is several times
  // slower per image than four of 64 (see fer-bench).
  int64_t batch_size = 64;
  bool tta = false;  // average with the horizontally mirrored image
  bool progress = false;
  std::string progress_label = "predict";
};

// Requires images_u8 [N,48,48] uint8. Returns softmax probabilities [N,classes]
// as float32 on the CPU. Puts the model in eval mode.
torch::Tensor predict_probabilities(ClassifierImpl& model, const torch::Tensor& images_u8, const torch::Device& device,
                                    const PredictOptions& options = {});

}  // namespace fer
