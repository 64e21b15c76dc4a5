// fer-bench: training and inference throughput of an architecture on this machine.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>

#include "app_common.h"
#include "fer/augment.h"
#include "fer/deepshap.h"
#include "fer/lime.h"
#include "fer/inference.h"
#include "fer/model.h"

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Measure training and inference images/s of the paper CNN"};
  std::string device_spec = "auto", architecture = "paper_cnn";
  int threads = 0;
  double min_seconds = 3.0;
  std::vector<int64_t> inference_batches{1, 16, 64, 256};
  bool default_allocator = false, skip_explain = false;
  int explain_images = 5;
  app.add_option("--device", device_spec, "auto | cpu | cuda[:N]")->capture_default_str();
  app.add_option("--threads", threads, "CPU threads (0 = all cores)")->capture_default_str();
  app.add_option("--arch", architecture, "Architecture")->capture_default_str();
  app.add_option("--seconds", min_seconds, "Minimum measuring time per line")->capture_default_str();
  app.add_option("--batches", inference_batches, "Inference batch sizes")->capture_default_str();
  app.add_flag("--default-allocator", default_allocator,
               "Leave glibc malloc's defaults (shows the page-fault slowdown at large batches)");
  app.add_flag("--skip-explain", skip_explain, "Skip the DeepSHAP / LIME timings");
  app.add_option("--explain-images", explain_images, "Images timed for DeepSHAP and LIME")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  return fer_app::run_main([&] {
    const int used_threads = fer::configure_cpu_runtime(threads, !default_allocator);
    const auto device = fer::resolve_device(device_spec);
    std::printf("# device %s, %d threads, LibTorch %s, allocator %s\n", device.str().c_str(), used_threads,
                TORCH_VERSION, default_allocator ? "glibc defaults" : "keep freed memory");
    fer::ModelOptions options;
    options.architecture = architecture;
    auto model = fer::make_model(options);
    model->to(device);
    torch::manual_seed(0);
    const auto pool = torch::randint(0, 256, {1024, 48, 48}, torch::kUInt8).to(device);
    auto sync = [&] {
      if (device.is_cuda()) torch::cuda::synchronize();
    };

    // Training step: gather, augment, forward, backward, Adam.
    for (bool aug : {true, false}) {
      torch::optim::Adam optimizer(model->parameters(), torch::optim::AdamOptions(1e-3));
      auto gen = at::detail::createCPUGenerator(1);
      fer::AugmentOptions augment;
      if (!aug) augment.flip_prob = augment.rotation_deg = augment.zoom = augment.brightness = augment.contrast = 0;
      model->train();
      const int64_t batch = 64;
      auto step = [&](int64_t i) {
        const auto idx = torch::arange(i * batch % 960, i * batch % 960 + batch, torch::kInt64).to(device);
        auto x = fer::augment_batch(fer::to_model_input(pool, idx, device), augment, gen);
        const auto y = torch::randint(0, 7, {batch}, torch::kInt64).to(device);
        optimizer.zero_grad();
        auto loss = torch::nn::functional::cross_entropy(model->forward(x), y);
        loss.backward();
        optimizer.step();
      };
      for (int i = 0; i < 10; ++i) step(i);  // warm-up: heap growth, kernel selection
      sync();
      int64_t images = 0, i = 0;
      const auto t0 = std::chrono::steady_clock::now();
      while (seconds_since(t0) < min_seconds) {
        step(i++);
        images += batch;
        sync();
      }
      std::printf("train  batch=%-4lld aug=%-3s %8.1f img/s\n", static_cast<long long>(batch), aug ? "on" : "off",
                  images / seconds_since(t0));
      std::fflush(stdout);
    }

    // Inference through the library's prediction path (softmax, host copy).
    for (int64_t batch : inference_batches) {
      fer::PredictOptions predict;
      predict.batch_size = batch;  // one forward pass per batch
      const auto images = pool.slice(0, 0, batch);
      fer::predict_probabilities(*model, images, device, predict);  // warm-up
      sync();
      int64_t done = 0;
      const auto t0 = std::chrono::steady_clock::now();
      while (seconds_since(t0) < min_seconds) {
        fer::predict_probabilities(*model, images, device, predict);
        done += batch;
      }
      std::printf("infer  batch=%-4lld         %8.1f img/s\n", static_cast<long long>(batch),
                  done / seconds_since(t0));
      std::fflush(stdout);
    }

    if (skip_explain) return 0;
    // Explanations per image: DeepSHAP (100 references, all 7 classes), LIME (1000 samples).
    model->eval();
    const auto images = pool.slice(0, 0, explain_images).to(torch::kCPU).to(torch::kFloat32) / 255.0;
    const auto refs = pool.slice(0, 100, 200).unsqueeze(1).to(torch::kFloat32) / 255.0;
    fer::DeepShapExplainer shap(model, refs, device);
    const std::vector<int64_t> all_classes{0, 1, 2, 3, 4, 5, 6};
    shap.explain(images[0].unsqueeze(0), all_classes);  // warm-up: kernels are chosen per shape
    auto t0 = std::chrono::steady_clock::now();
    double worst = 0;
    for (int i = 0; i < explain_images; ++i)
      worst = std::max(worst, shap.explain(images[i].unsqueeze(0), all_classes).additivity_error);
    std::printf("explain deepshap refs=100 classes=7  %6.3f s/img  (additivity error %.1e)\n",
                seconds_since(t0) / explain_images, worst);
    const fer::BatchPredictor predictor = fer::probability_predictor(*model, device);
    fer::LimeOptions lime;
    const auto first = images[0].contiguous();
    fer::explain_lime(std::vector<float>(first.data_ptr<float>(), first.data_ptr<float>() + first.numel()), 48, 48,
                      predictor, -1, lime);  // warm-up
    t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < explain_images; ++i) {
      const auto img = images[i].contiguous();
      fer::explain_lime(std::vector<float>(img.data_ptr<float>(), img.data_ptr<float>() + img.numel()), 48, 48,
                        predictor, -1, lime);
    }
    std::printf("explain lime samples=%d             %6.3f s/img\n", lime.num_samples,
                seconds_since(t0) / explain_images);
    return 0;
  });
}
