// Deployable forms of a trained classifier, for programs without libfer:
// ONNX (OpenCV's DNN module, ONNX Runtime, TensorRT), self-contained
// TorchScript (Python's torch.jit.load, LibTorch's torch::jit::load) and an
// int8 TorchScript (post-training static quantization). All are
// written from the model's layer chain (Conv, BatchNorm, ReLU, MaxPool,
// Flatten, Linear; Dropout dropped), so every registry architecture exports.
//
//   auto ckpt = fer::load_checkpoint("experiments/fer2013_paper_cnn_long/best.pt", torch::kCPU);
//   fer::save_onnx("fer.onnx", ckpt);
//   // elsewhere, with OpenCV only:
//   cv::dnn::Net net = cv::dnn::readNetFromONNX("fer.onnx");
//   net.setInput(cv::dnn::blobFromImage(face48_gray, 1.0 / 255));  // [1,1,48,48] in [0,1]
//   cv::Mat probabilities = net.forward();                           // [1,7], class_names order
//
// The exported graph: input "image" float [N,1,48,48], pixels / 255 (no
// mean/std); a model trained at a smaller input_size centre-crops inside the
// graph, as libfer's predict does. Output "probabilities" [N,classes] (softmax)
// or, with ExportOutput::logits, "logits". The checkpoint's metadata (class
// names, preprocessing, model options, its info) travels along: ONNX
// metadata_props "libfer_meta" (read back with onnx_metadata()), TorchScript
// extra file "libfer_export.json". load_checkpoint() reads both TorchScript
// forms back as a Classifier, so fer-eval and fer-live run them by path.
#pragma once

#include <map>
#include <string>

#include "fer/common/enum_names.h"
#include "fer/data/dataset.h"
#include "fer/models/checkpoint.h"

namespace fer {

enum class ExportOutput { probabilities, logits };
// "probabilities" | "logits"; throws std::invalid_argument naming the choices.
const EnumNames<ExportOutput>& export_output_names();  // probabilities, logits
ExportOutput parse_export_output(const std::string& name);
std::string export_output_name(ExportOutput output);

struct ExportOptions {
  ExportOutput output = ExportOutput::probabilities;
  // The graph's input side; must be >= the model's input_size (centre crop
  // inside). 0: the model's image_size (the faces it was trained on).
  int64_t image_size = 0;
};

// A serialized onnx.ModelProto (IR version 7, opset 13) of `checkpoint`'s model.
// Throws std::invalid_argument for a layer without an exporter or an
// image_size below the model's input_size.
std::string onnx_model_bytes(const LoadedCheckpoint& checkpoint, const ExportOptions& options = {});
// onnx_model_bytes written atomically to `path`. Throws std::runtime_error when it cannot be written.
void save_onnx(const std::string& path, const LoadedCheckpoint& checkpoint, const ExportOptions& options = {});

// ModelProto's metadata_props of an ONNX file (key -> value). Throws
// std::runtime_error naming the file when it cannot be read or parsed.
std::map<std::string, std::string> onnx_metadata(const std::string& path);

// A TorchScript module with forward(image) as above (input [N,1,image_size,
// image_size], output probabilities or logits) and no libfer types: Python runs
// it with torch.jit.load(path)(x). Throws as onnx_model_bytes, and
// std::runtime_error when it cannot be written.
void save_torchscript(const std::string& path, const LoadedCheckpoint& checkpoint, const ExportOptions& options = {});

// save_torchscript's module in int8: post-training static quantization with
// activation ranges observed on `calibration_u8` (uint8 [N,S,S] faces, e.g.
// Training images; never the images it will be evaluated on). Conv/linear
// weights int8 per output channel (a batch norm right after one folded in,
// the ReLU after fused), activations uint8 per tensor; batch norms after a
// ReLU run as quantized batch norms. Runs on the CPU with LibTorch's quantized
// engine (use_quantized_engine(): oneDNN, else QNNPACK), recorded in the
// metadata under export.quantization. Requires a defined non-empty uint8
// [N,S,S] calibration tensor, S the model's image_size (else std::invalid_argument); throws as
// save_torchscript, and std::runtime_error when LibTorch has no quantized engine.
void save_int8(const std::string& path, const LoadedCheckpoint& checkpoint, const at::Tensor& calibration_u8,
               const ExportOptions& options = {});

// `count` images evenly spaced through `split` (all of them when it has fewer)
// as uint8 [count,S,S] (S: its image_size): a calibration set spread over the split with no
// random stream. Throws std::invalid_argument for an empty split or count < 1.
at::Tensor calibration_images(const Dataset& split, int64_t count);

}  // namespace fer
