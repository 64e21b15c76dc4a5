// fer-explain: explanations for a batch of faces (DeepSHAP, LIME, Grad-CAM,
// integrated gradients, ...), as PNGs, a manifest and a gallery.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>

#include "app_common.h"
#include "fer/config/config.h"
#include "fer/data/dataset.h"
#include "fer/data/sampler.h"
#include "fer/distributed/distributed.h"
#include "fer/explain/background.h"
#include "fer/faces/faces.h"
#include "fer/models/checkpoint.h"
#include "fer/report/explain/batch.h"
#include "fer/report/explain/sanity.h"
#include "fer/report/progress.h"
#include "fer/report/runtime.h"

namespace {
namespace fs = std::filesystem;

// --background N: drawn (seeded) from the training split of --data, or of a CSV among the inputs.
fer::BackgroundSummary drawn_background(std::size_t count, std::string source, const std::vector<std::string>& inputs,
                                        std::uint64_t seed, const fer::ModelOptions& model) {
  for (const auto& in : inputs)
    if (source.empty() && !fs::is_directory(in) && in.find(".csv") != std::string::npos) source = in;
  source = fer_app::resolve_data_path(source);
  const auto splits = fer::load_dataset(source, static_cast<int>(model.image_size));
  if (splits.train.size() == 0) throw std::runtime_error(source + " has no training split to draw references from");
  const auto refs = fer::sample_background(splits.train, count, seed);
  std::fprintf(stderr, "background: %zu images drawn from the training split of %s (seed %llu)\n", refs.size(),
               source.c_str(), static_cast<unsigned long long>(seed));
  return fer::background_from_images(refs, fer::parse_input_normalization(model.normalize));
}

// --background model (the default): the checkpoint's k-means summary; a
// checkpoint without one falls back to 100 drawn images.
fer::BackgroundSummary choose_background(const std::string& choice, const std::string& model, const std::string& data,
                                         const std::vector<std::string>& inputs, std::uint64_t seed) {
  // References are model inputs: the model's size, normalised as its inputs are.
  const auto options = fer::read_checkpoint_meta(model).model;
  if (choice == "model") {
    if (auto stored = fer::load_background(model)) {
      std::fprintf(stderr, "background: %lld k-means centroids of %lld training faces, stored in %s\n",
                   static_cast<long long>(stored->centroids.size(0)), static_cast<long long>(stored->faces), model.c_str());
      return std::move(*stored);
    }
    std::fprintf(stderr, "%s has no stored background (add one with fer-background); drawing 100 images\n", model.c_str());
    try {
      return drawn_background(100, data, inputs, seed, options);
    } catch (const std::exception& e) {
      throw std::runtime_error(std::string(e.what()) + "\n(" + model +
                               " stores no SHAP background: add one with `fer-background --model " + model +
                               " --data fer2013.csv`, or pass --background N|FILE)");
    }
  }
  const bool is_count = !choice.empty() && choice.find_first_not_of("0123456789") == std::string::npos;
  if (is_count) return drawn_background(std::stoul(choice), data, inputs, seed, options);
  const auto splits = fer::load_dataset(choice, static_cast<int>(options.image_size));
  fer::Dataset refs = splits.train.empty_like();
  for (const auto* d : {&splits.train, &splits.val, &splits.test})
    for (std::size_t i = 0; i < d->size(); ++i) refs.add_from(*d, i);
  std::fprintf(stderr, "background: %zu images from %s\n", refs.size(), choice.c_str());
  return fer::background_from_images(refs, fer::parse_input_normalization(options.normalize));
}

// --shard K/N, else torchrun's or srun's rank, else the whole batch.
fer::ShardSpec chosen_shard(const std::string& text) {
  if (!text.empty()) return fer::parse_shard(text);
  const auto env = fer::DistributedEnv::from_environment();
  return {env.rank, env.world_size};
}

void print_summary(const fer::ExplainSummary& s, const std::string& out) {
  std::printf("explained %d images (%d failed) in %.1f s: %.2f images/s; worst DeepSHAP additivity error %.2g; "
              "model calls in %s\n",
              s.explained, s.failed, s.seconds, s.explained / std::max(1e-9, s.seconds), s.worst_additivity_error,
              s.precision.c_str());
  std::printf("manifest: %s\n", s.manifest.c_str());
  std::printf("gallery: %s\n", (fs::path(out) / "index.html").c_str());
}

// The command line, bound to the library's options where one exists.
struct ExplainArgs {
  std::string model = fer_app::kDefaultSmallModel, split = "val", out = "explanations", background = "model", data,
              precision = "auto", shard, config_path, methods = "both";
  std::vector<std::string> inputs, overrides, merge;
  std::size_t limit = 0;
  int threads = 0;
  bool no_faithfulness = false, detect_faces = false, sanity_check = false;
  double sanity_threshold = 0.3;
  fer::ExplainOptions options;
};

void add_input_options(CLI::App& app, ExplainArgs& a) {
  auto& o = a.options;
  app.add_option("--model", a.model, "Checkpoint (.pt) or shipped model name (paper_cnn, ...)")->capture_default_str();
  app.add_option("--input", a.inputs, "FER-2013 CSV (rows of --split), image folder or image files (required unless --merge)");
  app.add_option("--split", a.split, "Split of a CSV input: train | val | test")->capture_default_str();
  app.add_option("--method", a.methods,
                 "Comma-separated methods: shap, lime, saliency, input_x_gradient, integrated_gradients, smoothgrad, "
                 "gradcam, gradcam++, hirescam, occlusion; or both (shap,lime) or all. Their settings: the explain.* "
                 "keys (--config, --set)")
      ->capture_default_str();
  app.add_option("--out", a.out, "Output directory")->capture_default_str();
  app.add_option("--limit", a.limit, "Explain at most N images (0 = all)")->capture_default_str();
  app.add_option("--classes", o.classes, "all | pred | top:K")->capture_default_str();
  app.add_option("--background", a.background,
                 "DeepSHAP references: model (the checkpoint's k-means summary of its training faces), N images drawn "
                 "(seeded) from the training split, or a CSV / image folder used in file order")
      ->capture_default_str();
  app.add_option("--data", a.data, "Where --background N draws from when no CSV is among the inputs (else $FER2013_CSV, data/fer2013.csv)");
  app.add_flag("--detect-faces", a.detect_faces,
               "Image inputs are full photos: explain each image's largest Haar-detected face");
  app.add_option("--config", a.config_path, "YAML whose faces.* keys configure --detect-faces and explain.* the maps");
  app.add_option("--set", a.overrides, "Override a config key, e.g. --set explain.ig_steps=64 (repeatable)");
}

void add_method_options(CLI::App& app, ExplainArgs& a) {
  auto& o = a.options;
  app.add_option("--samples", o.lime_samples, "LIME perturbations")->capture_default_str();
  app.add_option("--top", o.top_superpixels, "LIME superpixels highlighted each way")->capture_default_str();
  app.add_option("--seed", o.seed, "Seed of the background draw and LIME")->capture_default_str();
  app.add_flag("--save-raw", o.save_raw,
               "Also write the maps as .npy: SHAP's float32 [classes,S,S], each other method's [S,S] (S: the model's image size, 48 for FER-2013)");
  app.add_flag("--probabilities", o.probabilities, "DeepSHAP on softmax probabilities instead of logits");
  app.add_flag("--no-faithfulness", a.no_faithfulness,
               "Skip the deletion/insertion curves (faithfulness.json and .png, the manifest's AUCs): 2 x (steps + 1) "
               "model calls fewer per method and image");
  app.add_option("--faithfulness-steps", o.faithfulness_steps, "Points of each deletion/insertion curve, minus one")
      ->check(CLI::Range(1, 2304))
      ->capture_default_str();
  app.add_option("--device", o.device, "auto | cpu | cuda[:N]")->capture_default_str();
  app.add_option("--threads", a.threads, "CPU threads (0 = OMP_NUM_THREADS when set, else all cores)")->capture_default_str();
  app.add_option("--precision", a.precision,
                 "Model calls of LIME and the faithfulness curves: auto (bf16 on a CPU with AVX512-BF16/AMX, else fp32), "
                 "fp32, bf16 (such a CPU, or CUDA), fp16 (CUDA); DeepSHAP's is --shap-precision")
      ->check(CLI::IsMember({"auto", "fp32", "bf16", "fp16"}))
      ->capture_default_str();
  fer_app::add_enum_option(app, "--shap-precision", o.shap_precision,
                           {{"fp32", fer::Precision::fp32}, {"bf16", fer::Precision::bf16}},
                           "DeepSHAP's backward pass through the convs: fp32, or bf16 (faster on a CPU with "
                           "AVX512-BF16/AMX; maps within a few 1e-3 of fp32's, additivity reported as always)");
  app.add_option("--shap-pass-rows", o.shap_pass_rows,
                 "Rows (image x class x reference) of one DeepSHAP backward pass; images share a pass when they fit "
                 "(0: one image per pass on CPU, where that is fastest; 8192 rows on a GPU)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--shard", a.shard,
                 "Explain slice K of N of the inputs (K from 0) into <out>/shard-K-of-N; under torchrun or srun the rank is the shard");
  app.add_option("--merge", a.merge, "Shard directories to merge into --out, as one unsharded run writes it");
  app.add_flag("--sanity-check", a.sanity_check,
               "Instead of explaining: randomise the model's layers from the output down (and each alone) and score "
               "how much each method's maps change (sanity.json, charts, strips); --limit defaults to 16 faces");
  app.add_option("--sanity-threshold", a.sanity_threshold,
                 "A method passes the sanity check when the Spearman correlation of |map| with every layer "
                 "randomised stays below this (0.3: under a tenth of the ranks' variance shared)")
      ->check(CLI::Range(-1.0, 1.0))
      ->capture_default_str();
}

int merge_shards(const ExplainArgs& a) {
  const auto s = fer::merge_explanation_shards(a.merge, a.out);
  std::printf("merged %zu shards: %d images explained (%d failed); worst DeepSHAP additivity error %.2g\n",
              a.merge.size(), s.explained, s.failed, s.worst_additivity_error);
  std::printf("manifest: %s\ngallery: %s\n", s.manifest.c_str(), (fs::path(a.out) / "index.html").c_str());
  return 0;
}

fer::Config read_config(const ExplainArgs& a) {
  fer::Config config = a.config_path.empty() ? fer::Config{} : fer::load_config(a.config_path);
  for (const auto& o : a.overrides) fer::apply_override(config, o);
  return config;
}

// The inputs, labelled by the model's class names.
std::vector<fer::ExplainItem> collect_items(const ExplainArgs& a, const fer::Config& config, const std::string& model) {
  std::unique_ptr<fer::FaceDetector> detector;
  if (a.detect_faces) detector = std::make_unique<fer::FaceDetector>(config.faces);
  const auto meta = fer::read_checkpoint_meta(model);
  auto items = fer::collect_explain_inputs(a.inputs, a.split, a.limit, meta.class_names, detector.get(),
                                           static_cast<int>(meta.model.image_size));
  if (items.empty()) throw std::runtime_error("no images found in the inputs");
  return items;
}

// This shard's slice of `items` (all of them unsharded); returns its output folder.
std::string take_shard(std::vector<fer::ExplainItem>& items, const fer::ShardSpec& shard, const std::string& out) {
  if (!shard.sharded()) return out;
  const std::size_t total = items.size();
  const auto [begin, end] = fer::shard_range(static_cast<int64_t>(total), shard.index, shard.count);
  items = std::vector<fer::ExplainItem>(items.begin() + begin, items.begin() + end);
  std::fprintf(stderr, "shard %d of %d: items %lld..%lld of %zu\n", shard.index, shard.count,
               static_cast<long long>(begin), static_cast<long long>(end) - 1, total);
  return (fs::path(out) / shard.dir_name()).string();
}

// Without SHAP the background is only the faithfulness curves' (and
// integrated gradients' mean) baseline: a given --background N|FILE is that
// baseline; by default the stored one, if any.
fer::BackgroundSummary references(const ExplainArgs& a, const std::string& model) {
  const bool lime_only = !a.options.methods.shap;
  if (!lime_only || (a.background != "model" && !a.no_faithfulness))
    return choose_background(a.background, model, a.data, a.inputs, a.options.seed);
  if (auto stored = fer::load_background(model)) return std::move(*stored);
  return {};
}

// fer-explain --sanity-check: the model-randomisation test of every chosen method.
int run_sanity_check(const ExplainArgs& a, const std::string& model, const std::vector<fer::ExplainItem>& items,
                     const fer::BackgroundSummary& refs) {
  fer::SanityReportInputs in;
  in.checkpoint = model;
  in.threshold = a.sanity_threshold;
  in.options.explainer = a.options;
  in.options.seed = a.options.seed;
  in.options.work_dir = (fs::path(a.out) / "randomised").string();
  std::vector<std::vector<float>> faces;
  std::vector<std::uint64_t> seeds;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (!items[i].error.empty()) continue;
    faces.emplace_back(items[i].pixels.begin(), items[i].pixels.end());
    for (auto& v : faces.back()) v /= 255.0f;
    seeds.push_back(a.options.seed + i);
    in.sources.push_back(items[i].source);
    if (in.strip_pixels.size() < static_cast<std::size_t>(in.options.strip_faces)) in.strip_pixels.push_back(items[i].pixels);
  }
  if (faces.empty()) throw std::runtime_error("no readable face among the inputs");
  const auto check = fer::sanity_check(model, refs, faces, seeds, in.options, fer::progress_bars("face"));
  std::printf("sanity check of %s on %zu faces, %zu layers randomised in turn (seed %llu):\n", model.c_str(),
              faces.size(), check.layers.size(), static_cast<unsigned long long>(in.options.seed));
  for (const auto& [method, v] : fer::write_sanity_report(check, in, a.out))
    std::printf("  %-22s Spearman |map| %6.3f  SSIM %6.3f  with every layer randomised: %s\n", method.c_str(),
                v.spearman_abs, v.ssim, v.passes ? "passes" : "FAILS");
  std::error_code ignored;
  fs::remove(in.options.work_dir, ignored);  // the randomised checkpoints' folder, left empty
  std::printf("report: %s\n", (fs::path(a.out) / "sanity.json").c_str());
  return 0;
}

int run_explain(ExplainArgs a) {
  fer_app::configure_runtime(a.threads);
  if (!a.merge.empty()) return merge_shards(a);
  if (a.inputs.empty()) throw std::runtime_error("--input is required (a FER-2013 CSV, an image folder or image files)");
  const std::string model = fer_app::resolve_model(a.model);
  const auto config = read_config(a);
  a.options.methods = fer::parse_explain_methods(a.methods);
  static_cast<fer::ExplainerOptions&>(a.options) = fer::with_explain_config(a.options, config.explain);
  if (a.sanity_check && !a.shard.empty()) throw std::runtime_error("--sanity-check runs unsharded: leave out --shard");
  if (a.sanity_check && a.limit == 0) a.limit = 16;
  if (a.precision != "auto") a.options.precision = fer::parse_precision(a.precision);
  auto items = collect_items(a, config, model);
  if (a.sanity_check) return run_sanity_check(a, model, items, references(a, model));
  auto& options = a.options;
  options.shard = chosen_shard(a.shard);
  options.total_items = items.size();
  const std::string out_dir = take_shard(items, options.shard, a.out);
  const auto refs = references(a, model);
  options.faithfulness = !a.no_faithfulness;
  const auto s = fer::explain_batch(model, items, refs, out_dir, options);
  print_summary(s, out_dir);
  return s.failed > 0 && s.explained == 0 ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Explain a model's predictions (DeepSHAP, LIME, Grad-CAM, integrated gradients, ...); writes PNGs, "
               "a manifest and a gallery"};
  ExplainArgs args;
  add_input_options(app, args);
  add_method_options(app, args);
  if (const auto status = fer_app::parse_command_line(app, argc, argv)) return *status;
  return fer_app::run_main([&] { return run_explain(std::move(args)); });
}
