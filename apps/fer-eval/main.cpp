// fer-eval: evaluate a checkpoint on a split; writes metrics, predictions and charts.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>

#include "app_common.h"
#include "fer/config/config.h"
#include "fer/data/dataset.h"
#include "fer/distributed/distributed.h"
#include "fer/report/evaluate.h"
#include "fer/report/runtime.h"
#include "fer/report/shards.h"
#if FER_WITH_OPENCV
#include "fer/faces/faces.h"
#endif

namespace fs = std::filesystem;

namespace {
void print_result(const fer::EvaluationResult& result) {
  const auto& m = result.metrics;
  std::printf("n %lld  accuracy %.4f  balanced accuracy %.4f  macro F1 %.4f  weighted F1 %.4f  macro AUC %.4f\n",
              static_cast<long long>(m.n), m.accuracy, m.balanced_accuracy, m.macro_f1, m.weighted_f1,
              m.macro_auc.value_or(NAN));
}
void print_files(const std::vector<std::string>& files) {
  std::printf("wrote:\n");
  for (const auto& f : files) std::printf("  %s\n", f.c_str());
}

// --shard K/N, else torchrun's or srun's rank, else the whole split.
fer::ShardSpec chosen_shard(const std::string& text) {
  if (!text.empty()) return fer::parse_shard(text);
  const auto env = fer::DistributedEnv::from_environment();
  return {env.rank, env.world_size};
}

// One shard's slice: its own metrics, plus what --merge needs.
fer::EvaluationResult evaluate_shard(const std::vector<std::string>& models, const fer::Dataset& selected,
                                     const fer::ShardSpec& shard, const std::string& out_dir,
                                     const fer::EvaluationOptions& options) {
  const auto part = fer::dataset_shard(selected, shard);
  std::fprintf(stderr, "shard %d of %d: %zu of %zu images\n", shard.index, shard.count, part.size(), selected.size());
  const auto prediction = fer::predict_checkpoints(models, part, options);
  const auto result = fer::write_evaluation(part.labels, prediction.probabilities, prediction.class_names, out_dir,
                                            options, models);
  fer::write_evaluation_shard(out_dir, shard, selected.size(), part.labels, result, prediction.class_names, options,
                              models);
  return result;
}

// --detect-faces: each photo's largest face, images without one counted.
int evaluate_photos(const std::string& model, const std::string& data_path, const std::string& split,
                    const fer::Config& config, const std::string& out_dir, const fer::EvaluationOptions& options) {
#if FER_WITH_OPENCV
  const fer::FaceDetector detector(config.faces);
  std::fprintf(stderr, "detecting faces with %s (%s)\n", detector.kind().c_str(), detector.model_path().c_str());
  const auto folder = fer::load_image_folder_with_faces(data_path, detector);
  const fer::Dataset& photos = fer::split_of(folder, fer::parse_split_name(split));
  if (photos.size() + photos.no_face.size() == 0)
    throw std::runtime_error("split '" + split + "' of " + data_path + " has no images (choose it with --split)");
  const auto r = fer::evaluate_checkpoint_on_photos(model, photos, out_dir, options);
  std::printf("images %lld: face found in %lld, no face in %lld (listed in %s/no_face.txt)\n",
              static_cast<long long>(r.images), static_cast<long long>(r.with_face),
              static_cast<long long>(r.without_face), out_dir.c_str());
  std::printf("accuracy over images with a face %.4f, over all images %.4f (no face = wrong)\n", r.accuracy_with_face,
              r.accuracy_all_images);
  if (r.with_face > 0) print_result(r.on_faces);
  print_files(r.on_faces.files);
  return 0;
#else
  throw std::runtime_error("--detect-faces needs libfer built with OpenCV (FER_WITH_OPENCV=ON)");
#endif
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Evaluate a checkpoint (or an ensemble): metrics.json, predictions.csv and PNG charts"};
  std::vector<std::string> models{fer_app::kDefaultModel};
  std::string data, split = "val", out, run_dir, device = "auto", tta, precision = "fp32";
  std::string config_path;
  std::vector<std::string> overrides, merge;
  std::string shard_text;
  bool no_charts = false, detect_faces = false;
  int batch_size = 64, threads = 0;
  app.add_option("--model", models,
                 "Checkpoint (.pt), ensemble.json or shipped model name (paper_cnn, ...); several: an ensemble averaging their probabilities")
      ->capture_default_str();
  app.add_option("--data", data, "FER-2013 CSV(.gz) or image-folder root (else $FER2013_CSV, data/fer2013.csv)");
  app.add_option("--split", split, "train | val | test | all")->check(CLI::IsMember({"train", "val", "test", "all"}))->capture_default_str();
  app.add_option("--out", out, "Output directory (default: eval/<split> beside the checkpoint)");
  app.add_option("--run-dir", run_dir, "Training run directory: also plot its history.csv (default: the checkpoint's directory when it has one)");
  app.add_option("--tta", tta,
                 "Test-time augmentation: none, flip (image and mirror; also plain --tta) or tencrop (5 crops x 2 mirrors)")
      ->expected(0, 1)
      ->check(CLI::IsMember({"none", "flip", "tencrop"}));
  app.add_option("--precision", precision, "Inference precision: fp32, bf16 (CPU with AVX512-BF16, or CUDA), fp16 (CUDA)")
      ->check(CLI::IsMember({"fp32", "bf16", "fp16"}))
      ->capture_default_str();
  app.add_option("--batch-size", batch_size, "Images per forward pass")->capture_default_str();
  app.add_option("--device", device, "auto | cpu | cuda[:N]")->capture_default_str();
  app.add_option("--threads", threads, "CPU threads (0 = all cores)")->capture_default_str();
  app.add_flag("--no-charts", no_charts, "Skip the PNG charts");
  app.add_flag("--detect-faces", detect_faces,
               "--data is an image folder of full photos: classify each image's largest face (faces.detector: haar or yunet)");
  app.add_option("--config", config_path, "YAML whose faces.* keys configure --detect-faces");
  app.add_option("--set", overrides, "Override a config key, e.g. --set faces.min_neighbors=3 (repeatable)");
  app.add_option("--shard", shard_text,
                 "Evaluate slice K of N (K from 0) into <out>/shard-K-of-N; under torchrun or srun the rank is the shard");
  app.add_option("--merge", merge, "Shard directories to merge into --out, as one unsharded run writes it");
  CLI11_PARSE(app, argc, argv);
  if (app.count("--tta") == 0) tta = "none";
  else if (tta.empty()) tta = "flip";

  return fer_app::run_main([&] {
    fer_app::configure_runtime(threads);
    if (!merge.empty()) {
      if (out.empty()) throw std::runtime_error("--merge needs --out, the directory of the merged evaluation");
      fer::EvaluationOptions options;
      options.charts = !no_charts;
      if (!run_dir.empty()) options.history_csv = (fs::path(run_dir) / "history.csv").string();
      const auto result = fer::merge_evaluation_shards(merge, out, options);
      print_result(result);
      print_files(result.files);
      return 0;
    }
    std::vector<std::string> checkpoints;  // a shipped ensemble's name stands for its members
    for (const auto& m : models)
      for (auto& c : fer::resolve_models(m)) checkpoints.push_back(std::move(c));
    models = std::move(checkpoints);
    if (models.size() > 1 && detect_faces) throw std::runtime_error("--detect-faces evaluates one --model, not an ensemble");
    const std::string& model = models.front();
    const std::string data_path = fer_app::resolve_data_path(data);
    if (detect_faces) {
      if (!fs::is_directory(data_path))
        throw std::runtime_error("--detect-faces needs --data to be an image folder of photos (<root>/<split>/<class>/), got " +
                                 data_path);
      if (split == "all") throw std::runtime_error("--detect-faces evaluates one split: --split train, val or test");
    }
    fer::Config config = config_path.empty() ? fer::Config{} : fer::load_config(config_path);
    for (const auto& o : overrides) fer::apply_override(config, o);
    fer::EvaluationOptions options;
    options.tta = tta;
    options.precision = precision;
    options.batch_size = batch_size;
    options.device = device;
    options.charts = !no_charts;
    options.split = split;
    options.data_source = data_path;
    const fs::path model_dir = fs::path(model).parent_path();
    const fs::path history = fs::path(run_dir.empty() ? model_dir : fs::path(run_dir)) / "history.csv";
    if (fs::exists(history)) options.history_csv = history.string();
    else if (!run_dir.empty()) throw std::runtime_error("--run-dir " + run_dir + " has no history.csv");
    const std::string out_dir =
        out.empty() ? (model_dir / "eval" /
                       (split + (detect_faces ? "_faces" : "") + (tta == "none" ? "" : "_" + tta) +
                        (precision == "fp32" ? "" : "_" + precision) +
                        (models.size() > 1 ? "_ensemble" + std::to_string(models.size()) : "")))
                          .string()
                    : out;

    if (detect_faces && !shard_text.empty()) throw std::runtime_error("--shard evaluates dataset splits, not --detect-faces photos");
    if (detect_faces) return evaluate_photos(model, data_path, split, config, out_dir, options);

    auto splits = fer::load_dataset(data_path);
    fer::Dataset selected;
    if (split == "all") {
      for (const auto* d : {&splits.train, &splits.val, &splits.test})
        for (std::size_t i = 0; i < d->size(); ++i) selected.add(d->image(i), d->labels[i], d->sources[i]);
    } else {
      selected = fer::split_of(splits, fer::parse_split_name(split));
    }
    if (selected.size() == 0)
      throw std::runtime_error("split '" + split + "' of " + data_path + " is empty" +
                               (split == "test" ? " (the file has no PrivateTest rows)" : ""));
    std::fprintf(stderr, "%s %s\n", split.c_str(), fer::class_summary(selected).c_str());

    const auto shard = chosen_shard(shard_text);
    const auto result = shard.sharded()
                            ? evaluate_shard(models, selected, shard, (fs::path(out_dir) / shard.dir_name()).string(), options)
                            : fer::evaluate_checkpoints(models, selected, out_dir, options);
    print_result(result);
    print_files(result.files);
    return 0;
  });
}
