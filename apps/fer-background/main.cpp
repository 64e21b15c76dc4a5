// fer-background: store a DeepSHAP background (k-means centroids of the
// training faces) inside a checkpoint, so fer-explain needs no dataset.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>

#include "app_common.h"
#include "fer/data/dataset.h"
#include "fer/explain/background.h"
#include "fer/inference/inference.h"
#include "fer/report/runtime.h"

int main(int argc, char** argv) {
  CLI::App app{"Add a DeepSHAP background summary (k-means centroids of the training faces) to a checkpoint, atomically"};
  std::string model = fer_app::kDefaultSmallModel, data;
  fer::KmeansOptions options;
  bool show = false;
  app.add_option("--model", model, "Checkpoint (.pt) or shipped model name (paper_cnn, ...)")->capture_default_str();
  app.add_option("--data", data, "FER-2013 CSV whose training split is summarised (default: $FER2013_CSV, data/fer2013.csv)");
  app.add_option("--k", options.k, "Clusters")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--min-cluster-faces", options.min_cluster_faces, "Each centroid is the mean of at least this many faces")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--seed", options.seed, "k-means++ seeding")->capture_default_str();
  app.add_flag("--show", show, "Only say what background the checkpoint stores");
  if (const auto status = fer_app::parse_command_line(app, argc, argv)) return *status;

  return fer_app::run_main([&] {
    model = fer_app::resolve_model(model);
    if (show) {
      const auto stored = fer::load_background(model);
      if (!stored) std::printf("%s stores no SHAP background\n", model.c_str());
      else
        std::printf("%s: %lld k-means centroids of %lld training faces\n", model.c_str(),
                    static_cast<long long>(stored->centroids.size(0)), static_cast<long long>(stored->faces));
      return 0;
    }
    fer_app::configure_runtime(0);
    const std::string source = fer_app::resolve_data_path(data);
    const auto meta = fer::read_checkpoint_meta(model).model;  // references are the model's inputs: its size and normalisation
    const auto splits = fer::load_dataset(source, static_cast<int>(meta.image_size));
    const auto started = std::chrono::steady_clock::now();
    options.normalize = fer::parse_input_normalization(meta.normalize);
    const auto summary = fer::kmeans_background(fer::images_tensor(splits.train), options);
    fer::add_background_to_checkpoint(model, summary);
    std::printf("%s: stored %lld k-means centroids of %lld training faces of %s (%.1f s)\n", model.c_str(),
                static_cast<long long>(summary.centroids.size(0)), static_cast<long long>(summary.faces), source.c_str(),
                std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    return 0;
  });
}
