// A model scored on data of other classes: by name, restricted to the data's
// classes (fer::restrict_to_classes), checked against hand-computed rows and
// against the same prediction given in the data's own classes.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "fer/inference/inference.h"
#include "fer/report/evaluate/evaluate.h"
#include "test_util.h"

namespace {

fer::EvaluationOptions quiet() {
  fer::EvaluationOptions options;
  options.charts = false;
  options.progress = false;
  return options;
}

nlohmann::json metrics_json(const fer_test::TempDir& dir, const std::string& sub) {
  return nlohmann::json::parse(fer_test::read_text(dir / (sub + "/metrics.json")));
}

}  // namespace

TEST(RestrictToClasses, TakesClassesByNameAndRenormalisesEachRow) {
  const fer::EnsemblePrediction p{{0.1f, 0.2f, 0.3f, 0.4f,  //
                                   0.0f, 0.0f, 1.0f, 0.0f},
                                  {"a", "b", "c", "d"}};
  const auto r = fer::restrict_to_classes(p, {"d", "b"});
  EXPECT_EQ(r.class_names, (std::vector<std::string>{"d", "b"}));
  ASSERT_EQ(r.probabilities.size(), 4u);
  EXPECT_FLOAT_EQ(r.probabilities[0], 0.4f / 0.6f);
  EXPECT_FLOAT_EQ(r.probabilities[1], 0.2f / 0.6f);
  EXPECT_FLOAT_EQ(r.probabilities[2], 0.5f);  // no mass on d or b: uniform
  EXPECT_FLOAT_EQ(r.probabilities[3], 0.5f);
  EXPECT_EQ(fer::restrict_to_classes(p, p.class_names).probabilities, p.probabilities);  // the same list: as it is
  EXPECT_EQ(fer::missing_classes(p, {"b", "x", "a", "y"}), (std::vector<std::string>{"x", "y"}));
  const auto error = fer_test::error_of<std::invalid_argument>([&] { fer::restrict_to_classes(p, {"a", "x"}); });
  EXPECT_NE(error.find("x"), std::string::npos) << error;
}

TEST(EvaluateByClassName, AModelOfMoreClassesIsScoredOnTheDatasClassesAsIfItHadOnlyThose) {
  fer::Dataset data;
  data.class_names = {"happy", "sad"};
  const std::vector<std::uint8_t> face(data.image_pixels(), 128);
  for (const std::int64_t label : {0, 1, 1, 0}) data.add(face.data(), label, "face");
  // The model's order differs and it has a third class, which wins the third face before restriction.
  const fer::EnsemblePrediction model{{0.2f, 0.6f, 0.2f,  //
                                       0.5f, 0.1f, 0.4f,  //
                                       0.3f, 0.1f, 0.6f,  //
                                       0.3f, 0.3f, 0.4f},
                                      {"sad", "happy", "contempt"}};
  const fer::EnsemblePrediction by_hand{{0.6f / 0.8f, 0.2f / 0.8f,  //
                                         0.1f / 0.6f, 0.5f / 0.6f,  //
                                         0.1f / 0.4f, 0.3f / 0.4f,  //
                                         0.3f / 0.6f, 0.3f / 0.6f},
                                        data.class_names};
  fer_test::TempDir dir;
  const auto scored = fer::write_dataset_evaluation(data, model, dir / "model", quiet(), {"model.pt"});
  const auto reference = fer::write_dataset_evaluation(data, by_hand, dir / "reference", quiet(), {"model.pt"});
  EXPECT_EQ(scored.predicted, (std::vector<std::int64_t>{0, 1, 1, 0}));  // the fourth: a tie, the first class
  EXPECT_DOUBLE_EQ(scored.metrics.accuracy, 1.0);
  ASSERT_EQ(scored.probabilities.size(), by_hand.probabilities.size());
  for (std::size_t i = 0; i < by_hand.probabilities.size(); ++i)
    EXPECT_FLOAT_EQ(scored.probabilities[i], by_hand.probabilities[i]) << i;
  EXPECT_EQ(scored.metrics.confusion, reference.metrics.confusion);
  ASSERT_TRUE(scored.metrics.micro_auc && reference.metrics.micro_auc);
  EXPECT_NEAR(*scored.metrics.micro_auc, *reference.metrics.micro_auc, 1e-12);
  const auto json = metrics_json(dir, "model");
  EXPECT_EQ(json.at("classes_by_name").at("left_out"), nlohmann::json({"contempt"}));
  EXPECT_EQ(json.at("classes_by_name").at("model_classes"), nlohmann::json({"sad", "happy", "contempt"}));
  EXPECT_FALSE(metrics_json(dir, "reference").contains("classes_by_name"));
}

TEST(EvaluateByClassName, AModelLackingOneOfTheDatasClassesIsAnErrorNamingIt) {
  fer::Dataset data;
  data.class_names = {"happy", "sad", "contempt"};
  const std::vector<std::uint8_t> face(data.image_pixels(), 128);
  data.add(face.data(), 2, "face");
  const fer::EnsemblePrediction model{{0.5f, 0.5f}, {"happy", "sad"}};
  fer_test::TempDir dir;
  const auto error = fer_test::error_of<std::runtime_error>(
      [&] { fer::write_dataset_evaluation(data, model, dir / "out", quiet(), {"model.pt"}); });
  EXPECT_NE(error.find("model.pt"), std::string::npos) << error;
  EXPECT_NE(error.find("has no contempt"), std::string::npos) << error;
}
