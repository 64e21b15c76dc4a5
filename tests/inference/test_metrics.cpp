#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "fer/inference/metrics.h"

namespace {

// Reference AUC by counting every positive/negative pair (ties count half).
double pairwise_auc(const std::vector<int>& labels, const std::vector<double>& scores) {
  double wins = 0, pairs = 0;
  for (std::size_t i = 0; i < labels.size(); ++i)
    for (std::size_t j = 0; j < labels.size(); ++j)
      if (labels[i] == 1 && labels[j] == 0) {
        pairs += 1;
        wins += scores[i] > scores[j] ? 1.0 : (scores[i] == scores[j] ? 0.5 : 0.0);
      }
  return wins / pairs;
}

// Five samples, three classes; every figure below is worked out by hand.
const std::vector<std::int64_t> kTrue{0, 0, 1, 1, 2};
const std::vector<float> kProbs{0.7f, 0.2f, 0.1f,  //
                                0.3f, 0.4f, 0.3f,  //
                                0.2f, 0.5f, 0.3f,  //
                                0.5f, 0.3f, 0.2f,  //
                                0.1f, 0.2f, 0.7f};

}  // namespace

TEST(Metrics, HandComputedExample) {
  const auto m = fer::compute_metrics(kTrue, kProbs, 3);
  EXPECT_EQ(m.n, 5);
  EXPECT_DOUBLE_EQ(m.accuracy, 0.6);
  const std::vector<std::vector<std::int64_t>> cm{{1, 1, 0}, {1, 1, 0}, {0, 0, 1}};
  EXPECT_EQ(m.confusion, cm);
  EXPECT_DOUBLE_EQ(m.per_class[0].precision, 0.5);
  EXPECT_DOUBLE_EQ(m.per_class[0].recall, 0.5);
  EXPECT_DOUBLE_EQ(m.per_class[2].f1, 1.0);
  EXPECT_EQ(m.per_class[1].support, 2);
  EXPECT_NEAR(m.macro_f1, 2.0 / 3.0, 1e-12);
  EXPECT_NEAR(m.weighted_f1, 0.6, 1e-12);
  EXPECT_NEAR(m.balanced_accuracy, 2.0 / 3.0, 1e-12);
  EXPECT_NEAR(*m.per_class[0].auc, 5.0 / 6.0, 1e-12);
  EXPECT_NEAR(*m.per_class[1].auc, 5.0 / 6.0, 1e-12);
  EXPECT_NEAR(*m.per_class[2].auc, 1.0, 1e-12);
  EXPECT_NEAR(*m.macro_auc, (5.0 / 6 + 5.0 / 6 + 1.0) / 3, 1e-12);
}

TEST(Metrics, UndefinedPrecisionIsZeroAndBalancedAccuracySkipsAbsentClasses) {
  // Class 2 never predicted and never true; class 1 never predicted.
  const std::vector<std::int64_t> y{0, 0, 1};
  const std::vector<float> p{0.9f, 0.1f, 0.0f, 0.8f, 0.2f, 0.0f, 0.6f, 0.4f, 0.0f};
  const auto m = fer::compute_metrics(y, p, 3);
  EXPECT_DOUBLE_EQ(m.per_class[1].precision, 0.0);
  EXPECT_DOUBLE_EQ(m.per_class[1].f1, 0.0);
  EXPECT_DOUBLE_EQ(m.per_class[0].precision, 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(m.balanced_accuracy, (1.0 + 0.0) / 2.0);  // class 2 absent from y_true
  EXPECT_FALSE(m.per_class[2].auc.has_value());                // no positives: AUC undefined
  EXPECT_NEAR(*m.macro_auc, (*m.per_class[0].auc + *m.per_class[1].auc) / 2, 1e-12);
}

TEST(RocAuc, TiesCountHalfAndCurveAreaAgrees) {
  const std::vector<int> labels{1, 0, 1, 0};
  const std::vector<double> scores{0.5, 0.5, 0.8, 0.2};
  EXPECT_DOUBLE_EQ(fer::roc_auc(labels, scores), 0.875);
  const auto c = fer::roc_curve(labels, scores);
  const std::vector<double> fpr{0, 0, 0.5, 1}, tpr{0, 0.5, 1, 1};
  EXPECT_EQ(c.fpr, fpr);
  EXPECT_EQ(c.tpr, tpr);
  double area = 0;
  for (std::size_t i = 1; i < c.fpr.size(); ++i) area += (c.fpr[i] - c.fpr[i - 1]) * (c.tpr[i] + c.tpr[i - 1]) / 2;
  EXPECT_DOUBLE_EQ(area, 0.875);
  EXPECT_THROW(fer::roc_auc({1, 1}, {0.2, 0.3}), std::invalid_argument);
}

TEST(RocAuc, RankFormulaMatchesPairwiseReferenceOnRandomData) {
  std::mt19937 rng(3);
  std::uniform_int_distribution<int> coarse(0, 9);  // coarse scores force many ties
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<int> labels(200);
    std::vector<double> scores(200);
    for (std::size_t i = 0; i < labels.size(); ++i) {
      labels[i] = static_cast<int>(i % 3 == 0);
      scores[i] = coarse(rng) / 10.0 + (labels[i] ? 0.15 : 0.0);
    }
    EXPECT_NEAR(fer::roc_auc(labels, scores), pairwise_auc(labels, scores), 1e-12);
  }
}

TEST(Metrics, MicroAucPoolsEveryClassDecision) {
  const auto m = fer::compute_metrics(kTrue, kProbs, 3);
  std::vector<int> labels;
  std::vector<double> scores;
  for (std::size_t i = 0; i < kTrue.size(); ++i)
    for (int c = 0; c < 3; ++c) {
      labels.push_back(kTrue[i] == c);
      scores.push_back(kProbs[i * 3 + c]);
    }
  EXPECT_NEAR(*m.micro_auc, pairwise_auc(labels, scores), 1e-12);
}

TEST(Metrics, JsonHasTheDocumentedFields) {
  const auto j = fer::compute_metrics(kTrue, kProbs, 3).to_json({"a", "b", "c"});
  for (const char* key : {"n", "accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "per_class",
                          "confusion_matrix", "roc_auc"})
    EXPECT_TRUE(j.contains(key)) << key;
  EXPECT_DOUBLE_EQ(j["per_class"]["c"]["recall"].get<double>(), 1.0);
  EXPECT_TRUE(j["roc_auc"].contains("micro"));
}

TEST(Metrics, RejectsMismatchedInput) {
  EXPECT_THROW(fer::compute_metrics({0, 1}, {0.5f, 0.5f}, 2), std::invalid_argument);
  EXPECT_THROW(fer::compute_metrics({0, 3}, {0.5f, 0.5f, 0.5f, 0.5f}, 2), std::invalid_argument);
}

TEST(VoteMetrics, CrossEntropyAndPluralityAccuracyByHand) {
  // Row 1: votes (6, 4, 0), p (0.5, 0.25, 0.25): predicted 0, the most voted.
  // Row 2: votes (0, 5, 5), p (0.2, 0.3, 0.5): predicted 2, tied for the most: counts.
  // Row 3: votes (1, 9, 0), p (0.7, 0.2, 0.1): predicted 0, not the most voted.
  const std::vector<float> votes{6, 4, 0, 0, 5, 5, 1, 9, 0};
  const std::vector<float> p{0.5f, 0.25f, 0.25f, 0.2f, 0.3f, 0.5f, 0.7f, 0.2f, 0.1f};
  const auto m = fer::compute_vote_metrics(votes, p, 3);
  EXPECT_EQ(m.n, 3);
  const double ce = (-(0.6 * std::log(0.5) + 0.4 * std::log(0.25)) - (0.5 * std::log(0.3) + 0.5 * std::log(0.5)) -
                     (0.1 * std::log(0.7) + 0.9 * std::log(0.2))) / 3;
  EXPECT_NEAR(m.cross_entropy, ce, 1e-6);
  EXPECT_DOUBLE_EQ(m.plurality_accuracy, 2.0 / 3);
  // Shares per row: (0.6, 0.4, 0), (0, 0.5, 0.5), (0.1, 0.9, 0).
  const std::vector<double> share{0.7 / 3, 1.8 / 3, 0.5 / 3}, mean_p{1.4 / 3, 0.75 / 3, 0.85 / 3};
  for (int c = 0; c < 3; ++c) {
    EXPECT_NEAR(m.vote_share[c], share[c], 1e-6) << c;
    EXPECT_NEAR(m.mean_probability[c], mean_p[c], 1e-6) << c;
  }
  EXPECT_THROW(fer::compute_vote_metrics({0, 0, 0}, {0.2f, 0.3f, 0.5f}, 3), std::invalid_argument);
  EXPECT_THROW(fer::compute_vote_metrics(votes, {0.5f}, 3), std::invalid_argument);
}
