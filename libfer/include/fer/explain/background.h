// The DeepSHAP background that travels with a model: k-means centroids of the
// training faces with their weights (the summary the shap library recommends,
// shap.kmeans), stored inside the checkpoint so that explaining needs no
// FER-2013 at hand. Each centroid is the mean of many faces, never one face.
//
//   auto summary = fer::kmeans_background(fer::images_tensor(train), {/*k=*/100});
//   fer::add_background_to_checkpoint("best.pt", summary);      // atomic
//   auto shap_refs = fer::load_background("best.pt");           // std::optional
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>
#include <string>

#include "fer/data/dataset.h"
#include "fer/data/input_normalization.h"

namespace fer {

struct BackgroundSummary {
  at::Tensor centroids;  // [K,1,S,S] float32 in [0,1]
  at::Tensor weights;    // [K] float32, positive, summing to 1 (share of faces in each cluster)
  std::int64_t faces = 0;   // faces summarised
};

struct KmeansOptions {
  int k = 100;
  int iterations = 30;         // Lloyd iterations at most (stops earlier when no face changes cluster)
  int min_cluster_faces = 20;  // a smaller cluster is dissolved into its neighbours: no centroid is near one face
  std::uint64_t seed = 0;      // k-means++ seeding
  // The model's input normalisation: faces are clustered as the model sees them.
  InputNormalization normalize = InputNormalization::none;
};

// Clusters `images` ([N,S,S] uint8) with k-means++ seeding and Lloyd
// iterations, then dissolves clusters smaller than min_cluster_faces (so K may
// end below k). Requires N >= min_cluster_faces and k >= 1 (std::invalid_argument).
// Deterministic for a seed, image set and thread count.
BackgroundSummary kmeans_background(const at::Tensor& images, const KmeansOptions& options = {});

// Names of the checkpoint blobs (float32 .npy files inside the archive,
// readable from Python: torch.jit.load(path, _extra_files={name: ""})).
extern const char* const kBackgroundCentroidsBlob;
extern const char* const kBackgroundWeightsBlob;

// Rewrites `checkpoint` atomically with `summary` added (weights, metadata and
// other blobs unchanged; an existing background is replaced). Throws
// std::runtime_error naming the file.
void add_background_to_checkpoint(const std::string& checkpoint, const BackgroundSummary& summary);

// The checkpoint's background, or nullopt when it has none. Throws
// std::runtime_error for a malformed one.
std::optional<BackgroundSummary> load_background(const std::string& checkpoint);

// Picks `count` images from `pool` with `seed` (without replacement, in a
// seeded random order); all of them when count >= pool.size().
Dataset sample_background(const Dataset& pool, std::size_t count, std::uint64_t seed);

// Every image of `images` as an unweighted reference (a drawn sample, or a
// file), normalised as the model sees its inputs.
BackgroundSummary background_from_images(const Dataset& images,
                                         InputNormalization normalize = InputNormalization::none);

// float32 .npy (C order) to and from bytes.
std::string npy_bytes(const at::Tensor& values);
at::Tensor tensor_from_npy(const std::string& bytes, const std::string& what);

}  // namespace fer
