// Batch explanations: DeepSHAP and LIME for many faces, written as PNGs,
// optional raw .npy arrays, a global per-class SHAP view and a manifest.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "fer/common/enum_names.h"
#include "fer/common/precision.h"
#include "fer/data/dataset.h"
#include "fer/explain/background.h"
#include "fer/faces/faces.h"
#include "fer/report/evaluate/shards.h"

namespace fer {

// One face to explain. A bad input keeps its error and is reported, not thrown.
struct ExplainItem {
  std::string source;                // file:line, or image path
  std::vector<std::uint8_t> pixels;  // 48*48 when ok
  int label = -1;                    // true class when known
  std::string error;                 // non-empty: could not be read
};

// Inputs: a FER-2013 CSV (its `split` rows), an image folder (recursively; the
// class folder name gives the true label when it is an emotion name), or image
// files. Stops after `limit` items (0 = all). Images of another size are
// resized to 48x48 (fer::read_face_image); unreadable images become items
// with an error. Throws DataError only for a missing path.
// With a `detector`, image files are full photos: each becomes its largest
// face (cropped as the detector's faces.* settings say: margin, align); an
// image without a face is an item with the error "no face detected".
std::vector<ExplainItem> collect_explain_inputs(const std::vector<std::string>& inputs, const std::string& split,
                                                std::size_t limit, const FaceDetector* detector = nullptr);

enum class ExplainMethod { shap, lime, both };
// "shap" | "lime" | "both"; throws std::invalid_argument otherwise.
const EnumNames<ExplainMethod>& explain_method_names();  // shap, lime, both
ExplainMethod parse_explain_method(const std::string& name);
std::string explain_method_name(ExplainMethod method);

struct ExplainOptions {
  ExplainMethod method = ExplainMethod::both;
  std::string classes = "pred";   // all | pred | top:K
  bool probabilities = false;     // DeepSHAP on softmax outputs instead of logits
  int lime_samples = 1000;
  int top_superpixels = 5;
  std::uint64_t seed = 0;
  bool save_raw = false;          // also .npy float32 [classes,48,48]
  std::string device = "auto";
  // The model calls of LIME and the faithfulness curves (the prediction itself
  // is fp32); empty: default_inference_precision (bf16 on a CPU with native
  // bf16, else fp32). DeepSHAP's own: shap_precision.
  std::optional<Precision> precision;
  // DeepSHAP's backward pass through the convs: fp32 (exact to float rounding)
  // or bf16 (faster on AMX/AVX512-BF16 CPUs; maps within a few 1e-3 of fp32's).
  Precision shap_precision = Precision::fp32;
  // Rows (image x class x reference) of one DeepSHAP backward pass: several
  // images share a pass when they fit. 0: the device's default (one image per
  // pass on CPU, where larger passes measured slower; 8192 rows elsewhere).
  std::int64_t shap_pass_rows = 0;
  bool progress = true;
  // Deletion/insertion curves for SHAP, LIME and a random ranking of each image's
  // predicted class (2*(steps+1) forward passes per method and image).
  bool faithfulness = true;
  int faithfulness_steps = 20;
  // Sharded batches (fer-explain --shard K/N): the items given are this shard's
  // slice (fer::dataset_shard's rule) of `total_items`; their folders, manifest
  // rows and LIME seeds keep their numbers in the whole batch, and shard.json
  // records what merge_explanation_shards needs.
  ShardSpec shard;
  std::size_t total_items = 0;
};

struct ExplainSummary {
  int explained = 0, failed = 0;
  double worst_additivity_error = 0;
  double seconds = 0;
  std::string manifest;
  std::string precision;  // the model calls' precision, by name (what an empty ExplainOptions::precision became)
};

// Requires a non-empty background for SHAP: the DeepSHAP references, used in
// order, weighted when background.weights is set (a checkpoint's k-means summary).
// Writes into out_dir: per item <index>_<name>/{face,shap_<class>,lime,summary}.png
// (+ shap.npy), global_mean_abs_shap.png (+ .npy), manifest.csv (a row per item,
// written as it goes, with the per-image deletion/insertion AUCs),
// faithfulness.json and faithfulness.png (fer/explain/faithfulness.h; the baseline is
// the background's mean image, mid-grey without one) and index.html (fer/report/explain/gallery.h).
// Memory does not grow with the image count beyond a small gallery record each.
// Throws std::runtime_error for an unusable checkpoint or bad options.
ExplainSummary explain_batch(const std::string& checkpoint, const std::vector<ExplainItem>& items,
                             const BackgroundSummary& background, const std::string& out_dir,
                             const ExplainOptions& options);

// Rebuilds in `out_dir` what one unsharded explain_batch writes from the
// directories of its shards 0..N-1 (any order): the per-item folders (hard
// links, else copies), manifest.csv, the global SHAP maps (the shards' sums over
// their counts), faithfulness.json/.png and index.html. Throws
// std::runtime_error naming a directory that is missing, given twice or from
// another batch.
ExplainSummary merge_explanation_shards(const std::vector<std::string>& shard_dirs, const std::string& out_dir);

// Picks `count` images from `pool` with `seed` (without replacement, in a
// seeded random order); all of them when count >= pool.size().
Dataset sample_background(const Dataset& pool, std::size_t count, std::uint64_t seed);

// Parses "all", "pred", "top:K" (K in 1..classes). Throws std::invalid_argument.
struct ClassSelection {
  enum Kind { all, pred, top } kind = pred;
  int k = 1;
};
ClassSelection parse_class_selection(const std::string& text, int num_classes);

}  // namespace fer
