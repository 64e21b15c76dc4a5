// fer-bench: training and inference throughput of an architecture on this machine.
#include <CLI/CLI.hpp>
#include <torch/torch.h>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <unistd.h>

#include "app_common.h"
#include "fer/common/emotions.h"
#include "fer/common/precision.h"
#include "fer/data/augment.h"
#include "fer/deploy/export.h"
#include "fer/engine/engine.h"
#include "fer/engine/optim.h"
#include "fer/explain/attribution.h"
#include "fer/explain/deepshap.h"
#include "fer/explain/lime.h"
#include "fer/inference/inference.h"
#include "fer/models/model.h"
#include "fer/report/runtime.h"

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Items per second of `run`, which returns the items one call handled: one
// warm-up call (heap growth, kernel selection), then calls until min_seconds
// have passed (at least one).
template <typename Run>
double items_per_second(const Run& run, double min_seconds) {
  run();
  double items = 0;
  const auto t0 = std::chrono::steady_clock::now();
  do {
    items += static_cast<double>(run());
  } while (seconds_since(t0) < min_seconds);
  return items / seconds_since(t0);
}

// Images/s of fer-train's own step (fer::SupervisedTrainer: gather, augment,
// autocast forward, backward, Adam) over epochs of a 1,024-image pool.
double training_rate(const fer::ModelOptions& options, fer::Precision precision, bool augment, bool channels_last,
                     const torch::Device& device, const torch::Tensor& pool, double min_seconds) {
  torch::manual_seed(0);
  auto model = fer::make_model(options);
  model->to(device);
  if (channels_last) fer::use_channels_last(*model);
  fer::StepOptions step;
  step.batch_size = 64;
  step.precision = precision;
  step.channels_last = channels_last;
  if (!augment) step.augment.flip_prob = step.augment.rotation_deg = step.augment.zoom = step.augment.brightness =
      step.augment.contrast = 0;
  const auto labels = torch::randint(0, 7, {pool.size(0)}, torch::kInt64).to(device);
  fer::SupervisedTrainer trainer(model, fer::make_optimizer(model->parameters(), {}), {pool, labels}, step, device);
  return items_per_second(
      [&] {
        trainer.progress().max_epochs = trainer.progress().epoch + 1;
        trainer.train();
        if (device.is_cuda()) torch::cuda::synchronize();
        return trainer.progress().images_in_epoch;
      },
      min_seconds);
}

// Images/s of the library's prediction path (softmax, host copy) at one batch size.
double inference_rate(fer::ClassifierImpl& model, fer::Precision precision, int64_t batch, const torch::Device& device,
                      const torch::Tensor& pool, double min_seconds) {
  fer::PredictOptions predict;
  predict.batch_size = batch;  // one forward pass per batch
  predict.precision = precision;
  const auto images = pool.slice(0, 0, batch);
  return items_per_second(
      [&] {
        fer::predict_probabilities(model, images, device, predict);
        return batch;
      },
      min_seconds);
}

struct BenchArgs {
  std::string device = "auto", architecture = "paper_cnn";
  int threads = 0, explain_images = 5;
  double min_seconds = 3.0;
  std::vector<int64_t> inference_batches{1, 16, 64, 256};
  bool default_allocator = false, skip_explain = false, channels_last = false, int8 = false;
  std::vector<std::string> precisions{"fp32", "bf16"};
};

void add_bench_options(CLI::App& app, BenchArgs& a) {
  app.add_option("--device", a.device, "auto | cpu | cuda[:N]")->capture_default_str();
  app.add_option("--threads", a.threads, "CPU threads (0 = OMP_NUM_THREADS when set, else all cores)")->capture_default_str();
  app.add_option("--arch", a.architecture, "Architecture")->capture_default_str();
  app.add_option("--seconds", a.min_seconds, "Minimum measuring time per line")->capture_default_str();
  app.add_option("--batches", a.inference_batches, "Inference batch sizes")->capture_default_str();
  app.add_flag("--default-allocator", a.default_allocator,
               "Leave glibc malloc's defaults (shows the page-fault slowdown at large batches)");
  app.add_flag("--skip-explain", a.skip_explain, "Skip the explanation timings (DeepSHAP, LIME, attribution maps)");
  app.add_option("--precision", a.precisions, "Precisions to time (fp32 always; others where the device supports them)")
      ->check(CLI::IsMember({"fp32", "bf16", "fp16"}))
      ->capture_default_str();
  app.add_flag("--channels-last", a.channels_last, "Channels-last memory format for weights and activations");
  app.add_flag("--int8", a.int8, "Also time the model's int8 form (fer-export --format int8; CPU)");
  app.add_option("--explain-images", a.explain_images, "Images timed for DeepSHAP and LIME")->capture_default_str();
}

// What one benchmark run measures with.
struct Bench {
  BenchArgs args;
  torch::Device device;
  fer::ModelOptions options;
  fer::Classifier model;
  torch::Tensor pool;                     // 1,024 random uint8 faces on the device
  std::vector<fer::Precision> precisions;  // fp32 first, then those the device supports
  std::string label(fer::Precision p) const { return fer::precision_name(p) + (args.channels_last ? "+cl" : ""); }
};

// fp32, then each other precision asked for that the device runs (the rest reported as skipped).
std::vector<fer::Precision> supported_precisions(const std::vector<std::string>& names, const torch::Device& device) {
  std::vector<fer::Precision> precisions{fer::Precision::fp32};
  for (const auto& name : names) {
    const auto p = fer::parse_precision(name);
    if (p == fer::Precision::fp32) continue;
    try {
      fer::check_precision_supported(p, device);
      precisions.push_back(p);
    } catch (const std::exception& e) {
      std::printf("# %s skipped: %s\n", name.c_str(), e.what());
    }
  }
  return precisions;
}

void bench_training(const Bench& b) {
  std::vector<double> fp32(2);
  for (const auto p : b.precisions)
    for (bool aug : {true, false}) {
      const double rate = training_rate(b.options, p, aug, b.args.channels_last, b.device, b.pool, b.args.min_seconds);
      if (p == fer::Precision::fp32) fp32[aug] = rate;
      std::printf("train  batch=64   aug=%-3s %-7s %8.1f img/s  (x%.2f fp32)\n", aug ? "on" : "off", b.label(p).c_str(),
                  rate, rate / fp32[aug]);
      std::fflush(stdout);
    }
}

// Returns the fp32 rate at each batch size (the int8 lines compare against it).
std::map<int64_t, double> bench_inference(const Bench& b) {
  std::map<int64_t, double> fp32;
  for (int64_t batch : b.args.inference_batches) {
    for (const auto p : b.precisions) {
      const double rate = inference_rate(*b.model, p, batch, b.device, b.pool, b.args.min_seconds);
      if (p == fer::Precision::fp32) fp32[batch] = rate;
      std::printf("infer  batch=%-4lld         %-7s %8.1f img/s  (x%.2f fp32)\n", static_cast<long long>(batch),
                  b.label(p).c_str(), rate, rate / fp32[batch]);
      std::fflush(stdout);
    }
  }
  return fp32;
}

// The model quantized as fer-export does (calibrated on 256 of the pool's
// faces), loaded back as fer-eval loads it, timed through the same predict path.
void bench_int8(const Bench& b, const std::map<int64_t, double>& fp32) {
  if (!b.device.is_cpu()) {
    std::printf("# int8 skipped: it runs on the CPU only\n");
    return;
  }
  fer::LoadedCheckpoint float_model{b.model, {b.options, fer::emotion_names(), {}}, {}};
  const auto path = std::filesystem::temp_directory_path() / ("fer-bench-int8-" + std::to_string(getpid()) + ".pt");
  fer::save_int8(path.string(), float_model, b.pool.slice(0, 0, 256).to(torch::kCPU));
  const auto int8 = fer::load_checkpoint(path.string(), torch::kCPU);
  std::filesystem::remove(path);
  for (int64_t batch : b.args.inference_batches) {
    const double rate = inference_rate(*int8.model, fer::Precision::fp32, batch, b.device, b.pool, b.args.min_seconds);
    std::printf("infer  batch=%-4lld         %-7s %8.1f img/s  (x%.2f fp32)\n", static_cast<long long>(batch), "int8",
                rate, rate / fp32.at(batch));
    std::fflush(stdout);
  }
}

// Seconds per image of explain() over `images`, and the worst additivity error.
std::pair<double, double> time_deepshap(fer::DeepShapExplainer& shap, const torch::Tensor& images,
                                        const std::vector<int64_t>& classes) {
  shap.explain(images[0].unsqueeze(0), classes);  // warm-up: kernels are chosen per shape
  const auto started = std::chrono::steady_clock::now();
  double worst = 0;
  for (int64_t i = 0; i < images.size(0); ++i)
    worst = std::max(worst, shap.explain(images[i].unsqueeze(0), classes).additivity_error);
  return {seconds_since(started) / images.size(0), worst};
}

// Largest |bf16 - fp32| over the map's largest |fp32| value, over `images`.
double bf16_deviation(fer::DeepShapExplainer& exact, fer::DeepShapExplainer& fast, const torch::Tensor& images,
                      const std::vector<int64_t>& classes) {
  double deviation = 0;
  for (int64_t i = 0; i < images.size(0); ++i) {
    const auto a = exact.explain(images[i].unsqueeze(0), classes).attributions;
    const auto b = fast.explain(images[i].unsqueeze(0), classes).attributions;
    deviation = std::max(deviation, ((b - a).abs().max() / a.abs().max()).item<double>());
  }
  return deviation;
}

// DeepSHAP per image (100 references), all seven classes (--classes all) and one (--classes pred):
// one image per pass, several per pass (1,024 rows), and bf16 convs.
void bench_deepshap(const Bench& b, const torch::Tensor& images) {
  const auto refs = b.pool.slice(0, 100, 200).unsqueeze(1).to(torch::kFloat32) / 255.0;
  fer::DeepShapOptions bf16_convs, shared_passes;
  bf16_convs.bf16_convs = true;
  shared_passes.max_rows_per_pass = 1024;
  fer::DeepShapExplainer shap(b.model, refs, b.device), shap_bf16(b.model, refs, b.device, bf16_convs),
      shap_batched(b.model, refs, b.device, shared_passes);
  const auto n = images.size(0);
  for (const std::vector<int64_t>& classes : {std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6}, std::vector<int64_t>{3}}) {
    const auto [seconds, worst] = time_deepshap(shap, images, classes);
    std::printf("explain deepshap refs=100 classes=%zu  %6.3f s/img  (additivity error %.1e)\n", classes.size(),
                seconds, worst);
    const auto batch_started = std::chrono::steady_clock::now();
    double batch_worst = 0;
    for (const auto& r : shap_batched.explain_batch(images.unsqueeze(1), std::vector<std::vector<int64_t>>(n, classes)))
      batch_worst = std::max(batch_worst, r.additivity_error);
    std::printf("explain deepshap refs=100 classes=%zu  %6.3f s/img  batched, %lld per pass (additivity error %.1e)\n",
                classes.size(), seconds_since(batch_started) / n,
                static_cast<long long>(shap_batched.images_per_pass(static_cast<int64_t>(classes.size()))), batch_worst);
    const double bf16_seconds = time_deepshap(shap_bf16, images, classes).first;
    std::printf("explain deepshap refs=100 classes=%zu  %6.3f s/img  bf16 convs (maps within %.1e of fp32's scale)\n",
                classes.size(), bf16_seconds, bf16_deviation(shap, shap_bf16, images, classes));
  }
}

// LIME per image (1,000 samples) at each precision; LIME's superpixels come from OpenCV.
void bench_lime(const Bench& b, const torch::Tensor& images) {
#if FER_WITH_OPENCV
  fer::LimeOptions lime;
  const auto pixels = [&](int64_t i) {
    const auto img = images[i].contiguous();
    return std::vector<float>(img.data_ptr<float>(), img.data_ptr<float>() + img.numel());
  };
  for (const auto p : b.precisions) {
    const fer::BatchPredictor predictor = fer::probability_predictor(*b.model, b.device, p);
    fer::explain_lime(pixels(0), 48, 48, predictor, -1, lime);  // warm-up
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < images.size(0); ++i) fer::explain_lime(pixels(i), 48, 48, predictor, -1, lime);
    std::printf("explain lime samples=%d %-7s     %6.3f s/img\n", lime.num_samples, b.label(p).c_str(),
                seconds_since(t0) / images.size(0));
  }
#else
  (void)b, (void)images;
#endif
}

// Seconds per face of `run` on `batch` faces.
template <typename Run>
double seconds_per_face(const Run& run, int64_t batch, double min_seconds) {
  return 1.0 / items_per_second(
                   [&] {
                     run();
                     return batch;
                   },
                   min_seconds);
}

// Each attribution map's cost at batch 1 and 64 (fp32, fer::attribute's
// defaults: 64 integrated-gradients steps, SmoothGrad 25 copies of saliency,
// occlusion 8x8 patches at stride 4), and as a multiple of one forward+backward.
void bench_attributions(const Bench& b) {
  const auto faces = (b.pool.slice(0, 0, 64).to(torch::kFloat32) / 255.0).unsqueeze(1);
  const auto classes = torch::arange(64, torch::TensorOptions(torch::kLong).device(b.device)) % 7;
  for (const int64_t batch : {int64_t{1}, int64_t{64}}) {
    const auto x = faces.slice(0, 0, batch);
    const auto y = classes.slice(0, 0, batch);
    const double pass = seconds_per_face(
        [&] {
          auto input = x.clone().requires_grad_(true);  // the input's gradient alone, as the maps take it
          torch::autograd::grad({b.model->forward(input).gather(1, y.view({-1, 1})).sum()}, {input});
        },
        batch, b.args.min_seconds);
    std::printf("explain forward+backward batch=%-3lld %8.3f ms/face  (the input's gradient)\n", static_cast<long long>(batch), pass * 1e3);
    std::vector<std::pair<std::string, fer::AttributionOptions>> methods;
    for (const auto& [name, method] : fer::attribution_method_names().names) methods.push_back({name, {}});
    methods.push_back({"smoothgrad", {}});
    methods.back().second.smoothgrad_samples = 25;
    for (const auto& [name, options] : methods) {
      const auto method = name == "smoothgrad" ? fer::AttributionMethod::saliency : fer::attribution_method_names().parse(name);
      const double seconds =
          seconds_per_face([&] { fer::attribute(*b.model, x, y, method, options); }, batch, b.args.min_seconds);
      std::printf("explain %-20s batch=%-3lld %8.3f ms/face  (x%.1f forward+backward)\n", name.c_str(),
                  static_cast<long long>(batch), seconds * 1e3, seconds / pass);
      std::fflush(stdout);
    }
  }
}

int run_bench(const BenchArgs& a) {
  const int used_threads = fer_app::configure_runtime(a.threads, !a.default_allocator);
  Bench b{a, fer::resolve_device(a.device), {}, nullptr, {}, {}};
  std::printf("# device %s, %d threads, LibTorch %s, allocator %s\n", b.device.str().c_str(), used_threads,
              TORCH_VERSION, a.default_allocator ? "glibc defaults" : "keep freed memory");
  b.options.architecture = a.architecture;
  b.model = fer::make_model(b.options);
  b.model->to(b.device);
  torch::manual_seed(0);
  b.pool = torch::randint(0, 256, {1024, 48, 48}, torch::kUInt8).to(b.device);
  b.precisions = supported_precisions(a.precisions, b.device);
  bench_training(b);
  if (a.channels_last) fer::use_channels_last(*b.model);
  const auto fp32 = bench_inference(b);
  if (a.int8) bench_int8(b, fp32);
  if (a.skip_explain) return 0;
  b.model->eval();
  const auto images = b.pool.slice(0, 0, a.explain_images).to(torch::kCPU).to(torch::kFloat32) / 255.0;
  bench_deepshap(b, images);
  bench_lime(b, images);
  bench_attributions(b);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Measure training and inference images/s of the paper CNN"};
  BenchArgs args;
  add_bench_options(app, args);
  if (const auto status = fer_app::parse_command_line(app, argc, argv)) return *status;
  return fer_app::run_main([&] { return run_bench(args); });
}
