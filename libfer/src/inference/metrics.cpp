#include "fer/inference/metrics.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

namespace fer {
namespace {

void check_binary(const std::vector<int>& labels, const std::vector<double>& scores) {
  if (labels.size() != scores.size())
    throw std::invalid_argument("roc: " + std::to_string(labels.size()) + " labels but " +
                                std::to_string(scores.size()) + " scores");
  for (int l : labels)
    if (l != 0 && l != 1) throw std::invalid_argument("roc: labels must be 0 or 1");
}

}  // namespace

double roc_auc(const std::vector<int>& labels, const std::vector<double>& scores) {
  check_binary(labels, scores);
  const std::size_t n = labels.size();
  const auto pos = static_cast<double>(std::count(labels.begin(), labels.end(), 1));
  const double neg = static_cast<double>(n) - pos;
  if (pos == 0 || neg == 0) throw std::invalid_argument("roc_auc: only one class present, AUC is undefined");
  // Mann-Whitney U with average ranks for ties == trapezoidal ROC area.
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return scores[a] < scores[b]; });
  double rank_sum = 0;
  for (std::size_t i = 0; i < n;) {
    std::size_t j = i;
    while (j + 1 < n && scores[order[j + 1]] == scores[order[i]]) ++j;
    const double avg_rank = (double(i) + double(j)) / 2.0 + 1.0;
    for (std::size_t k = i; k <= j; ++k)
      if (labels[order[k]] == 1) rank_sum += avg_rank;
    i = j + 1;
  }
  return (rank_sum - pos * (pos + 1) / 2.0) / (pos * neg);
}

RocCurve roc_curve(const std::vector<int>& labels, const std::vector<double>& scores) {
  check_binary(labels, scores);
  const std::size_t n = labels.size();
  const auto pos = static_cast<double>(std::count(labels.begin(), labels.end(), 1));
  const double neg = static_cast<double>(n) - pos;
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return scores[a] > scores[b]; });
  RocCurve c;
  c.fpr.push_back(0);
  c.tpr.push_back(0);
  c.thresholds.push_back(n ? scores[order[0]] + 1 : 1);
  double tp = 0, fp = 0;
  for (std::size_t i = 0; i < n;) {
    std::size_t j = i;
    for (; j < n && scores[order[j]] == scores[order[i]]; ++j) (labels[order[j]] ? tp : fp) += 1;
    c.fpr.push_back(neg > 0 ? fp / neg : 0);
    c.tpr.push_back(pos > 0 ? tp / pos : 0);
    c.thresholds.push_back(scores[order[i]]);
    i = j;
  }
  return c;
}

std::vector<std::int64_t> argmax_rows(const std::vector<float>& p, int k) {
  std::vector<std::int64_t> out(p.size() / k);
  for (std::size_t i = 0; i < out.size(); ++i) {
    const float* row = p.data() + i * k;
    out[i] = std::max_element(row, row + k) - row;
  }
  return out;
}

Metrics compute_metrics(const std::vector<std::int64_t>& y_true, const std::vector<float>& probabilities, int k) {
  if (k <= 0) throw std::invalid_argument("compute_metrics: num_classes must be > 0");
  if (probabilities.size() != y_true.size() * static_cast<std::size_t>(k))
    throw std::invalid_argument("compute_metrics: " + std::to_string(y_true.size()) + " labels but " +
                                std::to_string(probabilities.size()) + " probabilities for " + std::to_string(k) +
                                " classes");
  for (auto y : y_true)
    if (y < 0 || y >= k) throw std::invalid_argument("compute_metrics: label " + std::to_string(y) + " out of range");
  Metrics m;
  m.n = static_cast<std::int64_t>(y_true.size());
  const auto y_pred = argmax_rows(probabilities, k);
  m.confusion.assign(k, std::vector<std::int64_t>(k, 0));
  for (std::size_t i = 0; i < y_true.size(); ++i) ++m.confusion[y_true[i]][y_pred[i]];

  std::int64_t correct = 0;
  for (int c = 0; c < k; ++c) correct += m.confusion[c][c];
  m.accuracy = m.n ? double(correct) / m.n : 0.0;

  m.per_class.resize(k);
  int present = 0;
  double recall_sum_present = 0;
  for (int c = 0; c < k; ++c) {
    std::int64_t predicted = 0, actual = 0;
    for (int r = 0; r < k; ++r) {
      predicted += m.confusion[r][c];
      actual += m.confusion[c][r];
    }
    auto& cr = m.per_class[c];
    const double tp = double(m.confusion[c][c]);
    cr.support = actual;
    cr.precision = predicted ? tp / predicted : 0.0;
    cr.recall = actual ? tp / actual : 0.0;
    cr.f1 = (cr.precision + cr.recall) > 0 ? 2 * cr.precision * cr.recall / (cr.precision + cr.recall) : 0.0;
    m.macro_precision += cr.precision / k;
    m.macro_recall += cr.recall / k;
    m.macro_f1 += cr.f1 / k;
    m.weighted_f1 += m.n ? cr.f1 * actual / m.n : 0.0;
    if (actual > 0) {
      ++present;
      recall_sum_present += cr.recall;
    }
  }
  m.balanced_accuracy = present ? recall_sum_present / present : 0.0;

  // One-vs-rest AUC per class, then macro (mean over defined) and micro (pooled).
  std::vector<int> labels(y_true.size());
  std::vector<double> scores(y_true.size());
  std::vector<int> all_labels;
  std::vector<double> all_scores;
  all_labels.reserve(probabilities.size());
  all_scores.reserve(probabilities.size());
  double auc_sum = 0;
  int auc_count = 0;
  for (int c = 0; c < k; ++c) {
    for (std::size_t i = 0; i < y_true.size(); ++i) {
      labels[i] = y_true[i] == c ? 1 : 0;
      scores[i] = probabilities[i * k + c];
    }
    all_labels.insert(all_labels.end(), labels.begin(), labels.end());
    all_scores.insert(all_scores.end(), scores.begin(), scores.end());
    const auto pos = std::count(labels.begin(), labels.end(), 1);
    if (pos > 0 && pos < static_cast<long>(labels.size())) {
      m.per_class[c].auc = roc_auc(labels, scores);
      auc_sum += *m.per_class[c].auc;
      ++auc_count;
    }
  }
  if (auc_count > 0) m.macro_auc = auc_sum / auc_count;
  const auto all_pos = std::count(all_labels.begin(), all_labels.end(), 1);
  if (all_pos > 0 && all_pos < static_cast<long>(all_labels.size())) m.micro_auc = roc_auc(all_labels, all_scores);
  return m;
}

nlohmann::json Metrics::to_json(const std::vector<std::string>& names) const {
  auto opt = [](const std::optional<double>& v) { return v ? nlohmann::json(*v) : nlohmann::json(nullptr); };
  nlohmann::json per = nlohmann::json::object();
  for (std::size_t c = 0; c < per_class.size(); ++c) {
    const auto& r = per_class[c];
    per[c < names.size() ? names[c] : std::to_string(c)] = {
        {"precision", r.precision}, {"recall", r.recall}, {"f1", r.f1}, {"support", r.support}, {"auc", opt(r.auc)}};
  }
  return {{"n", n},
          {"accuracy", accuracy},
          {"balanced_accuracy", balanced_accuracy},
          {"macro_precision", macro_precision},
          {"macro_recall", macro_recall},
          {"macro_f1", macro_f1},
          {"weighted_f1", weighted_f1},
          {"roc_auc", {{"micro", opt(micro_auc)}, {"macro", opt(macro_auc)}}},
          {"per_class", per},
          {"class_names", names},
          {"confusion_matrix", confusion}};
}

VoteMetrics compute_vote_metrics(const std::vector<float>& votes, const std::vector<float>& probabilities,
                                 int num_classes) {
  const auto k = static_cast<std::size_t>(num_classes);
  if (num_classes <= 0 || votes.size() != probabilities.size() || votes.size() % k != 0)
    throw std::invalid_argument("compute_vote_metrics: votes and probabilities must both be [n, " +
                                std::to_string(num_classes) + "]");
  VoteMetrics m;
  m.n = static_cast<std::int64_t>(votes.size() / k);
  m.vote_share.assign(k, 0.0);
  m.mean_probability.assign(k, 0.0);
  if (m.n == 0) return m;
  const auto predicted = argmax_rows(probabilities, num_classes);
  double cross_entropy = 0;
  std::int64_t plural = 0;
  for (std::int64_t i = 0; i < m.n; ++i) {
    const float* v = votes.data() + i * k;
    const float* p = probabilities.data() + i * k;
    const double total = std::accumulate(v, v + k, 0.0);
    if (total <= 0) throw std::invalid_argument("compute_vote_metrics: row " + std::to_string(i) + " has no votes");
    const float most = *std::max_element(v, v + k);
    for (std::size_t c = 0; c < k; ++c) {  // a class the annotators never chose adds nothing, whatever its p
      if (v[c] > 0) cross_entropy -= v[c] / total * std::log(std::max(static_cast<double>(p[c]), 1e-12));
      m.vote_share[c] += v[c] / total;
      m.mean_probability[c] += p[c];
    }
    plural += v[predicted[i]] == most;
  }
  const auto rows = static_cast<double>(m.n);
  m.cross_entropy = cross_entropy / rows;
  m.plurality_accuracy = static_cast<double>(plural) / rows;
  for (std::size_t c = 0; c < k; ++c) {
    m.vote_share[c] /= rows;
    m.mean_probability[c] /= rows;
  }
  return m;
}

nlohmann::json VoteMetrics::to_json() const {
  return {{"n", n},
          {"cross_entropy", cross_entropy},
          {"plurality_accuracy", plurality_accuracy},
          {"vote_share", vote_share},
          {"mean_probability", mean_probability}};
}

}  // namespace fer
