// fer-bench: training and inference throughput of an architecture on this machine.
#include <CLI/CLI.hpp>
#include <torch/torch.h>
#include <chrono>
#include <cstdio>

#include "app_common.h"
#include "fer/common/precision.h"
#include "fer/data/augment.h"
#include "fer/engine/engine.h"
#include "fer/engine/optim.h"
#include "fer/explain/deepshap.h"
#include "fer/explain/lime.h"
#include "fer/inference/inference.h"
#include "fer/models/model.h"
#include "fer/report/runtime.h"

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
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
  auto run_epoch = [&] {
    trainer.progress().max_epochs = trainer.progress().epoch + 1;
    trainer.train();
    if (device.is_cuda()) torch::cuda::synchronize();
  };
  run_epoch();  // warm-up: heap growth, kernel selection
  int64_t images = 0;
  const auto t0 = std::chrono::steady_clock::now();
  while (seconds_since(t0) < min_seconds) {
    run_epoch();
    images += trainer.progress().images_in_epoch;
  }
  return images / seconds_since(t0);
}

// Images/s of the library's prediction path (softmax, host copy) at one batch size.
double inference_rate(fer::ClassifierImpl& model, fer::Precision precision, int64_t batch, const torch::Device& device,
                      const torch::Tensor& pool, double min_seconds) {
  fer::PredictOptions predict;
  predict.batch_size = batch;  // one forward pass per batch
  predict.precision = precision;
  const auto images = pool.slice(0, 0, batch);
  fer::predict_probabilities(model, images, device, predict);  // warm-up
  int64_t done = 0;
  const auto t0 = std::chrono::steady_clock::now();
  while (seconds_since(t0) < min_seconds) {
    fer::predict_probabilities(model, images, device, predict);
    done += batch;
  }
  return done / seconds_since(t0);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Measure training and inference images/s of the paper CNN"};
  std::string device_spec = "auto", architecture = "paper_cnn";
  int threads = 0;
  double min_seconds = 3.0;
  std::vector<int64_t> inference_batches{1, 16, 64, 256};
  bool default_allocator = false, skip_explain = false, channels_last = false;
  std::vector<std::string> precision_names{"fp32", "bf16"};
  int explain_images = 5;
  app.add_option("--device", device_spec, "auto | cpu | cuda[:N]")->capture_default_str();
  app.add_option("--threads", threads, "CPU threads (0 = all cores)")->capture_default_str();
  app.add_option("--arch", architecture, "Architecture")->capture_default_str();
  app.add_option("--seconds", min_seconds, "Minimum measuring time per line")->capture_default_str();
  app.add_option("--batches", inference_batches, "Inference batch sizes")->capture_default_str();
  app.add_flag("--default-allocator", default_allocator,
               "Leave glibc malloc's defaults (shows the page-fault slowdown at large batches)");
  app.add_flag("--skip-explain", skip_explain, "Skip the DeepSHAP / LIME timings");
  app.add_option("--precision", precision_names, "Precisions to time (fp32 always; others where the device supports them)")
      ->capture_default_str();
  app.add_flag("--channels-last", channels_last, "Channels-last memory format for weights and activations");
  app.add_option("--explain-images", explain_images, "Images timed for DeepSHAP and LIME")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  return fer_app::run_main([&] {
    const int used_threads = fer_app::configure_runtime(threads, !default_allocator);
    const auto device = fer::resolve_device(device_spec);
    std::printf("# device %s, %d threads, LibTorch %s, allocator %s\n", device.str().c_str(), used_threads,
                TORCH_VERSION, default_allocator ? "glibc defaults" : "keep freed memory");
    fer::ModelOptions options;
    options.architecture = architecture;
    auto model = fer::make_model(options);
    model->to(device);
    torch::manual_seed(0);
    const auto pool = torch::randint(0, 256, {1024, 48, 48}, torch::kUInt8).to(device);

    std::vector<fer::Precision> precisions{fer::Precision::fp32};
    for (const auto& name : precision_names) {
      const auto p = fer::parse_precision(name);
      if (p == fer::Precision::fp32) continue;
      try {
        fer::check_precision_supported(p, device);
        precisions.push_back(p);
      } catch (const std::exception& e) {
        std::printf("# %s skipped: %s\n", name.c_str(), e.what());
      }
    }
    const auto label = [&](fer::Precision p) { return fer::precision_name(p) + (channels_last ? "+cl" : ""); };

    std::vector<double> train_fp32(2);
    for (const auto p : precisions)
      for (bool aug : {true, false}) {
        const double rate = training_rate(options, p, aug, channels_last, device, pool, min_seconds);
        if (p == fer::Precision::fp32) train_fp32[aug] = rate;
        std::printf("train  batch=64   aug=%-3s %-7s %8.1f img/s  (x%.2f fp32)\n", aug ? "on" : "off",
                    label(p).c_str(), rate, rate / train_fp32[aug]);
        std::fflush(stdout);
      }

    if (channels_last) fer::use_channels_last(*model);
    for (int64_t batch : inference_batches) {
      double fp32 = 0;
      for (const auto p : precisions) {
        const double rate = inference_rate(*model, p, batch, device, pool, min_seconds);
        if (p == fer::Precision::fp32) fp32 = rate;
        std::printf("infer  batch=%-4lld         %-7s %8.1f img/s  (x%.2f fp32)\n", static_cast<long long>(batch),
                    label(p).c_str(), rate, rate / fp32);
        std::fflush(stdout);
      }
    }

    if (skip_explain) return 0;
    // Explanations per image: DeepSHAP (100 references, all 7 classes), LIME (1000 samples).
    model->eval();
    const auto images = pool.slice(0, 0, explain_images).to(torch::kCPU).to(torch::kFloat32) / 255.0;
    const auto refs = pool.slice(0, 100, 200).unsqueeze(1).to(torch::kFloat32) / 255.0;
    fer::DeepShapOptions bf16_convs;
    bf16_convs.bf16_convs = true;
    fer::DeepShapOptions shared_passes;  // several images per backward pass (the default on CPU is one)
    shared_passes.max_rows_per_pass = 1024;
    fer::DeepShapExplainer shap(model, refs, device), shap_bf16(model, refs, device, bf16_convs),
        shap_batched(model, refs, device, shared_passes);
    // All seven classes (fer-explain --classes all) and one (--classes pred).
    for (const std::vector<int64_t>& classes : {std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6}, std::vector<int64_t>{3}}) {
      shap.explain(images[0].unsqueeze(0), classes);  // warm-up: kernels are chosen per shape
      const auto started = std::chrono::steady_clock::now();
      double worst = 0;
      for (int i = 0; i < explain_images; ++i)
        worst = std::max(worst, shap.explain(images[i].unsqueeze(0), classes).additivity_error);
      std::printf("explain deepshap refs=100 classes=%zu  %6.3f s/img  (additivity error %.1e)\n", classes.size(),
                  seconds_since(started) / explain_images, worst);
      // The same images through explain_batch, several per backward pass where 1024 rows hold them.
      const auto batch_started = std::chrono::steady_clock::now();
      worst = 0;
      for (const auto& r : shap_batched.explain_batch(images.unsqueeze(1), std::vector<std::vector<int64_t>>(explain_images, classes)))
        worst = std::max(worst, r.additivity_error);
      std::printf("explain deepshap refs=100 classes=%zu  %6.3f s/img  batched, %lld per pass (additivity error %.1e)\n",
                  classes.size(), seconds_since(batch_started) / explain_images,
                  static_cast<long long>(shap_batched.images_per_pass(static_cast<int64_t>(classes.size()))), worst);
      shap_bf16.explain(images[0].unsqueeze(0), classes);  // warm-up
      const auto bf16_started = std::chrono::steady_clock::now();
      for (int i = 0; i < explain_images; ++i) shap_bf16.explain(images[i].unsqueeze(0), classes);
      const double bf16_seconds = seconds_since(bf16_started) / explain_images;
      double deviation = 0;  // largest |bf16 - fp32| over the map's largest |fp32| value
      for (int i = 0; i < explain_images; ++i) {
        const auto exact = shap.explain(images[i].unsqueeze(0), classes).attributions;
        const auto fast = shap_bf16.explain(images[i].unsqueeze(0), classes).attributions;
        deviation = std::max(deviation, ((fast - exact).abs().max() / exact.abs().max()).item<double>());
      }
      std::printf("explain deepshap refs=100 classes=%zu  %6.3f s/img  bf16 convs (maps within %.1e of fp32's scale)\n",
                  classes.size(), bf16_seconds, deviation);
    }
    auto t0 = std::chrono::steady_clock::now();
#if FER_WITH_OPENCV  // LIME's superpixels come from OpenCV
    fer::LimeOptions lime;
    for (const auto p : precisions) {
      const fer::BatchPredictor predictor = fer::probability_predictor(*model, device, p);
      const auto first = images[0].contiguous();
      fer::explain_lime(std::vector<float>(first.data_ptr<float>(), first.data_ptr<float>() + first.numel()), 48, 48,
                        predictor, -1, lime);  // warm-up
      t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < explain_images; ++i) {
        const auto img = images[i].contiguous();
        fer::explain_lime(std::vector<float>(img.data_ptr<float>(), img.data_ptr<float>() + img.numel()), 48, 48,
                          predictor, -1, lime);
      }
      std::printf("explain lime samples=%d %-7s     %6.3f s/img\n", lime.num_samples, label(p).c_str(),
                  seconds_since(t0) / explain_images);
    }
#endif
    return 0;
  });
}
