// Deletion/insertion curves: hand-computed cases, and the properties that make
// them a faithfulness measure (exact attributions of a linear model beat any
// random ranking; curves move one way when every pixel's evidence has one sign).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <random>

#include "fer/explain/faithfulness.h"

namespace {

// p(class 0) = sigmoid(w.x + bias) of a two-class linear model; p(class 1) = 1 - p(class 0).
fer::BatchPredictor linear_predictor(const std::vector<float>& w, double bias) {
  return [w, bias](const std::vector<float>& images, int n) {
    std::vector<float> out;
    const std::size_t d = w.size();
    for (int i = 0; i < n; ++i) {
      double z = bias;
      for (std::size_t p = 0; p < d; ++p) z += w[p] * images[i * d + p];
      const double p0 = 1 / (1 + std::exp(-z));
      out.push_back(static_cast<float>(p0));
      out.push_back(static_cast<float>(1 - p0));
    }
    return out;
  };
}

std::vector<float> uniform(std::size_t n, float lo, float hi, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

// The exact attributions of a linear model's logit against a baseline: w * (x - b).
std::vector<float> linear_attributions(const std::vector<float>& w, const std::vector<float>& x,
                                       const std::vector<float>& b) {
  std::vector<float> a(w.size());
  for (std::size_t p = 0; p < w.size(); ++p) a[p] = w[p] * (x[p] - b[p]);
  return a;
}

}  // namespace

TEST(Faithfulness, TrapezoidAreaMatchesHandComputation) {
  EXPECT_DOUBLE_EQ(fer::trapezoid_auc({1, 0}), 0.5);
  EXPECT_DOUBLE_EQ(fer::trapezoid_auc({0, 1, 1}), 0.75);
  EXPECT_DOUBLE_EQ(fer::trapezoid_auc({0.2, 0.2, 0.2, 0.2}), 0.2);
  EXPECT_THROW(fer::trapezoid_auc({1}), std::invalid_argument);
}

// p = the mean pixel of a 10-pixel image (white image, black baseline): with 4
// steps the curves change round(s*10/4) = 0, 3, 5, 8, 10 pixels.
TEST(Faithfulness, CurvesMatchAHandComputedCase) {
  const fer::BatchPredictor mean_pixel = [](const std::vector<float>& images, int n) {
    std::vector<float> out;
    for (int i = 0; i < n; ++i) {
      double sum = 0;
      for (int p = 0; p < 10; ++p) sum += images[i * 10 + p];
      out.push_back(static_cast<float>(sum / 10));
    }
    return out;
  };
  const std::vector<float> image(10, 1.0f), baseline(10, 0.0f), scores(10, 1.0f);
  const auto c = fer::deletion_insertion_curves(image, baseline, scores, 0, mean_pixel, 4);
  const std::vector<double> fractions{0, 0.25, 0.5, 0.75, 1};
  const std::vector<double> deletion{1, 0.7, 0.5, 0.2, 0}, insertion{0, 0.3, 0.5, 0.8, 1};
  ASSERT_EQ(c.fractions.size(), 5u);
  for (int s = 0; s < 5; ++s) {
    EXPECT_DOUBLE_EQ(c.fractions[s], fractions[s]);
    EXPECT_NEAR(c.deletion[s], deletion[s], 1e-6) << s;
    EXPECT_NEAR(c.insertion[s], insertion[s], 1e-6) << s;
  }
  EXPECT_NEAR(c.deletion_auc, 1.9 / 4, 1e-6);  // (1.7 + 1.2 + 0.7 + 0.2) / 2 / 4
  EXPECT_NEAR(c.insertion_auc, 2.1 / 4, 1e-6);
}

// Removing the k largest contributions w_i (x_i - b_i) leaves the smallest
// logit any k-pixel deletion can leave, for every k; inserting them gives the
// largest. So the exact attributions' curves bound every random ranking's.
TEST(Faithfulness, ExactAttributionsOfALinearModelBeatEveryRandomRanking) {
  const std::size_t n = 48 * 48;
  const auto w = uniform(n, -0.02f, 0.03f, 1);
  const auto x = uniform(n, 0, 1, 2), b = std::vector<float>(n, 0.5f);
  double logit_at_baseline = 0;
  for (std::size_t p = 0; p < n; ++p) logit_at_baseline += w[p] * b[p];
  const auto predict = linear_predictor(w, -logit_at_baseline);  // p(baseline) = 0.5: no saturation
  const auto exact = fer::deletion_insertion_curves(x, b, linear_attributions(w, x, b), 0, predict, 20);
  for (std::uint64_t seed = 0; seed < 5; ++seed) {
    const auto random = fer::deletion_insertion_curves(x, b, fer::random_pixel_scores(n, seed), 0, predict, 20);
    for (std::size_t s = 0; s < exact.deletion.size(); ++s) {
      EXPECT_LE(exact.deletion[s], random.deletion[s] + 1e-6) << "seed " << seed << " step " << s;
      EXPECT_GE(exact.insertion[s], random.insertion[s] - 1e-6) << "seed " << seed << " step " << s;
    }
    EXPECT_LT(exact.deletion_auc, random.deletion_auc - 0.05) << "seed " << seed;
    EXPECT_GT(exact.insertion_auc, random.insertion_auc + 0.05) << "seed " << seed;
  }
}

// A planted model whose evidence for class 0 is a bright square: every pixel's
// contribution is >= 0, so deletion can only lower p and insertion only raise it,
// whatever the ranking; the ends are p(image) and p(baseline).
TEST(Faithfulness, CurvesAreMonotoneForAPlantedModel) {
  const std::size_t n = 48 * 48;
  std::vector<float> w(n, 0.0f), x(n, 0.2f), b(n, 0.2f), planted(n, 0.0f);
  for (int r = 10; r < 30; ++r)
    for (int c = 14; c < 34; ++c) {
      w[r * 48 + c] = 0.05f;
      x[r * 48 + c] = 0.9f;
      planted[r * 48 + c] = 1.0f;
    }
  const auto predict = linear_predictor(w, -4.0);
  const float p_image = predict(x, 1)[0], p_baseline = predict(b, 1)[0];
  for (const auto& scores : {planted, fer::random_pixel_scores(n, 3)}) {
    const auto c = fer::deletion_insertion_curves(x, b, scores, 0, predict, 16);
    for (std::size_t s = 1; s < c.deletion.size(); ++s) {
      EXPECT_LE(c.deletion[s], c.deletion[s - 1] + 1e-7) << s;
      EXPECT_GE(c.insertion[s], c.insertion[s - 1] - 1e-7) << s;
    }
    EXPECT_FLOAT_EQ(c.deletion.front(), p_image);
    EXPECT_FLOAT_EQ(c.deletion.back(), p_baseline);
    EXPECT_FLOAT_EQ(c.insertion.front(), p_baseline);
    EXPECT_FLOAT_EQ(c.insertion.back(), p_image);
  }
  // The planted square is 400 of 2304 pixels: the planted ranking has deleted it all by 3/16 of the way.
  const auto c = fer::deletion_insertion_curves(x, b, planted, 0, predict, 16);
  EXPECT_FLOAT_EQ(c.deletion[3], p_baseline);
  EXPECT_FLOAT_EQ(c.insertion[3], p_image);
}

TEST(Faithfulness, BadInputsAreErrors) {
  const auto predict = linear_predictor(std::vector<float>(4, 1.0f), 0);
  const std::vector<float> four(4, 0.5f), three(3, 0.5f);
  EXPECT_THROW(fer::deletion_insertion_curves(four, three, four, 0, predict), std::invalid_argument);
  EXPECT_THROW(fer::deletion_insertion_curves(four, four, four, 0, predict, 0), std::invalid_argument);
  EXPECT_THROW(fer::deletion_insertion_curves(four, four, four, 2, predict), std::invalid_argument);  // 2 classes
  EXPECT_THROW(fer::deletion_insertion_curves({}, {}, {}, 0, predict), std::invalid_argument);
}

TEST(Faithfulness, LimeWeightsBecomeEachPixelsScore) {
  fer::LimeExplanation e;
  e.segments = {0, 0, 1, 2, 2, 1};
  e.num_segments = 3;
  e.weights = {0.5, -1.0, 2.0};
  EXPECT_EQ(fer::lime_pixel_scores(e), (std::vector<float>{0.5f, 0.5f, -1.0f, 2.0f, 2.0f, -1.0f}));
}

TEST(Faithfulness, ReportKeepsMeanStdAndMeanCurves) {
  fer::FaithfulnessReport report;
  fer::FaithfulnessCurves a{{0, 0.5, 1}, {1.0, 0.4, 0.0}, {0.0, 0.6, 1.0}, 0.2, 0.6};
  fer::FaithfulnessCurves b{{0, 0.5, 1}, {1.0, 0.2, 0.0}, {0.0, 0.8, 1.0}, 0.4, 0.8};
  report.add("shap", a);
  report.add("shap", b);
  report.add("random", a);
  EXPECT_EQ(report.methods(), (std::vector<std::string>{"shap", "random"}));
  const auto s = report.summary("shap");
  EXPECT_EQ(s.deletion.n, 2);
  EXPECT_NEAR(s.deletion.mean, 0.3, 1e-12);
  EXPECT_NEAR(s.deletion.std, std::sqrt(0.02), 1e-12);  // sample std of {0.2, 0.4}
  EXPECT_NEAR(s.insertion.mean, 0.7, 1e-12);
  EXPECT_NEAR(s.mean_deletion[1], 0.3, 1e-12);
  EXPECT_NEAR(s.mean_insertion[1], 0.7, 1e-12);
  EXPECT_EQ(report.summary("random").deletion.std, 0.0);  // one image
  const auto json = nlohmann::json::parse(report.to_json("mid-grey"));
  EXPECT_EQ(json["steps"], 2);
  EXPECT_EQ(json["baseline"], "mid-grey");
  EXPECT_NEAR(json["methods"]["shap"]["insertion_auc"]["mean"].get<double>(), 0.7, 1e-12);
  EXPECT_EQ(json["methods"]["random"]["deletion_auc"]["n"], 1);
  fer::FaithfulnessCurves other_steps{{0, 1}, {1, 0}, {0, 1}, 0.5, 0.5};
  EXPECT_THROW(report.add("shap", other_steps), std::invalid_argument);
  EXPECT_THROW(report.summary("lime"), std::invalid_argument);
}

TEST(Faithfulness, RankingOrdersTheMethodsByInsertionMinusDeletion) {
  fer::FaithfulnessReport report;
  // shap: 0.6 - 0.2 = 0.4; random: 0.5 - 0.5 = 0; gradcam: mean of 0.1 and 0.3 = 0.2.
  report.add("random", {{0, 0.5, 1}, {1.0, 0.5, 0.0}, {0.0, 0.5, 1.0}, 0.5, 0.5});
  report.add("gradcam", {{0, 0.5, 1}, {1.0, 0.3, 0.0}, {0.0, 0.4, 1.0}, 0.4, 0.5});
  report.add("gradcam", {{0, 0.5, 1}, {1.0, 0.3, 0.0}, {0.0, 0.6, 1.0}, 0.4, 0.7});
  report.add("shap", {{0, 0.5, 1}, {1.0, 0.1, 0.0}, {0.0, 0.7, 1.0}, 0.2, 0.6});
  const auto ranks = report.ranking();
  ASSERT_EQ(ranks.size(), 3u);
  EXPECT_EQ(ranks[0].method, "shap");
  EXPECT_NEAR(ranks[0].score, 0.4, 1e-12);
  EXPECT_EQ(ranks[1].method, "gradcam");
  EXPECT_NEAR(ranks[1].score, 0.2, 1e-12);
  EXPECT_NEAR(ranks[1].insertion_auc, 0.6, 1e-12);
  EXPECT_EQ(ranks[1].n, 2);
  EXPECT_EQ(ranks[2].method, "random");
  const auto json = nlohmann::json::parse(report.to_json("mid-grey"));
  ASSERT_EQ(json["ranking"].size(), 3u);
  EXPECT_EQ(json["ranking"][0]["method"], "shap");
  EXPECT_EQ(json["ranking"][2]["method"], "random");
}
