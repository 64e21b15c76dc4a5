// The DeepSHAP background that travels with a model: k-means by hand, .npy
// bytes, storing it in a checkpoint without touching the weights, weighted
// DeepSHAP references, and training storing one.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <set>

#include "fer/data/augment.h"
#include "fer/explain/background.h"
#include "fer/explain/deepshap.h"
#include "fer/inference/inference.h"
#include "fer/models/checkpoint.h"
#include "fer/models/model.h"
#include "fer/report/train/train.h"
#include "test_util.h"

namespace {

// `count` 48x48 images of constant `value`, each pixel nudged by +-1 so no two coincide.
void add_group(std::vector<std::uint8_t>& pixels, int count, int value) {
  for (int i = 0; i < count; ++i)
    for (int p = 0; p < 2304; ++p) pixels.push_back(static_cast<std::uint8_t>(value + ((p + i) % 3) - 1));
}

torch::Tensor images_of(const std::vector<std::uint8_t>& pixels) {
  const auto n = static_cast<int64_t>(pixels.size() / 2304);
  return torch::from_blob(const_cast<std::uint8_t*>(pixels.data()), {n, 48, 48}, torch::kUInt8).clone();
}

}  // namespace

TEST(Background, KmeansFindsThreeSeparatedGroupsWithTheirShares) {
  std::vector<std::uint8_t> pixels;
  add_group(pixels, 30, 20);
  add_group(pixels, 60, 120);
  add_group(pixels, 30, 230);
  fer::KmeansOptions options;
  options.k = 3;
  const auto s = fer::kmeans_background(images_of(pixels), options);
  ASSERT_EQ(s.centroids.size(0), 3);
  EXPECT_EQ(s.faces, 120);
  // Each centroid is its group's mean: the value (the +-1 nudges average out to within 1/255).
  std::vector<std::pair<double, double>> found;  // (mean pixel, weight)
  for (int64_t c = 0; c < 3; ++c) found.emplace_back(s.centroids[c].mean().item<double>() * 255, s.weights[c].item<double>());
  std::sort(found.begin(), found.end());
  EXPECT_NEAR(found[0].first, 20, 0.5);
  EXPECT_NEAR(found[1].first, 120, 0.5);
  EXPECT_NEAR(found[2].first, 230, 0.5);
  EXPECT_NEAR(found[0].second, 0.25, 1e-6);
  EXPECT_NEAR(found[1].second, 0.5, 1e-6);
  EXPECT_NEAR(found[2].second, 0.25, 1e-6);
}

TEST(Background, NoCentroidSummarisesFewerFacesThanTheMinimum) {
  std::vector<std::uint8_t> pixels;
  add_group(pixels, 40, 30);
  add_group(pixels, 25, 200);
  add_group(pixels, 3, 110);  // a handful of odd faces: must not get a centroid of their own
  fer::KmeansOptions options;
  options.k = 10;
  options.min_cluster_faces = 20;
  const auto s = fer::kmeans_background(images_of(pixels), options);
  EXPECT_LE(s.centroids.size(0), 3);
  for (int64_t c = 0; c < s.centroids.size(0); ++c) EXPECT_GE(s.weights[c].item<double>() * 68, 20 - 1e-3) << c;
  EXPECT_NEAR(s.weights.sum().item<double>(), 1.0, 1e-6);
  EXPECT_THROW(fer::kmeans_background(images_of(pixels).slice(0, 0, 10), options), std::invalid_argument);
}

TEST(Background, ASampleHoldsDistinctFacesOfThePoolWithItsClasses) {
  fer::Dataset pool;
  pool.class_names = {"calm", "tired"};
  std::vector<std::uint8_t> image(fer::kImagePixels);
  for (int i = 0; i < 10; ++i) {
    image[0] = static_cast<std::uint8_t>(i);
    pool.add(image.data(), i % 2, "face" + std::to_string(i));
  }
  const auto sample = fer::sample_background(pool, 4, 7);
  EXPECT_EQ(sample.class_names, pool.class_names);
  ASSERT_EQ(sample.size(), 4u);
  std::set<int> firsts;
  for (std::size_t i = 0; i < sample.size(); ++i) {
    firsts.insert(sample.image(i)[0]);
    EXPECT_EQ(sample.sources[i], "face" + std::to_string(sample.image(i)[0]));  // image and source stay together
  }
  EXPECT_EQ(firsts.size(), 4u);  // without replacement
  EXPECT_EQ(fer::sample_background(pool, 4, 7).sources, sample.sources);  // the seed decides
  EXPECT_EQ(fer::sample_background(pool, 50, 7).size(), 10u);  // more than the pool: all of it
}

TEST(Background, NpyBytesRoundTripAndMalformedBytesAreNamed) {
  const auto t = torch::arange(24, torch::kFloat32).reshape({2, 3, 4}) / 7;
  const auto back = fer::tensor_from_npy(fer::npy_bytes(t), "t");
  EXPECT_TRUE(torch::equal(back, t));
  const auto v = fer::tensor_from_npy(fer::npy_bytes(torch::ones({5})), "v");
  EXPECT_EQ(v.sizes(), torch::IntArrayRef({5}));
  try {
    fer::tensor_from_npy(fer::npy_bytes(t).substr(0, 100), "blob x");
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("blob x"), std::string::npos) << e.what();
  }
}

TEST(Background, AddingItRewritesTheCheckpointWithWeightsAndOtherBlobsUnchanged) {
  fer_test::TempDir dir;
  torch::manual_seed(4);
  auto model = fer::make_model(fer::ModelOptions{});
  fer::CheckpointMeta meta{fer::ModelOptions{}, fer::emotion_names(), {{"epoch", 7}}};
  const std::string path = dir / "m.pt";
  fer::save_checkpoint(path, *model, meta, {{"notes.bin", "keep me"}});
  EXPECT_FALSE(fer::load_background(path).has_value());

  fer::BackgroundSummary summary;
  summary.centroids = torch::rand({4, 1, 48, 48});
  summary.weights = torch::tensor({0.1f, 0.2f, 0.3f, 0.4f});
  summary.faces = 321;
  fer::add_background_to_checkpoint(path, summary);

  const auto stored = fer::load_background(path);
  ASSERT_TRUE(stored.has_value());
  EXPECT_TRUE(torch::equal(stored->centroids, summary.centroids));
  EXPECT_TRUE(torch::equal(stored->weights, summary.weights));
  EXPECT_EQ(stored->faces, 321);
  const auto reloaded = fer::load_checkpoint(path, torch::kCPU, fer::checkpoint_blob_names(path));
  EXPECT_EQ(reloaded.blobs.at("notes.bin"), "keep me");
  EXPECT_EQ(reloaded.meta.info["epoch"], 7);
  auto before = model->named_parameters();
  for (const auto& p : reloaded.model->named_parameters()) EXPECT_TRUE(torch::equal(p.value(), before[p.key()])) << p.key();
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

TEST(DeepShap, WeightedReferencesEqualRepeatingEachReferenceByItsWeight) {
  torch::manual_seed(5);
  auto model = fer::make_model(fer::ModelOptions{});
  model->eval();
  auto gen = fer::make_cpu_generator(9);
  const auto a = torch::rand({1, 1, 48, 48}, gen), b = torch::rand({1, 1, 48, 48}, gen);
  const auto x = torch::rand({1, 48, 48}, gen);
  fer::DeepShapOptions weighted;
  weighted.background_weights = torch::tensor({2.0f, 1.0f});
  fer::DeepShapExplainer by_weight(model, torch::cat({a, b}), torch::kCPU, weighted);
  fer::DeepShapExplainer repeated(model, torch::cat({a, a, b}), torch::kCPU);
  const std::vector<int64_t> classes{0, 3, 6};
  const auto w = by_weight.explain(x, classes), r = repeated.explain(x, classes);
  EXPECT_TRUE(torch::allclose(w.expected, r.expected, 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(w.attributions, r.attributions, 1e-4, 1e-6));
  EXPECT_LT(w.additivity_error, 1e-3);
  const auto reference = by_weight.explain_reference(x, classes);
  EXPECT_TRUE(torch::allclose(w.attributions, reference.attributions, 1e-4, 1e-6));
  fer::DeepShapOptions bad;
  bad.background_weights = torch::tensor({1.0f, 0.0f});
  EXPECT_THROW(fer::DeepShapExplainer(model, torch::cat({a, b}), torch::kCPU, bad), std::invalid_argument);
}

TEST(Training, StoresAKmeansBackgroundInBestPt) {
  fer_test::SyntheticData data;
  fer_test::TempDir runs;
  auto config = fer_test::tiny_config(data.csv, 3);
  config.train.epochs = 1;
  config.train.background_k = 5;
  const auto run = fer::train({config, runs / "r", false});
  const auto stored = fer::load_background(run.best_checkpoint);
  ASSERT_TRUE(stored.has_value());
  EXPECT_GE(stored->centroids.size(0), 1);
  EXPECT_LE(stored->centroids.size(0), 5);
  for (int64_t c = 0; c < stored->centroids.size(0); ++c)
    EXPECT_GE(stored->weights[c].item<double>() * static_cast<double>(stored->faces), 20 - 1e-3);
}
