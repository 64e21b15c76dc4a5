// Accuracy regression guard: every shipped model and ensemble (the folders
// experiments/models.txt lists) reproduces the metrics recorded beside it on
// the split it was selected on (FER-2013 PublicTest; FER+'s FER2013Valid, with
// the agreement with the annotators): metrics.json and each such record one
// folder down (flip/, tencrop/: other TTA modes).
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "fer/config/config.h"
#include "fer/data/dataset.h"
#include "fer/inference/inference.h"
#include "fer/models/checkpoint.h"
#include "fer/report/evaluate/evaluate.h"
#include "fer/models/model_store.h"
#include "test_util.h"

namespace {
const fer_test::fs::path kExperiments = fer_test::fs::path(fer_test::source_dir()) / "experiments";

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

// One record to hold a model (or an ensemble's members) to.
struct Record {
  std::vector<std::string> models;
  fer::DataConfig data;
  fer_test::fs::path metrics_path;
  fer::Tta tta;
  std::string recorded_libtorch;
  bool twice;  // also evaluate once more, uncached, and compare predictions
};

// The data a record was measured on: its metrics.json's "data", a path under
// ../shared in shipped records (FER-2013's CSV: fer_test::real_fer2013(), so
// $FER2013_CSV still applies), read with the data options of the model's run
// (config.yaml beside its first member: FER+'s class options).
fer::DataConfig record_data(const nlohmann::json& metrics, const std::string& first_model) {
  auto data = fer::load_config((fer_test::fs::path(first_model).parent_path() / "config.yaml").string()).data;
  const fer_test::fs::path recorded = metrics.at("data").get<std::string>();
  if (recorded.filename() == "fer2013.csv.gz" && !fer_test::real_fer2013().empty()) data.path = fer_test::real_fer2013();
  else data.path = (fer_test::fs::path(fer_test::source_dir()) / recorded).lexically_normal().string();
  return data;
}

std::string data_key(const fer::DataConfig& data) {
  return data.path + "|" + data.votes + "|" + std::to_string(data.ferplus_unknown) + std::to_string(data.ferplus_as_fer2013);
}

bool is_fer2013(const fer::DataConfig& data) { return data.votes.empty() && !fer_test::fs::is_directory(data.path); }

std::string architecture_of(const std::string& model) {
  return fer::load_checkpoint(model, torch::kCPU).meta.model.architecture;
}

// Every record of every shipped model and ensemble: metrics.json and each
// PublicTest record one folder down.
std::vector<Record> shipped_records() {
  std::vector<Record> records;
  std::set<std::string> checked_twice;  // architectures
  for (const auto& folder : fer::shipped_model_folders(kExperiments.string())) {
    const auto dir = kExperiments / folder;
    std::vector<std::string> models;
    if (fer_test::fs::exists(dir / "best.pt")) models = {(dir / "best.pt").string()};
    else if (fer_test::fs::exists(dir / "ensemble.json")) models = fer::read_ensemble_members((dir / "ensemble.json").string());
    else continue;
    const auto libtorch = recorded_libtorch(models);
    // Determinism (and that the cached views are fer-eval's) is checked once per
    // architecture, on a single model: it depends on the code path, not the weights.
    const bool twice = models.size() == 1 && checked_twice.insert(architecture_of(models.front())).second;
    const auto metrics = read_json(dir / "metrics.json");
    const auto data = record_data(metrics, models.front());
    records.push_back({models, data, dir / "metrics.json", fer::parse_tta(recorded_tta(metrics)), libtorch, twice});
    for (const auto& sub : fer_test::fs::directory_iterator(dir)) {
      const auto path = sub.path() / "metrics.json";
      if (!fer_test::fs::exists(path)) continue;
      const auto json = read_json(path);
      if (json.value("split", "") == "val")
        records.push_back({models, record_data(json, models.front()), path, fer::parse_tta(recorded_tta(json)), libtorch,
                           false});
    }
  }
  return records;
}

static_assert(fer::Tta::none < fer::Tta::flip && fer::Tta::flip < fer::Tta::tencrop,
              "ProbabilityCache keeps the widest mode by order");

// Which views of `computed`'s make up `wanted`'s, in tta_views' order: tencrop's
// views 8 and 9 are the centre crop and its mirror, none's and flip's views.
std::vector<std::size_t> view_indices(fer::Tta wanted, fer::Tta computed) {
  const std::size_t centre = computed == fer::Tta::tencrop ? 8 : 0;
  if (wanted == fer::Tta::none) return {centre};
  if (wanted == fer::Tta::flip) return {centre, centre + 1};
  return {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
}

// Each checkpoint's PublicTest views are computed once, for the widest TTA mode
// its records ask for; every record's probabilities are then the mean of its
// mode's views (fer::predict_view_probabilities promises that this equals
// fer-eval's prediction bit for bit) and, for an ensemble, the mean over its
// members (fer::mean_probabilities, the mean fer-eval takes).
class ProbabilityCache {
 public:
  ProbabilityCache(const fer::Dataset& val, const std::vector<Record>& records) : images_(fer::images_tensor(val)) {
    for (const auto& record : records)
      for (const auto& model : record.models) {
        auto& widest = widest_[key(model)];
        widest = std::max(widest, record.tta);  // none < flip < tencrop
      }
  }

  fer::EnsemblePrediction probabilities(const std::vector<std::string>& models, fer::Tta tta) {
    std::vector<torch::Tensor> members;
    std::vector<std::string> class_names;
    for (const auto& model : models) {
      const auto& entry = views_of(model);
      std::vector<torch::Tensor> views;
      for (const auto v : view_indices(tta, entry.computed)) views.push_back(entry.views.at(v));
      members.push_back(fer::mean_probabilities(views));
      if (class_names.empty()) class_names = entry.class_names;
      EXPECT_EQ(entry.class_names, class_names) << model;
    }
    const auto mean = fer::mean_probabilities(members).contiguous();
    return {std::vector<float>(mean.data_ptr<float>(), mean.data_ptr<float>() + mean.numel()), class_names};
  }

 private:
  struct Views {
    fer::Tta computed;
    std::vector<torch::Tensor> views;
    std::vector<std::string> class_names;
  };
  static std::string key(const std::string& model) { return fer_test::fs::weakly_canonical(model).string(); }

  const Views& views_of(const std::string& model) {
    auto found = views_.find(key(model));
    if (found != views_.end()) return found->second;
    const auto checkpoint = fer::load_checkpoint(model, torch::kCPU);
    fer::PredictOptions options;  // as fer::predict_checkpoints sets them for fer::EvaluationOptions' defaults
    options.batch_size = fer::EvaluationOptions{}.batch_size;
    options.tta = widest_.at(key(model));
    options.input_size = checkpoint.meta.model.input_size;
    Views entry{options.tta, fer::predict_view_probabilities(*checkpoint.model, images_, torch::kCPU, options),
                checkpoint.meta.class_names};
    return views_.emplace(key(model), std::move(entry)).first->second;
  }

  torch::Tensor images_;
  std::map<std::string, fer::Tta> widest_;
  std::map<std::string, Views> views_;
};

// Holds the record's models (one, or an ensemble's members) to it (split val,
// its TTA, fp32): no more than 0.5 points below, and exactly equal on the
// LibTorch that recorded it (another version's kernels may round differently);
// for data with votes, the agreement with the annotators as well.
void check_against_record(const Record& record, const fer::Dataset& val, ProbabilityCache& cache) {
  SCOPED_TRACE(record.metrics_path.string());
  const auto recorded = read_json(record.metrics_path);
  ASSERT_EQ(recorded.at("split"), "val");
  fer::EvaluationOptions options;
  options.charts = false;
  options.progress = false;
  options.device = "cpu";
  options.tta = record.tta;
  fer_test::TempDir out;
  const auto first = fer::write_dataset_evaluation(val, cache.probabilities(record.models, record.tta), out / "a",
                                                   options, record.models);
  ASSERT_EQ(first.predicted.size(), static_cast<std::size_t>(recorded.at("n").get<int64_t>()));
  if (record.twice) {  // fer-eval itself, uncached: the same predictions
    const auto second = fer::evaluate_checkpoints(record.models, val, out / "b", options);
    EXPECT_EQ(first.predicted, second.predicted) << "predictions differ between two runs";
  }
  const bool same_libtorch = record.recorded_libtorch == TORCH_VERSION;
  const double accuracy = recorded.at("accuracy").get<double>();
  EXPECT_GE(first.metrics.accuracy, accuracy - 0.005)
      << "accuracy (TTA " << fer::tta_name(options.tta) << ") fell more than 0.5 points below the recorded " << accuracy;
  EXPECT_NEAR(first.metrics.balanced_accuracy, recorded.at("balanced_accuracy").get<double>(), 0.01);
  if (same_libtorch) {
    EXPECT_DOUBLE_EQ(first.metrics.accuracy, accuracy);
    EXPECT_EQ(first.metrics.confusion, recorded.at("confusion_matrix").get<std::vector<std::vector<std::int64_t>>>());
  }
  ASSERT_EQ(val.has_votes(), recorded.contains("votes"));
  if (!val.has_votes()) return;
  const auto votes = read_json(fer_test::fs::path(out / "a") / "metrics.json").at("votes");
  EXPECT_EQ(votes.at("n"), recorded.at("votes").at("n"));
  for (const char* key : {"cross_entropy", "plurality_accuracy"}) {
    const double measured = votes.at(key).get<double>();
    const double in_record = recorded.at("votes").at(key).get<double>();
    // Means of float32 probabilities: another CPU's kernels (AMX against AVX2) move each face's -log p by
    // ulps of float (1e-9 seen), so the same LibTorch agrees to 1e-6, not to double precision.
    EXPECT_NEAR(measured, in_record, same_libtorch ? 1e-6 : 0.01) << key;
  }
}

// Holds every shipped record measured on data `which` selects to it.
void check_shipped_records(bool (*which)(const fer::DataConfig&)) {
  std::map<std::string, std::vector<Record>> by_data;  // the same data read once
  for (auto& record : shipped_records())
    if (which(record.data)) by_data[data_key(record.data)].push_back(record);
  if (by_data.empty()) GTEST_SKIP() << "no shipped model of this data";
  for (const auto& [key, records] : by_data) {
    const auto& data = records.front().data;
    if (!fer_test::fs::exists(data.path))
      GTEST_SKIP() << data.path << " not found: the accuracy guard did NOT run on " << records.size() << " records";
    const auto splits = fer::load_dataset(data);
    ProbabilityCache cache(splits.val, records);
    for (const auto& record : records) check_against_record(record, splits.val, cache);
  }
}
}  // namespace

TEST(ReferenceModel, EveryShippedModelReproducesItsPublicTestMetrics) {
  if (fer_test::real_fer2013().empty())
    GTEST_SKIP() << "FER-2013 not found (../shared/data/fer2013/fer2013.csv.gz or $FER2013_CSV): "
                    "the accuracy guard did NOT run";
  check_shipped_records(is_fer2013);
  EXPECT_TRUE(fer_test::fs::exists(kExperiments / "fer2013_paper_cnn" / "best.pt")) << "the paper's model is missing";
}

TEST(ReferenceModel, EveryShippedFerplusModelReproducesItsValidMetrics) {
  check_shipped_records([](const fer::DataConfig& data) { return !is_fer2013(data); });
}
