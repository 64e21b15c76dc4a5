#include "fer/explain/faithfulness.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <stdexcept>

namespace fer {

double trapezoid_auc(const std::vector<double>& y) {
  if (y.size() < 2) throw std::invalid_argument("trapezoid_auc: needs at least two points");
  double area = 0;
  for (std::size_t i = 1; i < y.size(); ++i) area += (y[i - 1] + y[i]) / 2;
  return area / static_cast<double>(y.size() - 1);
}

FaithfulnessCurves deletion_insertion_curves(const std::vector<float>& image, const std::vector<float>& baseline,
                                             const std::vector<float>& scores, int label,
                                             const BatchPredictor& predict, int steps) {
  const std::size_t n = image.size();
  if (n == 0 || baseline.size() != n || scores.size() != n)
    throw std::invalid_argument("deletion_insertion_curves: image, baseline and scores must have one non-zero size");
  if (steps < 1) throw std::invalid_argument("deletion_insertion_curves: steps must be >= 1");
  if (label < 0) throw std::invalid_argument("deletion_insertion_curves: label must be >= 0");
  std::vector<std::size_t> rank(n);
  std::iota(rank.begin(), rank.end(), 0);
  std::stable_sort(rank.begin(), rank.end(), [&](std::size_t a, std::size_t b) { return scores[a] > scores[b]; });

  // Rows 0..steps: deletion after s steps; rows steps+1..2*steps+1: insertion.
  const int points = steps + 1;
  std::vector<float> batch(2 * points * n);
  for (int s = 0; s < points; ++s) {
    float* deleted = batch.data() + s * n;
    float* inserted = batch.data() + (points + s) * n;
    std::copy(image.begin(), image.end(), deleted);
    std::copy(baseline.begin(), baseline.end(), inserted);
    const auto changed = static_cast<std::size_t>(std::llround(static_cast<double>(s) * n / steps));
    for (std::size_t r = 0; r < changed; ++r) {
      deleted[rank[r]] = baseline[rank[r]];
      inserted[rank[r]] = image[rank[r]];
    }
  }
  const auto probs = predict(batch, 2 * points);
  const std::size_t classes = probs.size() / (2 * points);
  if (probs.size() != classes * 2 * points || static_cast<std::size_t>(label) >= classes)
    throw std::invalid_argument("deletion_insertion_curves: the predictor returned no probability for label " +
                                std::to_string(label));
  FaithfulnessCurves curves;
  for (int s = 0; s < points; ++s) {
    curves.fractions.push_back(static_cast<double>(s) / steps);
    curves.deletion.push_back(probs[s * classes + label]);
    curves.insertion.push_back(probs[(points + s) * classes + label]);
  }
  curves.deletion_auc = trapezoid_auc(curves.deletion);
  curves.insertion_auc = trapezoid_auc(curves.insertion);
  return curves;
}

std::vector<float> lime_pixel_scores(const LimeExplanation& explanation) {
  std::vector<float> scores(explanation.segments.size());
  for (std::size_t p = 0; p < scores.size(); ++p)
    scores[p] = static_cast<float>(explanation.weights.at(explanation.segments[p]));
  return scores;
}

std::vector<float> random_pixel_scores(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  std::vector<float> scores(n);
  for (auto& s : scores) s = uniform(rng);
  return scores;
}

void FaithfulnessReport::add(const std::string& method, const FaithfulnessCurves& curves) {
  if (fractions_.empty()) fractions_ = curves.fractions;
  if (curves.fractions.size() != fractions_.size() || curves.deletion.size() != fractions_.size() ||
      curves.insertion.size() != fractions_.size())
    throw std::invalid_argument("FaithfulnessReport: every curve needs " + std::to_string(fractions_.size()) +
                                " points");
  auto [it, inserted] = methods_.try_emplace(method);
  Sums& s = it->second;
  if (inserted) {
    order_.push_back(method);
    s.deletion_curve.assign(fractions_.size(), 0.0);
    s.insertion_curve.assign(fractions_.size(), 0.0);
  }
  s.deletion_sum += curves.deletion_auc;
  s.deletion_sq += curves.deletion_auc * curves.deletion_auc;
  s.insertion_sum += curves.insertion_auc;
  s.insertion_sq += curves.insertion_auc * curves.insertion_auc;
  ++s.n;
  for (std::size_t i = 0; i < fractions_.size(); ++i) {
    s.deletion_curve[i] += curves.deletion[i];
    s.insertion_curve[i] += curves.insertion[i];
  }
}

namespace {

FaithfulnessReport::AucStats stats(double sum, double sum_sq, std::int64_t n) {
  FaithfulnessReport::AucStats out;
  out.n = n;
  if (n == 0) return out;
  out.mean = sum / n;
  if (n > 1) out.std = std::sqrt(std::max(0.0, (sum_sq - n * out.mean * out.mean) / (n - 1)));
  return out;
}

std::vector<double> divided(std::vector<double> v, std::int64_t n) {
  for (auto& x : v) x /= std::max<std::int64_t>(1, n);
  return v;
}

nlohmann::json stats_json(const FaithfulnessReport::AucStats& s) {
  return {{"mean", s.mean}, {"std", s.std}, {"n", s.n}};
}

}  // namespace

FaithfulnessReport::MethodSummary FaithfulnessReport::summary(const std::string& method) const {
  const auto it = methods_.find(method);
  if (it == methods_.end()) throw std::invalid_argument("FaithfulnessReport: no curves for method '" + method + "'");
  const Sums& s = it->second;
  return {stats(s.deletion_sum, s.deletion_sq, s.n), stats(s.insertion_sum, s.insertion_sq, s.n),
          divided(s.deletion_curve, s.n), divided(s.insertion_curve, s.n)};
}

std::string FaithfulnessReport::to_json(const std::string& baseline_description) const {
  nlohmann::json methods = nlohmann::json::object();
  for (const auto& m : order_) {
    const auto s = summary(m);
    methods[m] = {{"deletion_auc", stats_json(s.deletion)},
                  {"insertion_auc", stats_json(s.insertion)},
                  {"mean_deletion_curve", s.mean_deletion},
                  {"mean_insertion_curve", s.mean_insertion}};
  }
  nlohmann::json ranking_json = nlohmann::json::array();
  for (const auto& r : ranking())
    ranking_json.push_back({{"method", r.method}, {"score", r.score}, {"deletion_auc", r.deletion_auc},
                            {"insertion_auc", r.insertion_auc}, {"n", r.n}});
  const nlohmann::json out = {
      {"steps", fractions_.empty() ? 0 : static_cast<int>(fractions_.size()) - 1},
      {"fractions", fractions_},
      {"class", "predicted"},
      {"baseline", baseline_description},
      {"better", {{"deletion_auc", "lower"}, {"insertion_auc", "higher"}}},
      {"methods", methods},
      {"ranking", ranking_json}};
  return out.dump(2) + "\n";
}

std::vector<FaithfulnessReport::Rank> FaithfulnessReport::ranking() const {
  std::vector<Rank> ranks;
  for (const auto& m : order_) {
    const auto s = summary(m);
    ranks.push_back({m, s.deletion.mean, s.insertion.mean, s.insertion.mean - s.deletion.mean, s.deletion.n});
  }
  std::stable_sort(ranks.begin(), ranks.end(), [](const Rank& a, const Rank& b) { return a.score > b.score; });
  return ranks;
}

nlohmann::json FaithfulnessReport::state_json() const {
  nlohmann::json methods = nlohmann::json::array();
  for (const auto& m : order_) {
    const Sums& s = methods_.at(m);
    methods.push_back({{"method", m}, {"deletion_sum", s.deletion_sum}, {"deletion_sq", s.deletion_sq},
                       {"insertion_sum", s.insertion_sum}, {"insertion_sq", s.insertion_sq}, {"n", s.n},
                       {"deletion_curve", s.deletion_curve}, {"insertion_curve", s.insertion_curve}});
  }
  return {{"fractions", fractions_}, {"methods", methods}};
}

void FaithfulnessReport::merge_state(const nlohmann::json& state) {
  const auto fractions = state.at("fractions").get<std::vector<double>>();
  if (fractions.empty()) return;
  if (fractions_.empty()) fractions_ = fractions;
  if (fractions != fractions_) throw std::invalid_argument("FaithfulnessReport: the reports' curves have other points");
  for (const auto& m : state.at("methods")) {
    auto [it, inserted] = methods_.try_emplace(m.at("method").get<std::string>());
    Sums& s = it->second;
    if (inserted) {
      order_.push_back(it->first);
      s.deletion_curve.assign(fractions_.size(), 0.0);
      s.insertion_curve.assign(fractions_.size(), 0.0);
    }
    s.deletion_sum += m.at("deletion_sum").get<double>();
    s.deletion_sq += m.at("deletion_sq").get<double>();
    s.insertion_sum += m.at("insertion_sum").get<double>();
    s.insertion_sq += m.at("insertion_sq").get<double>();
    s.n += m.at("n").get<std::int64_t>();
    const auto deletion = m.at("deletion_curve").get<std::vector<double>>();
    const auto insertion = m.at("insertion_curve").get<std::vector<double>>();
    for (std::size_t i = 0; i < fractions_.size(); ++i) {
      s.deletion_curve[i] += deletion.at(i);
      s.insertion_curve[i] += insertion.at(i);
    }
  }
}

}  // namespace fer
