// fer-eval: evaluate a checkpoint on a split; writes metrics, predictions and charts.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>

#include "app_common.h"
#include "fer/config/config.h"
#include "fer/data/dataset.h"
#include "fer/data/sampler.h"
#include "fer/distributed/distributed.h"
#include "fer/models/checkpoint.h"
#include "fer/report/evaluate/evaluate.h"
#include "fer/report/evaluate/shards.h"
#include "fer/report/runtime.h"
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


// --detect-faces: each photo's largest face, images without one counted.
int evaluate_photos(const std::string& model, const std::string& data_path, const std::string& split,
                    const fer::Config& config, const std::string& out_dir, const fer::EvaluationOptions& options) {
#if FER_WITH_OPENCV
  const fer::FaceDetector detector(config.faces);
  std::fprintf(stderr, "detecting faces with %s (%s)\n", detector.kind().c_str(), detector.model_path().c_str());
  const auto side = static_cast<int>(fer::read_checkpoint_meta(model).model.image_size);  // the model's faces
  const auto folder = fer::load_image_folder_with_faces(data_path, detector, side);
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

// The command line, bound to the library's options where one exists.
struct EvalArgs {
  std::vector<std::string> models{fer_app::kDefaultModel};
  std::string data, split = "val", out, run_dir, tta, config_path, shard;
  std::vector<std::string> overrides, merge;
  bool no_charts = false, detect_faces = false;
  int threads = 0;
  fer::EvaluationOptions options;  // precision, batch size and device bound; the rest set by run_eval
};

void add_eval_options(CLI::App& app, EvalArgs& a) {
  app.add_option("--model", a.models,
                 "Checkpoint (.pt), ensemble.json or shipped model name (paper_cnn, ...); several: an ensemble averaging their probabilities")
      ->capture_default_str();
  app.add_option("--data", a.data, "FER-2013 CSV(.gz) or image-folder root (else $FER2013_CSV, data/fer2013.csv)");
  app.add_option("--split", a.split, "train | val | test | all")->check(CLI::IsMember({"train", "val", "test", "all"}))->capture_default_str();
  app.add_option("--out", a.out, "Output directory (default: eval/<split> beside the checkpoint)");
  app.add_option("--run-dir", a.run_dir, "Training run directory: also plot its history.csv (default: the checkpoint's directory when it has one)");
  app.add_option("--tta", a.tta,
                 "Test-time augmentation: none, flip (image and mirror; also plain --tta) or tencrop (5 crops x 2 mirrors)")
      ->expected(0, 1)
      ->check(CLI::IsMember(fer_app::names_of(fer::tta_names())));
  fer_app::add_precision_option(app, "--precision", a.options.precision,
                                "Inference precision: fp32, bf16 (CPU with AVX512-BF16, or CUDA), fp16 (CUDA)");
  app.add_option("--batch-size", a.options.batch_size, "Images per forward pass")->capture_default_str();
  app.add_option("--device", a.options.device, "auto | cpu | cuda[:N]")->capture_default_str();
  app.add_option("--threads", a.threads, "CPU threads (0 = OMP_NUM_THREADS when set, else all cores)")->capture_default_str();
  app.add_flag("--no-charts", a.no_charts, "Skip the PNG charts");
  app.add_flag("--detect-faces", a.detect_faces,
               "--data is an image folder of full photos: classify each image's largest face (faces.detector: haar or yunet)");
  app.add_option("--config", a.config_path, "YAML whose faces.* keys configure --detect-faces");
  app.add_option("--set", a.overrides, "Override a config key, e.g. --set faces.min_neighbors=3 (repeatable)");
  app.add_option("--shard", a.shard,
                 "Evaluate slice K of N (K from 0) into <out>/shard-K-of-N; under torchrun or srun the rank is the shard");
  app.add_option("--merge", a.merge, "Shard directories to merge into --out, as one unsharded run writes it");
}

int merge_shards(const EvalArgs& a) {
  if (a.out.empty()) throw std::runtime_error("--merge needs --out, the directory of the merged evaluation");
  fer::EvaluationOptions options;
  options.charts = !a.no_charts;
  if (!a.run_dir.empty()) options.history_csv = (fs::path(a.run_dir) / "history.csv").string();
  const auto result = fer::merge_evaluation_shards(a.merge, a.out, options);
  print_result(result);
  print_files(result.files);
  return 0;
}

// Every --model by path or name; a shipped ensemble's name stands for its members.
std::vector<std::string> resolve_all(const std::vector<std::string>& models) {
  std::vector<std::string> checkpoints;
  for (const auto& m : models)
    for (auto& c : fer::resolve_models(m)) checkpoints.push_back(std::move(c));
  return checkpoints;
}

void check_photo_mode(const EvalArgs& a, std::size_t models, const std::string& data_path) {
  if (models > 1) throw std::runtime_error("--detect-faces evaluates one --model, not an ensemble");
  if (!fs::is_directory(data_path))
    throw std::runtime_error("--detect-faces needs --data to be an image folder of photos (<root>/<split>/<class>/), got " +
                             data_path);
  if (a.split == "all") throw std::runtime_error("--detect-faces evaluates one split: --split train, val or test");
  if (!a.shard.empty()) throw std::runtime_error("--shard evaluates dataset splits, not --detect-faces photos");
}

// eval/<split>[_faces][_<tta>][_<precision>][_ensembleN] beside the (first) checkpoint.
std::string default_out_dir(const EvalArgs& a, const std::string& model, std::size_t models) {
  const auto& o = a.options;
  return (fs::path(model).parent_path() / "eval" /
          (a.split + (a.detect_faces ? "_faces" : "") + (o.tta == fer::Tta::none ? "" : "_" + fer::tta_name(o.tta)) +
           (o.precision == fer::Precision::fp32 ? "" : "_" + fer::precision_name(o.precision)) +
           (models > 1 ? "_ensemble" + std::to_string(models) : "")))
      .string();
}

// The run's history.csv to plot: --run-dir's (required), else the checkpoint folder's when it has one.
std::string history_to_plot(const std::string& run_dir, const std::string& model) {
  const fs::path history = fs::path(run_dir.empty() ? fs::path(model).parent_path() : fs::path(run_dir)) / "history.csv";
  if (fs::exists(history)) return history.string();
  if (!run_dir.empty()) throw std::runtime_error("--run-dir " + run_dir + " has no history.csv");
  return "";
}

// The split's faces at the model's image size.
fer::Dataset selected_split(const std::string& data_path, const std::string& split, const std::string& model) {
  auto splits = fer::load_dataset(data_path, static_cast<int>(fer::read_checkpoint_meta(model).model.image_size));
  fer::Dataset selected = splits.train.empty_like();
  if (split == "all") {
    for (const auto* d : {&splits.train, &splits.val, &splits.test})
      for (std::size_t i = 0; i < d->size(); ++i) selected.add_from(*d, i);
  } else {
    selected = fer::split_of(splits, fer::parse_split_name(split));
  }
  if (selected.size() == 0)
    throw std::runtime_error("split '" + split + "' of " + data_path + " is empty" +
                             (split == "test" ? " (the file has no PrivateTest rows)" : ""));
  return selected;
}

int run_eval(EvalArgs a) {
  fer_app::configure_runtime(a.threads);
  if (!a.merge.empty()) return merge_shards(a);
  const auto models = resolve_all(a.models);
  const std::string& model = models.front();
  const std::string data_path = fer_app::resolve_data_path(a.data);
  if (a.detect_faces) check_photo_mode(a, models.size(), data_path);
  fer::Config config = a.config_path.empty() ? fer::Config{} : fer::load_config(a.config_path);
  for (const auto& o : a.overrides) fer::apply_override(config, o);
  auto& options = a.options;
  options.tta = fer::parse_tta(a.tta);
  options.charts = !a.no_charts;
  options.split = a.split;
  options.data_source = data_path;
  options.history_csv = history_to_plot(a.run_dir, model);
  const std::string out_dir = a.out.empty() ? default_out_dir(a, model, models.size()) : a.out;
  if (a.detect_faces) return evaluate_photos(model, data_path, a.split, config, out_dir, options);

  const auto selected = selected_split(data_path, a.split, model);
  std::fprintf(stderr, "%s %s\n", a.split.c_str(), fer::class_summary(selected).c_str());
  const auto shard = chosen_shard(a.shard);
  if (shard.sharded()) {
    const auto [begin, end] = fer::shard_range(static_cast<int64_t>(selected.size()), shard.index, shard.count);
    std::fprintf(stderr, "shard %d of %d: %lld of %zu images\n", shard.index, shard.count,
                 static_cast<long long>(end - begin), selected.size());
  }
  const auto result = shard.sharded()
                          ? fer::evaluate_shard(models, selected, shard, (fs::path(out_dir) / shard.dir_name()).string(), options)
                          : fer::evaluate_checkpoints(models, selected, out_dir, options);
  print_result(result);
  print_files(result.files);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Evaluate a checkpoint (or an ensemble): metrics.json, predictions.csv and PNG charts"};
  EvalArgs args;
  add_eval_options(app, args);
  if (const auto status = fer_app::parse_command_line(app, argc, argv)) return *status;
  if (app.count("--tta") == 0) args.tta = "none";
  else if (args.tta.empty()) args.tta = "flip";  // plain --tta
  return fer_app::run_main([&] { return run_eval(std::move(args)); });
}
