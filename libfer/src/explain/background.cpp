#include "fer/explain/background.h"

#include <torch/torch.h>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <random>
#include <stdexcept>

#include "fer/common/io.h"
#include "fer/models/checkpoint.h"

namespace fer {

const char* const kBackgroundCentroidsBlob = "shap_background_centroids.npy";
const char* const kBackgroundWeightsBlob = "shap_background_weights.npy";

namespace {

// ||x - c||^2 for every row of x [N,D] (with its squared norms x_sq [N]) and c [K,D]: [N,K].
torch::Tensor squared_distances(const torch::Tensor& x, const torch::Tensor& x_sq, const torch::Tensor& c) {
  return (x_sq.unsqueeze(1) - 2 * x.matmul(c.t()) + c.pow(2).sum(1).unsqueeze(0)).clamp_min(0);
}

// k-means++: each next seed drawn with probability proportional to its squared distance to the nearest seed.
torch::Tensor kmeans_plus_plus(const torch::Tensor& x, const torch::Tensor& x_sq, int k, std::mt19937_64& rng) {
  const int64_t n = x.size(0);
  std::vector<int64_t> seeds{std::uniform_int_distribution<int64_t>(0, n - 1)(rng)};
  auto nearest = squared_distances(x, x_sq, x[seeds[0]].unsqueeze(0)).squeeze(1);
  while (static_cast<int>(seeds.size()) < k) {
    const auto cumulative = nearest.to(torch::kFloat64).cumsum(0).contiguous();
    const double* c = cumulative.data_ptr<double>();
    if (!(c[n - 1] > 0)) break;  // every face coincides with a seed
    const double r = std::uniform_real_distribution<double>(0, c[n - 1])(rng);
    const int64_t next = std::min<int64_t>(n - 1, std::upper_bound(c, c + n, r) - c);
    seeds.push_back(next);
    nearest = torch::minimum(nearest, squared_distances(x, x_sq, x[next].unsqueeze(0)).squeeze(1));
  }
  return x.index_select(0, torch::tensor(seeds, torch::kInt64)).clone();
}

struct Clusters {
  torch::Tensor assignment;  // [N] int64
  torch::Tensor counts;      // [K] int64
  torch::Tensor sums;        // [K,D]
};

Clusters assign(const torch::Tensor& x, const torch::Tensor& x_sq, const torch::Tensor& centroids) {
  Clusters c;
  c.assignment = squared_distances(x, x_sq, centroids).argmin(1);
  const int64_t k = centroids.size(0);
  c.counts = torch::bincount(c.assignment, {}, k);
  c.sums = torch::zeros_like(centroids).index_add_(0, c.assignment, x);
  return c;
}

// Means of the clusters; an empty cluster keeps its centroid.
torch::Tensor means(const Clusters& c, const torch::Tensor& previous) {
  const auto counts = c.counts.to(torch::kFloat32).unsqueeze(1);
  return torch::where(counts > 0, c.sums / counts.clamp_min(1), previous);
}

}  // namespace

BackgroundSummary kmeans_background(const torch::Tensor& images, const KmeansOptions& options) {
  if (images.dim() != 3 || images.scalar_type() != torch::kUInt8)
    throw std::invalid_argument("kmeans_background: images must be [N,H,W] uint8");
  const int64_t n = images.size(0);
  if (options.k < 1 || options.iterations < 1 || options.min_cluster_faces < 1)
    throw std::invalid_argument("kmeans_background: k, iterations and min_cluster_faces must be >= 1");
  if (n < options.min_cluster_faces)
    throw std::invalid_argument("kmeans_background: " + std::to_string(n) + " faces, fewer than min_cluster_faces (" +
                                std::to_string(options.min_cluster_faces) + ")");
  torch::NoGradGuard no_grad;
  const auto x = normalize_input(images, options.normalize).reshape({n, -1}).to(torch::kFloat32) / 255.0;
  const auto x_sq = x.pow(2).sum(1);
  std::mt19937_64 rng(options.seed);
  auto centroids = kmeans_plus_plus(x, x_sq, std::min<int64_t>(options.k, n), rng);

  torch::Tensor previous;
  for (int it = 0; it < options.iterations; ++it) {
    const auto clusters = assign(x, x_sq, centroids);
    centroids = means(clusters, centroids);
    if (previous.defined() && torch::equal(previous, clusters.assignment)) break;
    previous = clusters.assignment;
  }
  // Dissolve every cluster below the minimum, its faces going to their nearest remaining
  // centroid, until none is left (the remaining clusters only gain faces in the reassignment).
  for (;;) {
    const auto clusters = assign(x, x_sq, centroids);
    auto keep = clusters.counts.ge(options.min_cluster_faces);
    if (keep.all().item<bool>()) {
      BackgroundSummary out;
      out.centroids = means(clusters, centroids).reshape({-1, 1, images.size(1), images.size(2)}).contiguous();
      out.weights = (clusters.counts.to(torch::kFloat64) / static_cast<double>(n)).to(torch::kFloat32);
      out.faces = n;
      return out;
    }
    if (!keep.any().item<bool>()) keep[clusters.counts.argmax()] = true;  // never dissolve them all
    const auto kept = centroids.index({keep});
    centroids = means(assign(x, x_sq, kept), kept);
  }
}

Dataset sample_background(const Dataset& pool, std::size_t count, std::uint64_t seed) {
  std::vector<std::size_t> order(pool.size());
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(seed);
  std::shuffle(order.begin(), order.end(), rng);
  Dataset out = pool.empty_like();
  for (std::size_t i = 0; i < std::min(count, order.size()); ++i)
    out.add(pool.image(order[i]), pool.labels[order[i]], pool.sources[order[i]]);
  return out;
}

BackgroundSummary background_from_images(const Dataset& images, InputNormalization normalize) {
  const auto n = static_cast<int64_t>(images.size());
  if (n == 0) throw std::invalid_argument("background_from_images: no images");
  BackgroundSummary out;
  const auto pixels = torch::from_blob(const_cast<std::uint8_t*>(images.pixels.data()), {n, 1, images.image_size, images.image_size},
                                       torch::kUInt8);
  out.centroids = normalize_input(pixels, normalize).to(torch::kFloat32) / 255.0;
  out.faces = n;
  return out;
}

std::string npy_bytes(const torch::Tensor& values) {
  const auto v = values.to(torch::kCPU, torch::kFloat32).contiguous();
  return npy_float32_bytes(v.data_ptr<float>(), v.sizes().vec());
}

torch::Tensor tensor_from_npy(const std::string& bytes, const std::string& what) {
  auto array = parse_npy_float32(bytes, what);
  return torch::from_blob(array.values.data(), array.shape, torch::kFloat32).clone();
}

void add_background_to_checkpoint(const std::string& checkpoint, const BackgroundSummary& summary) {
  if (!summary.centroids.defined() || summary.centroids.dim() != 4 || !summary.weights.defined() ||
      summary.weights.numel() != summary.centroids.size(0))
    throw std::invalid_argument("add_background_to_checkpoint: centroids must be [K,1,H,W] with K weights");
  auto loaded = load_checkpoint(checkpoint, torch::kCPU, checkpoint_blob_names(checkpoint));
  loaded.blobs[kBackgroundCentroidsBlob] = npy_bytes(summary.centroids);
  loaded.blobs[kBackgroundWeightsBlob] = npy_bytes(summary.weights);
  loaded.meta.info["shap_background"] = {{"method", "kmeans"},
                                         {"clusters", summary.centroids.size(0)},
                                         {"faces", summary.faces},
                                         {"blobs", {kBackgroundCentroidsBlob, kBackgroundWeightsBlob}}};
  save_checkpoint(checkpoint, *loaded.model, loaded.meta, loaded.blobs);
}

std::optional<BackgroundSummary> load_background(const std::string& checkpoint) {
  const auto loaded = load_checkpoint(checkpoint, torch::kCPU, {kBackgroundCentroidsBlob, kBackgroundWeightsBlob});
  const auto c = loaded.blobs.find(kBackgroundCentroidsBlob), w = loaded.blobs.find(kBackgroundWeightsBlob);
  if (c == loaded.blobs.end() || w == loaded.blobs.end()) return std::nullopt;
  BackgroundSummary out;
  out.centroids = tensor_from_npy(c->second, checkpoint + ": " + kBackgroundCentroidsBlob);
  out.weights = tensor_from_npy(w->second, checkpoint + ": " + kBackgroundWeightsBlob);
  if (out.centroids.dim() != 4 || out.weights.dim() != 1 || out.weights.size(0) != out.centroids.size(0))
    throw std::runtime_error(checkpoint + ": the SHAP background's centroids and weights do not match");
  out.faces = loaded.meta.info.value("shap_background", nlohmann::json::object()).value("faces", std::int64_t{0});
  return out;
}

}  // namespace fer
