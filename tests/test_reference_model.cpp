// Accuracy regression guard: every shipped model (experiments/*/best.pt) and
// ensemble (experiments/*/ensemble.json) on FER-2013 PublicTest reproduces the
// metrics recorded beside it: metrics.json and each PublicTest record one
// folder down (tta/, tencrop/: other TTA modes).
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "fer/dataset.h"
#include "fer/evaluate.h"
#include "fer/inference.h"
#include "test_util.h"

namespace {
const fer_test::fs::path kExperiments = fer_test::fs::path(FER_SOURCE_DIR) / "experiments";

nlohmann::json read_json(const fer_test::fs::path& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("missing " + path.string());
  return nlohmann::json::parse(in);
}

// Recorded before TTA modes had names: false / true mean none / flip.
std::string recorded_tta(const nlohmann::json& metrics) {
  const auto& tta = metrics.at("tta");
  if (tta.is_boolean()) return tta.get<bool>() ? "flip" : "none";
  return tta.get<std::string>();
}

// The LibTorch that recorded the models' metrics: their run's environment.json
// (an ensemble's members all recorded on one version, else "mixed": no exact check).
std::string recorded_libtorch(const std::vector<std::string>& models) {
  std::string version;
  for (const auto& model : models) {
    const auto v = read_json(fer_test::fs::path(model).parent_path() / "environment.json")
                       .at("libtorch_version")
                       .get<std::string>();
    if (!version.empty() && v != version) return "mixed";
    version = v;
  }
  return version;
}

// Each shipped checkpoint's PublicTest probabilities per TTA mode, computed
// once: an ensemble's records are checked on its members' probabilities
// averaged by fer::mean_probabilities, the mean fer-eval takes (so no member
// is evaluated again for the ensemble).
class ProbabilityCache {
 public:
  explicit ProbabilityCache(const fer::Dataset& val) : val_(val) {}

  const fer::EnsemblePrediction& of(const std::string& checkpoint, const fer::EvaluationOptions& options) {
    const auto key = fer_test::fs::weakly_canonical(checkpoint).string() + "|" + options.tta;
    auto found = cache_.find(key);
    if (found == cache_.end()) found = cache_.emplace(key, fer::predict_checkpoints({checkpoint}, val_, options)).first;
    return found->second;
  }

  fer::EnsemblePrediction mean_of(const std::vector<std::string>& models, const fer::EvaluationOptions& options) {
    std::vector<torch::Tensor> members;
    for (const auto& model : models) {
      const auto& prediction = of(model, options);
      members.push_back(torch::tensor(prediction.probabilities).view({static_cast<int64_t>(val_.size()), -1}));
      EXPECT_EQ(prediction.class_names, of(models.front(), options).class_names) << model;
    }
    const auto mean = fer::mean_probabilities(members).contiguous();
    return {std::vector<float>(mean.data_ptr<float>(), mean.data_ptr<float>() + mean.numel()),
            of(models.front(), options).class_names};
  }

 private:
  const fer::Dataset& val_;
  std::map<std::string, fer::EnsemblePrediction> cache_;
};

// Evaluates `models` (one, or an ensemble's members) as `metrics_path` records
// (split val, its TTA, fp32) and holds them to the record: no more than 0.5
// points below, and exactly equal on the LibTorch that recorded it (another
// version's kernels may round differently). `twice`: a second, uncached
// evaluation must agree with the first prediction for prediction.
void check_against_record(const std::vector<std::string>& models, const fer_test::fs::path& metrics_path,
                          const fer::Dataset& val, ProbabilityCache& cache, const std::string& recorded_libtorch,
                          bool twice) {
  SCOPED_TRACE(metrics_path.string());
  const auto recorded = read_json(metrics_path);
  ASSERT_EQ(recorded.at("split"), "val");
  ASSERT_EQ(val.size(), static_cast<std::size_t>(recorded.at("n").get<int64_t>()));
  fer::EvaluationOptions options;
  options.charts = false;
  options.progress = false;
  options.device = "cpu";
  options.tta = recorded_tta(recorded);
  fer_test::TempDir out;
  const auto prediction = cache.mean_of(models, options);
  const auto first = fer::write_evaluation(val.labels, prediction.probabilities, prediction.class_names, out / "a",
                                           options, models);
  if (twice) {
    const auto second = fer::evaluate_checkpoints(models, val, out / "b", options);
    EXPECT_EQ(first.predicted, second.predicted) << "predictions differ between two runs";
  }
  const double accuracy = recorded.at("accuracy").get<double>();
  EXPECT_GE(first.metrics.accuracy, accuracy - 0.005)
      << "PublicTest accuracy (TTA " << options.tta << ") fell more than 0.5 points below the recorded " << accuracy;
  EXPECT_NEAR(first.metrics.balanced_accuracy, recorded.at("balanced_accuracy").get<double>(), 0.01);
  if (recorded_libtorch == TORCH_VERSION) {
    EXPECT_DOUBLE_EQ(first.metrics.accuracy, accuracy);
    EXPECT_EQ(first.metrics.confusion, recorded.at("confusion_matrix").get<std::vector<std::vector<std::int64_t>>>());
  }
}
}  // namespace

TEST(ReferenceModel, EveryShippedModelReproducesItsPublicTestMetrics) {
  const std::string csv = fer_test::real_fer2013();
  if (csv.empty())
    GTEST_SKIP() << "FER-2013 not found (../shared/data/fer2013/fer2013.csv.gz or $FER2013_CSV): "
                    "the accuracy guard did NOT run";
  const auto splits = fer::load_dataset(csv);
  ProbabilityCache cache(splits.val);
  int shipped = 0;
  for (const auto& entry : fer_test::fs::directory_iterator(kExperiments)) {
    const auto dir = entry.path();
    std::vector<std::string> models;
    if (fer_test::fs::exists(dir / "best.pt")) models = {(dir / "best.pt").string()};
    else if (fer_test::fs::exists(dir / "ensemble.json")) models = fer::read_ensemble_members((dir / "ensemble.json").string());
    else continue;
    ++shipped;
    const auto libtorch = recorded_libtorch(models);
    // Determinism is checked on single models (the ensemble's members are shipped on their own).
    const bool single = models.size() == 1;
    check_against_record(models, dir / "metrics.json", splits.val, cache, libtorch, single);
    for (const auto& sub : fer_test::fs::directory_iterator(dir)) {
      const auto record = sub.path() / "metrics.json";
      if (fer_test::fs::exists(record) && read_json(record).value("split", "") == "val")
        check_against_record(models, record, splits.val, cache, libtorch, false);
    }
  }
  EXPECT_TRUE(fer_test::fs::exists(kExperiments / "fer2013_paper_cnn" / "best.pt")) << "the default model is missing";
  EXPECT_GE(shipped, 1);
}
