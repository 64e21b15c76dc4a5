// Batch explanations: DeepSHAP and LIME for many faces, written as PNGs,
// optional raw .npy arrays, a global per-class SHAP view and a manifest.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fer/data/dataset.h"
#include "fer/explain/background.h"
#include "fer/explain/explainer.h"
#include "fer/faces/faces.h"
#include "fer/report/evaluate/shards.h"

namespace fer {

// One face to explain. A bad input keeps its error and is reported, not thrown.
struct ExplainItem {
  std::string source;                // file:line, or image path
  std::vector<std::uint8_t> pixels;  // side*side when ok (the model's image_size)
  int label = -1;                    // true class when known
  std::string error;                 // non-empty: could not be read
};

// Inputs: a FER-2013 CSV (its `split` rows), an image folder (recursively; the
// class folder's name gives the true label when it is one of `class_names`,
// the model's, any case), or image files. A CSV row's label is its class's
// index in `class_names` by name (-1 when the model lacks it). Stops after
// `limit` items (0 = all). Every face is side x side grayscale (the model's
// image_size; other sizes and colour converted, fer::read_face_image);
// unreadable images become items with an error. Throws DataError only for a
// missing path.
// With a `detector`, image files are full photos: each becomes its largest
// face (cropped as the detector's faces.* settings say: margin, align); an
// image without a face is an item with the error "no face detected".
std::vector<ExplainItem> collect_explain_inputs(const std::vector<std::string>& inputs, const std::string& split,
                                                std::size_t limit, const std::vector<std::string>& class_names,
                                                const FaceDetector* detector = nullptr, int side = kImageSize);

// The explainer's options (fer/explain/explainer.h) and the files'.
struct ExplainOptions : ExplainerOptions {
  int top_superpixels = 5;        // LIME's panel: the superpixels drawn
  std::uint64_t seed = 0;         // item i's LIME and random ranking use seed + i
  bool save_raw = false;          // also .npy float32 [classes,S,S]
  bool progress = true;
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



}  // namespace fer
