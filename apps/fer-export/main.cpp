// fer-export: a trained model in a form programs without libfer run: ONNX
// (OpenCV's DNN, ONNX Runtime) or self-contained TorchScript (torch.jit.load).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>

#include "app_common.h"
#include "fer/deploy/export.h"
#include "fer/inference/inference.h"

namespace {

struct ExportArgs {
  std::string model = fer_app::kDefaultModel, format, out, output = "probabilities";
  int64_t image_size = 48;
};

void add_export_options(CLI::App& app, ExportArgs& a) {
  app.add_option("--model", a.model, "Checkpoint (.pt) or shipped model name")->capture_default_str();
  app.add_option("--format", a.format, "onnx | torchscript")->required()->check(CLI::IsMember({"onnx", "torchscript"}));
  app.add_option("--out", a.out, "File to write (replaced atomically)")->required();
  app.add_option("--output", a.output, "What the graph returns: probabilities (softmax) | logits")
      ->capture_default_str()
      ->check(CLI::IsMember({"probabilities", "logits"}));
  app.add_option("--image-size", a.image_size, "Input side of the graph (the model's crop is taken inside)")
      ->capture_default_str();
}

int run_export(const ExportArgs& a) {
  const std::string checkpoint = fer_app::resolve_model(a.model);
  const auto loaded = fer::load_checkpoint(checkpoint, torch::kCPU);
  fer::ExportOptions options;
  options.output = fer::parse_export_output(a.output);
  options.image_size = a.image_size;
  if (a.format == "onnx") fer::save_onnx(a.out, loaded, options);
  else fer::save_torchscript(a.out, loaded, options);
  std::printf("%s: %s of %s (input image [N,%lld,%lld,%lld] float pixels/255, output %s [N,%zu])\n", a.out.c_str(),
              a.format.c_str(), checkpoint.c_str(), static_cast<long long>(loaded.meta.model.in_channels),
              static_cast<long long>(a.image_size), static_cast<long long>(a.image_size), a.output.c_str(),
              loaded.meta.class_names.size());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Export a model to ONNX or TorchScript"};
  ExportArgs args;
  add_export_options(app, args);
  CLI11_PARSE(app, argc, argv);
  return fer_app::run_main([&] { return run_export(args); });
}
