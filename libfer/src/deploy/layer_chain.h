// A sequential classifier read as a plain list of inference-mode layers: what
// every exporter (ONNX, TorchScript, int8) walks. Dropout is left out (the
// identity at inference); everything else maps one to one.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "fer/deploy/export.h"
#include "fer/models/model.h"

namespace torch::jit {
struct Module;
}  // namespace torch::jit

namespace fer::deploy {

enum class LayerKind { conv, batch_norm, relu, max_pool, flatten, linear };

struct ChainLayer {
  LayerKind kind = LayerKind::relu;
  std::string name;  // the module's registered name (e.g. block1_conv_1)
  // conv and linear: weight, bias (undefined when the layer has none);
  // batch_norm: weight (scale), bias, running mean and variance, eps.
  at::Tensor weight, bias, mean, var;
  double eps = 0;
  // conv and max_pool, 2-D: kernel, stride, dilation, and pads in ONNX's order
  // (top, left, bottom, right); conv's groups.
  std::vector<int64_t> kernel, stride, dilation, pads;
  int64_t groups = 1;
};

// The layers of `model` (detached CPU float32 copies of its tensors).
// Requires model.sequential_layers() non-empty and made of Conv2d (zero
// padding), BatchNorm1d/2d (affine, running statistics), ReLU, MaxPool2d
// (floor mode), Dropout, Flatten (from dimension 1 to the end) and Linear.
// Throws std::invalid_argument naming the first layer it cannot export.
std::vector<ChainLayer> layer_chain(ClassifierImpl& model);

// The graph's input side: options.image_size, else (0) the model's image_size.
int64_t export_image_size(const LoadedCheckpoint& checkpoint, const ExportOptions& options);

// The offset of the centre crop from the export's image size to the model's
// input_size (center_crop's: rounded down). Throws std::invalid_argument
// when that size is below input_size.
int64_t crop_offset(const LoadedCheckpoint& checkpoint, const ExportOptions& options);

// What travels with an exported model: the checkpoint's metadata plus
// "export": input name and shape, output name and kind, libfer's version.
nlohmann::json export_metadata(const LoadedCheckpoint& checkpoint, const ExportOptions& options);

constexpr const char* kInputName = "image";

// TorchScript source for generated forward() methods: `input` centre-cropped
// to the model's input_size (the name alone when the sizes are equal), an int
// list "[a, b]", and a double that reads back to the same value.
std::string crop_expression(const LoadedCheckpoint& checkpoint, const ExportOptions& options, const std::string& input);
std::string script_ints(const std::vector<int64_t>& values);
std::string script_real(double value);
// "x = torch.max_pool2d(x, ...)" of a max_pool layer (float and quantized tensors alike).
std::string max_pool_statement(const ChainLayer& layer);

// `module` written atomically to `path` with `meta` as its extra file
// kExportMetadataFile (what load_checkpoint reads back). Throws
// std::runtime_error when it cannot be written.
void save_script_module(const std::string& path, torch::jit::Module& module, const nlohmann::json& meta);

}  // namespace fer::deploy
