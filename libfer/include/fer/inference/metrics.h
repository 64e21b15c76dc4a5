// Classification metrics with scikit-learn's definitions (labels = every class):
// precision/recall/F1 are 0 where undefined; balanced accuracy is the mean recall
// over classes present in y_true; ROC AUC is one-vs-rest with ties counted half.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace fer {

struct ClassReport {
  double precision = 0, recall = 0, f1 = 0;
  std::int64_t support = 0;
  std::optional<double> auc;  // empty when the class has no positives or no negatives
};

struct Metrics {
  std::int64_t n = 0;
  double accuracy = 0, balanced_accuracy = 0;
  double macro_precision = 0, macro_recall = 0, macro_f1 = 0, weighted_f1 = 0;
  std::optional<double> micro_auc, macro_auc;  // macro: mean over classes with a defined AUC
  std::vector<ClassReport> per_class;
  std::vector<std::vector<std::int64_t>> confusion;  // [true][predicted]

  nlohmann::json to_json(const std::vector<std::string>& class_names) const;
};

struct RocCurve {
  std::vector<double> fpr, tpr, thresholds;  // from (0,0) to (1,1)
};

// Requires labels in {0,1} and scores of the same length. Throws
// std::invalid_argument when only one class is present (AUC undefined).
double roc_auc(const std::vector<int>& binary_labels, const std::vector<double>& scores);
RocCurve roc_curve(const std::vector<int>& binary_labels, const std::vector<double>& scores);

// Requires y_true[i] in [0,k), probabilities row-major [n,k] with k = num_classes.
// The predicted class is the arg-max (lowest index on ties).
Metrics compute_metrics(const std::vector<std::int64_t>& y_true, const std::vector<float>& probabilities,
                        int num_classes);

// Agreement with annotators, for data with votes (FER+): `votes` [n,k]
// row-major counts, each row with at least one vote.
struct VoteMetrics {
  std::int64_t n = 0;
  double cross_entropy = 0;        // mean -sum_k v_k log p_k, v the row's vote distribution (natural log)
  double plurality_accuracy = 0;   // share of arg-max predictions among their row's most-voted classes (ties: any)
  std::vector<double> vote_share;        // per class: the mean over rows of its share of the row's votes
  std::vector<double> mean_probability;  // per class: the mean predicted probability (beside vote_share: calibration)
  nlohmann::json to_json() const;
};
VoteMetrics compute_vote_metrics(const std::vector<float>& votes, const std::vector<float>& probabilities,
                                 int num_classes);

std::vector<std::int64_t> argmax_rows(const std::vector<float>& probabilities, int num_classes);

}  // namespace fer
