// Accuracy regression guard: the shipped reference model on FER-2013 PublicTest.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <torch/version.h>

#include "fer/dataset.h"
#include "fer/evaluate.h"
#include "test_util.h"

namespace {
const fer_test::fs::path kRunDir = fer_test::fs::path(FER_SOURCE_DIR) / "experiments" / "fer2013_paper_cnn";
}

TEST(ReferenceModel, PublicTestAccuracyHoldsAndPredictionsAreStable) {
  const std::string csv = fer_test::real_fer2013();
  if (csv.empty())
    GTEST_SKIP() << "FER-2013 not found (../shared/data/fer2013/fer2013.csv.gz or $FER2013_CSV): "
                    "the accuracy guard did NOT run";
  const auto model = (kRunDir / "best.pt").string();
  ASSERT_TRUE(fer_test::fs::exists(model)) << "the reference checkpoint " << model << " is missing";
  std::ifstream in(kRunDir / "metrics.json");
  ASSERT_TRUE(in) << "missing " << kRunDir / "metrics.json";
  const auto recorded = nlohmann::json::parse(in);
  ASSERT_EQ(recorded.at("split"), "val");
  // Recorded before TTA modes had names: false means none.
  const auto& recorded_tta = recorded.at("tta");
  ASSERT_TRUE(recorded_tta.is_boolean() ? !recorded_tta.get<bool>() : recorded_tta == "none");

  const auto splits = fer::load_dataset(csv);
  ASSERT_EQ(splits.val.size(), static_cast<std::size_t>(recorded.at("n").get<int64_t>()));
  fer::EvaluationOptions options;
  options.charts = false;
  options.progress = false;
  options.device = "cpu";
  fer_test::TempDir out;
  const auto first = fer::evaluate_checkpoint(model, splits.val, out / "a", options);
  const auto second = fer::evaluate_checkpoint(model, splits.val, out / "b", options);

  const double recorded_accuracy = recorded.at("accuracy").get<double>();
  EXPECT_GE(first.metrics.accuracy, recorded_accuracy - 0.005)
      << "PublicTest accuracy fell more than 0.5 points below the recorded " << recorded_accuracy;
  EXPECT_EQ(first.predicted, second.predicted) << "predictions differ between two runs";
  EXPECT_NEAR(first.metrics.balanced_accuracy, recorded.at("balanced_accuracy").get<double>(), 0.01);

  // On the LibTorch that recorded them, the metrics reproduce exactly (fp32);
  // another version's kernels may round differently, so it gets the tolerance above.
  std::ifstream env_in(kRunDir / "environment.json");
  const auto recorded_version = nlohmann::json::parse(env_in).at("libtorch_version").get<std::string>();
  if (recorded_version == TORCH_VERSION) {
    EXPECT_DOUBLE_EQ(first.metrics.accuracy, recorded_accuracy);
    EXPECT_EQ(first.metrics.confusion,
              recorded.at("confusion_matrix").get<std::vector<std::vector<std::int64_t>>>());
  }
}
