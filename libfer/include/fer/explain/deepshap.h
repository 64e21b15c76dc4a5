// DeepSHAP (as in the shap library's DeepExplainer): DeepLIFT "rescale"
// multipliers backpropagated from an input against K background references,
// averaged over the references.
//
//   fer::DeepShapExplainer shap(model, background /*[K,1,48,48] in [0,1]*/, torch::kCPU);
//   auto r = shap.explain(image /*[1,48,48]*/, {0, 1, 2, 3, 4, 5, 6});
//   // r.attributions[c] sums to r.outputs[c] - r.expected[c] (additivity)
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <vector>

#include "fer/models/model.h"

namespace fer {

struct DeepShapOptions {
  bool explain_probabilities = false;  // default: explain logits
  // [K] positive weights of the references (a k-means summary's cluster
  // shares): attributions and E f become weighted means. Empty: uniform.
  at::Tensor background_weights;
  // Rows of one backward pass (image x class x reference): explain_batch puts
  // as many images in a pass as fit. Memory per pass ~ rows x the largest
  // activation (1024 rows x 32x48x48 floats = 302 MB for the paper CNN).
  // 0: one image per pass on CPU (fastest there), 8192 rows elsewhere.
  int64_t max_rows_per_pass = 0;
  // The multipliers go back through each stride-1 conv in bf16 (the rest
  // stays fp32): ~1.8x on CPUs with AMX/AVX512-BF16, attributions off
  // fp32's by a few 1e-3 of their scale (README).
  bool bf16_convs = false;
  // The fast path's per-pair multipliers (ReLU, tiling max-pool) come from
  // fused CPU loops on CPU; false runs the tensor-op version that other devices
  // use (the tests hold both to the reference path).
  bool fused_cpu_kernels = true;
};

struct DeepShapResult {
  at::Tensor attributions;     // [classes.size(), H, W] float, CPU
  std::vector<int64_t> classes;   // which output each row explains
  at::Tensor outputs;          // f(input) for every output [num_classes]
  at::Tensor expected;         // (weighted) mean f(reference) for every output [num_classes]
  // max over explained classes of |sum(attr) - (f - E f)| / max(1, |f|)
  double additivity_error = 0;
};

class DeepShapExplainer {
 public:
  // Requires a model whose sequential_layers() are all of: Conv2d, Linear,
  // BatchNorm1d/2d, Dropout, Flatten (linear in eval mode), ReLU, MaxPool2d
  // (overlapping windows too: a position picked by several windows sums their shares).
  // Throws std::invalid_argument naming the first unsupported layer, or when
  // the model exposes no layer sequence. The model is put in eval mode and its
  // parameters stop requiring gradients (explanation needs input gradients only).
  // background: [K,C,H,W] float, K >= 1.
  DeepShapExplainer(Classifier model, const at::Tensor& background, const c10::Device& device,
                    DeepShapOptions options = {});
  ~DeepShapExplainer();
  DeepShapExplainer(DeepShapExplainer&&) noexcept;
  DeepShapExplainer& operator=(DeepShapExplainer&&) noexcept;

  // image: [C,H,W] float (same preprocessing as training). Returns one map per
  // requested class (summed over channels).
  //
  // The fast path: one forward pass of the single input (its activations are
  // the same for every reference), then the DeepLIFT multipliers of all
  // classes x references propagated backwards in one batched pass written
  // layer by layer.
  DeepShapResult explain(const at::Tensor& image, const std::vector<int64_t>& classes);

  // Several images: images [B,C,H,W], classes[b] the classes of image b (the
  // same number for every image). Images go through the backward pass
  // together, images_per_pass() at a time; results equal explain()'s, image
  // by image. Throws std::invalid_argument on mismatched sizes.
  std::vector<DeepShapResult> explain_batch(const at::Tensor& images, const std::vector<std::vector<int64_t>>& classes);
  // How many images explain_batch puts in one pass (at least 1).
  int64_t images_per_pass(int64_t classes_per_image) const;

  // The reference path: the input repeated K times through autograd with the
  // rules as custom autograd functions, one backward pass per class. Slower;
  // the tests hold explain() to it.
  DeepShapResult explain_reference(const at::Tensor& image, const std::vector<int64_t>& classes);

  int64_t background_size() const { return background_.size(0); }

  // One per supported layer type, chosen once in the constructor (deepshap.cpp).
  class LayerRule;
  // The multipliers flowing back through the fast path.
  struct Backward;

 private:
  at::Tensor forward_with_rules(const at::Tensor& x);
  std::vector<DeepShapResult> explain_pass(const at::Tensor& images, const std::vector<std::vector<int64_t>>& classes);
  DeepShapResult finish(const at::Tensor& outputs, const std::vector<int64_t>& classes,
                        std::vector<at::Tensor> maps) const;
  // Mean over the references along `dim` (weighted when weights were given).
  at::Tensor reference_mean(const at::Tensor& x, int64_t dim) const;

  Classifier model_;
  std::vector<std::unique_ptr<LayerRule>> rules_;  // one per layer of model_->sequential_layers()
  c10::Device device_;
  DeepShapOptions options_;
  at::Tensor background_;                 // [K,C,H,W] on device
  at::Tensor weights_;                    // [K] summing to 1, or undefined (uniform)
  std::vector<at::Tensor> ref_inputs_;    // the references' input to each layer
  at::Tensor ref_logits_;                 // [K, classes]
  at::Tensor ref_outputs_;                // logits or probabilities [K, classes]
};

}  // namespace fer
