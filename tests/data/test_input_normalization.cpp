// data.normalize: histogram equalisation checked by hand and by its
// properties, and honoured by checkpoints, prediction and training batches.
// (Equality with OpenCV's equalizeHist: tests/faces/test_faces.cpp.)
#include <gtest/gtest.h>

#include <torch/torch.h>

#include "fer/data/augment.h"
#include "fer/data/input_normalization.h"
#include "fer/inference/inference.h"
#include "fer/models/checkpoint.h"
#include "fer/models/model.h"
#include "test_util.h"

namespace {

// A face-like uint8 batch [n,48,48] whose levels stay in [low, high].
torch::Tensor faces_in_range(int64_t n, int low, int high, uint64_t seed) {
  auto gen = fer::make_cpu_generator(seed);
  return torch::randint(low, high + 1, {n, 48, 48}, gen, torch::kInt64).to(torch::kUInt8);
}

}  // namespace

TEST(InputNormalization, EqualizeMapsLevelsByTheirCumulativeCountsAsWorkedByHand) {
  // Levels 0,0,1,3: cdf 2,3,4 and the darkest level's count 2; 255/(4-2) = 127.5 per
  // face above it: level 1 -> 127.5 -> 128 (half to even), level 3 -> 255.
  const auto image = torch::tensor({0, 0, 1, 3}, torch::kUInt8).view({1, 2, 2});
  const auto got = fer::equalize_histogram(image);
  EXPECT_TRUE(torch::equal(got, torch::tensor({0, 0, 128, 255}, torch::kUInt8).view({1, 2, 2}))) << got;
  // A face of one grey level carries no order to spread: it stays as it is.
  const auto flat = torch::full({2, 1, 3, 3}, 77, torch::kUInt8);
  EXPECT_TRUE(torch::equal(fer::equalize_histogram(flat), flat));
}

TEST(InputNormalization, AFaceInDimLightEqualisesLikeTheSameFaceInGoodLight) {
  // Any increasing map of the levels that keeps them apart (here v -> 2v + 9, a
  // brighter, higher-contrast copy of a dim face) leaves the equalised face unchanged.
  const auto dim = faces_in_range(3, 0, 120, 5);
  const auto bright = (dim.to(torch::kInt64) * 2 + 9).to(torch::kUInt8);
  const auto a = fer::equalize_histogram(dim), b = fer::equalize_histogram(bright);
  EXPECT_TRUE(torch::equal(a, b));
  // ...and every equalised face spans the full range.
  EXPECT_EQ(a.amin().item<int>(), 0);
  EXPECT_EQ(a.amax().item<int>(), 255);
}

TEST(InputNormalization, FloatInputsAreEqualisedOnTheirGreyLevels) {
  const auto u8 = faces_in_range(4, 20, 90, 7);
  const auto x = u8.unsqueeze(1).to(torch::kFloat32) / 255.0;
  const auto expected = fer::equalize_histogram(u8).unsqueeze(1).to(torch::kFloat32) / 255.0;
  EXPECT_TRUE(torch::allclose(fer::equalize_histogram(x), expected, 0, 1e-7));
  EXPECT_TRUE(torch::equal(fer::normalize_input(x, fer::InputNormalization::none), x));
  EXPECT_THROW(fer::parse_input_normalization("clahe"), std::invalid_argument);
  EXPECT_EQ(fer::parse_input_normalization(fer::input_normalization_name(fer::InputNormalization::equalize)),
            fer::InputNormalization::equalize);
}

TEST(InputNormalization, TrainingBatchesAreNormalisedAfterTheLightChanges) {
  // Gamma and brightness are increasing maps: after equalisation the batch is
  // (up to the levels they merge) what equalisation of the plain batch gives.
  const auto x = faces_in_range(8, 30, 200, 3).unsqueeze(1).to(torch::kFloat32) / 255.0;
  fer::AugmentOptions off;
  off.flip_prob = off.rotation_deg = off.zoom = off.brightness = off.contrast = 0;
  off.normalize = fer::InputNormalization::equalize;
  auto gen = fer::make_cpu_generator(1);
  EXPECT_TRUE(torch::equal(fer::augment_batch(x, off, gen), fer::equalize_histogram(x)));

  fer::AugmentOptions dim = off;
  dim.gamma = 1.0;
  auto gen2 = fer::make_cpu_generator(2);
  const auto y = fer::augment_batch(x, dim, gen2);
  EXPECT_EQ(y.amin().item<float>(), 0.0f);
  EXPECT_EQ(y.amax().item<float>(), 1.0f);
  EXPECT_LT((y - fer::equalize_histogram(x)).abs().mean().item<float>(), 0.02);
}

TEST(InputNormalization, GammaDarkensOrBrightensEachFaceWithinItsRange) {
  const auto x = torch::linspace(0, 1, 48 * 48).view({1, 1, 48, 48}).repeat({2, 1, 1, 1});
  const auto y = fer::adjust_gamma(x, torch::tensor({2.0f, 0.5f}));
  EXPECT_TRUE(torch::allclose(y[0], x[0].pow(2)));
  EXPECT_TRUE(torch::allclose(y[1], x[1].sqrt()));
  EXPECT_LE(y.amax().item<float>(), 1.0f);
}

TEST(InputNormalization, LowLightDarkensAddsNoiseAndRoundsToLevelsAsWorkedByHand) {
  // Levels 0, 51, 153, 255 darkened x1/3: 0, 17, 51, 85; noise +0.6, -0.4, +0.5, -2 levels
  // (sigma 2 times these draws): 1.2 -> 1, 16.2 -> 16, 52 -> 52, 81 -> 81.
  const auto x = torch::tensor({0.0f, 51.0f, 153.0f, 255.0f}).view({1, 1, 2, 2}) / 255;
  const auto noise = torch::tensor({0.6f, -0.4f, 0.5f, -2.0f}).view({1, 1, 2, 2});
  const auto y = fer::simulate_low_light(x, torch::tensor({1.0f / 3}), torch::tensor({2.0f}), noise);
  EXPECT_TRUE(torch::allclose(y * 255, torch::tensor({1.0f, 16.0f, 52.0f, 81.0f}).view({1, 1, 2, 2}), 0, 1e-4)) << y * 255;
  // Noise never leaves the range.
  const auto z = fer::simulate_low_light(x, torch::tensor({1.0f / 3}), torch::tensor({2.0f}), -10 * noise.abs());
  EXPECT_EQ(z.amin().item<float>(), 0.0f);
}

TEST(InputNormalization, LowLightFacesAreDimCoarseAndTakeOnlyTheirShare) {
  const auto x = faces_in_range(200, 0, 255, 7).unsqueeze(1).to(torch::kFloat32) / 255.0;
  fer::AugmentOptions off;
  off.flip_prob = off.rotation_deg = off.zoom = off.brightness = off.contrast = 0;
  fer::AugmentOptions dim = off;
  dim.low_light = 0.5;
  auto gen = fer::make_cpu_generator(3);
  const auto y = fer::augment_batch(x, dim, gen);
  const auto changed = (y != x).flatten(1).any(1);
  const auto n_changed = changed.sum().item<int64_t>();
  // A binomial(200, 0.5) draw: 5 standard deviations either side.
  EXPECT_GT(n_changed, 100 - 36);
  EXPECT_LT(n_changed, 100 + 36);
  // Each changed face is at most a third as bright plus 2 levels of noise at 4.5 sigma
  // (rounded), on whole 8-bit levels.
  const auto dark = y.index({changed});
  EXPECT_LE(dark.amax().item<float>() * 255, 255.0f / 3 + 9 + 0.5f);
  EXPECT_TRUE(torch::equal((dark * 255).round(), dark * 255));
  // Darkened x1/25 to x1/3: a face of mean level ~127 keeps a mean of 5 to 43 levels
  // (plus under a level that clamping the noise at 0 adds).
  const auto means = (dark * 255).mean({1, 2, 3});
  const auto source_means = (x.index({changed}) * 255).mean({1, 2, 3});
  EXPECT_TRUE((means >= source_means / 25 - 0.5).all().item<bool>()) << means;
  EXPECT_TRUE((means <= source_means / 3 + 1.0).all().item<bool>()) << means;
  // The faces left alone are untouched.
  EXPECT_TRUE(torch::equal(y.index({changed.logical_not()}), x.index({changed.logical_not()})));
}

TEST(InputNormalization, ACheckpointCarriesItsNormalisationToPrediction) {
  fer_test::TempDir dir;
  fer::ModelOptions o;
  o.filters = {4, 8};
  o.dense_units = 16;
  o.normalize = "equalize";
  torch::manual_seed(0);
  auto model = fer::make_model(o);
  EXPECT_EQ(model->input_normalization(), fer::InputNormalization::equalize);
  const std::string path = (dir.path() / "m.pt").string();
  fer::save_checkpoint(path, *model, {o, {"a", "b", "c", "d", "e", "f", "g"}, {}});
  const auto loaded = fer::load_checkpoint(path, torch::kCPU);
  EXPECT_EQ(loaded.meta.model.normalize, "equalize");
  EXPECT_EQ(loaded.model->input_normalization(), fer::InputNormalization::equalize);

  // Its predictions on dim faces are the plain network's on the equalised faces.
  const auto faces = faces_in_range(5, 10, 60, 9);
  const auto got = fer::predict_probabilities(*loaded.model, faces, torch::kCPU);
  loaded.model->set_input_normalization(fer::InputNormalization::none);
  const auto expected = fer::predict_probabilities(*loaded.model, fer::equalize_histogram(faces), torch::kCPU);
  EXPECT_TRUE(torch::allclose(got, expected, 0, 1e-6));
  const auto unnormalised = fer::predict_probabilities(*loaded.model, faces, torch::kCPU);
  EXPECT_FALSE(torch::allclose(got, unnormalised, 0, 1e-4));
}

TEST(InputNormalization, CheckpointsFromBeforeTheKeyReadAsNone) {
  auto j = fer::ModelOptions{}.to_json();
  j.erase("normalize");
  EXPECT_EQ(fer::ModelOptions::from_json(j).normalize, "none");
  j["normalize"] = "sharpen";
  try {
    fer::ModelOptions::from_json(j);
    FAIL() << "an unknown normalisation was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("normalize"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("sharpen"), std::string::npos) << e.what();
  }
}
