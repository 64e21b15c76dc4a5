// fer-export: a trained model in a form programs without libfer run: ONNX
// (OpenCV's DNN, ONNX Runtime), self-contained TorchScript (torch.jit.load) or
// int8 TorchScript (post-training static quantization; fer-eval and fer-live
// run it by path).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "app_common.h"
#include "fer/data/dataset.h"
#include "fer/deploy/export.h"
#include "fer/inference/inference.h"

namespace {

enum class Format { onnx, torchscript, int8 };
const fer::EnumNames<Format> kFormats{
    "export format", {{"onnx", Format::onnx}, {"torchscript", Format::torchscript}, {"int8", Format::int8}}};

std::string format_name(Format format) { return kFormats.name(format); }

struct ExportArgs {
  std::string model = fer_app::kDefaultModel, out, data;
  Format format = Format::onnx;
  fer::ExportOutput output = fer::ExportOutput::probabilities;
  int64_t image_size = 0, calibration_images = 2000;
};

void add_export_options(CLI::App& app, ExportArgs& a) {
  app.add_option("--model", a.model, "Checkpoint (.pt) or shipped model name")->capture_default_str();
  fer_app::add_enum_option(app, "--format", a.format, kFormats,
                           "onnx | torchscript | int8 (TorchScript, post-training static quantization)")
      ->required();
  app.add_option("--out", a.out, "File to write (replaced atomically; its folder is created)")->required();
  fer_app::add_enum_option(app, "--output", a.output, fer::export_output_names(),
                           "What the graph returns: probabilities (softmax) | logits");
  app.add_option("--image-size", a.image_size,
                 "Input side of the graph (the model's crop is taken inside); 0: the model's image_size (its faces' side)")
      ->capture_default_str();
  app.add_option("--data", a.data, "int8: FER-2013 CSV(.gz) whose Training images calibrate (else $FER2013_CSV, data/fer2013.csv)");
  app.add_option("--calibration-images", a.calibration_images, "int8: Training images observed, evenly spaced")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
}

int run_export(const ExportArgs& a) {
  const std::string checkpoint = fer_app::resolve_model(a.model);
  const auto loaded = fer::load_checkpoint(checkpoint, torch::kCPU);
  fer::ExportOptions options;
  options.output = a.output;
  options.image_size = a.image_size;
  const int64_t side = a.image_size > 0 ? a.image_size : loaded.meta.model.image_size;
  const auto folder = std::filesystem::path(a.out).parent_path();
  if (!folder.empty()) std::filesystem::create_directories(folder);  // as the other apps create their --out
  if (a.format == Format::onnx) {
    fer::save_onnx(a.out, loaded, options);
  } else if (a.format == Format::torchscript) {
    fer::save_torchscript(a.out, loaded, options);
  } else {
    const auto train =
        fer::load_dataset(fer_app::resolve_data_path(a.data), static_cast<int>(loaded.meta.model.image_size)).train;
    fer::save_int8(a.out, loaded, fer::calibration_images(train, a.calibration_images), options);
  }
  std::printf("%s: %s export of %s (input image [N,%lld,%lld,%lld] float pixels/255, output %s [N,%zu])\n",
              a.out.c_str(), format_name(a.format).c_str(), checkpoint.c_str(), static_cast<long long>(loaded.meta.model.in_channels),
              static_cast<long long>(side), static_cast<long long>(side),
              fer::export_output_name(a.output).c_str(), loaded.meta.class_names.size());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Export a model to ONNX, TorchScript or int8 TorchScript"};
  ExportArgs args;
  add_export_options(app, args);
  if (const auto status = fer_app::parse_command_line(app, argc, argv)) return *status;
  return fer_app::run_main([&] { return run_export(args); });
}
