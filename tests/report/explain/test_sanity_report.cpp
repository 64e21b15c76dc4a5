// The sanity check's files (fer/report/explain/sanity.h) from a hand-built
// check: the JSON says what the check holds, the verdicts follow the
// threshold, the strip puts each map where it belongs.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>

#include "fer/report/explain/sanity.h"
#include "fer/report/plot.h"
#include "test_util.h"

namespace sanity_report_test {

fer::SanityScores scores(double spearman_abs, double spearman, double ssim) {
  fer::SanityScores s;
  s.spearman_abs = spearman_abs, s.spearman = spearman, s.ssim = ssim, s.faces = 2;
  return s;
}

// Two methods, three layers; saliency's maps forget the model, occlusion's keep it.
fer::SanityCheck hand_built_check() {
  fer::SanityCheck c;
  c.methods = {"saliency", "occlusion"};
  c.layers = {"fc2", "fc1", "conv1"};
  c.cascading["saliency"] = {scores(0.9, 0.8, 0.7), scores(0.5, 0.4, 0.3), scores(0.1, 0.05, 0.2)};
  c.cascading["occlusion"] = {scores(0.95, 0.9, 0.9), scores(0.9, 0.9, 0.8), scores(0.8, 0.7, 0.6)};
  c.independent["saliency"] = {scores(0.9, 0.8, 0.7), scores(0.6, 0.5, 0.4), scores(0.7, 0.6, 0.5)};
  c.independent["occlusion"] = c.cascading["occlusion"];
  for (const auto& m : c.methods)  // 1 + 3 models x 1 face: a single hot pixel at (10, 20)
    c.strip[m].assign(4, std::vector<std::vector<float>>{std::vector<float>(48 * 48, 0.0f)});
  c.strip["saliency"][0][0][10 * 48 + 20] = 1.0f;
  return c;
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

TEST(SanityReport, RecordsTheScoresAndJudgesEachMethodOnTheFullyRandomisedModel) {
  fer_test::TempDir dir;
  const auto check = hand_built_check();
  fer::SanityReportInputs in;
  in.checkpoint = "m.pt";
  in.sources = {"a.png", "b.png"};
  in.strip_pixels = {std::vector<std::uint8_t>(48 * 48, 128)};
  in.options.seed = 7;
  in.threshold = 0.5;
  const auto verdicts = fer::write_sanity_report(check, in, dir / "out");
  ASSERT_EQ(verdicts.size(), 2u);
  EXPECT_EQ(verdicts[0].first, "saliency");
  EXPECT_TRUE(verdicts[0].second.passes);
  EXPECT_DOUBLE_EQ(verdicts[0].second.spearman_abs, 0.1);
  EXPECT_FALSE(verdicts[1].second.passes);  // 0.8 with every layer randomised
  const auto j = read_json(dir / "out/sanity.json");
  EXPECT_EQ(j["layers"], nlohmann::json({"fc2", "fc1", "conv1"}));
  EXPECT_EQ(j["faces"].size(), 2u);
  EXPECT_EQ(j["seed"], 7);
  EXPECT_EQ(j["methods"]["saliency"]["passes"], true);
  EXPECT_EQ(j["methods"]["occlusion"]["passes"], false);
  EXPECT_EQ(j["methods"]["saliency"]["cascading"][1]["layer"], "fc1");
  EXPECT_DOUBLE_EQ(j["methods"]["saliency"]["cascading"][1]["spearman"].get<double>(), 0.4);
  EXPECT_DOUBLE_EQ(j["methods"]["saliency"]["independent"][2]["ssim"].get<double>(), 0.5);
  if (fer::gnuplot_available())
    for (const char* chart : {"sanity.png", "sanity_saliency.png", "sanity_occlusion.png"})
      EXPECT_GT(fer_test::fs::file_size(dir.path() / "out" / chart), 5000u) << chart;
}

TEST(SanityReport, TheStripShowsEachModelsMapInItsColumn) {
  fer_test::TempDir dir;
  fer::SanityReportInputs in;
  in.strip_pixels = {std::vector<std::uint8_t>(48 * 48, 128)};
  fer::write_sanity_report(hand_built_check(), in, dir.path().string());
  const cv::Mat strip = cv::imread(dir / "sanity_strip_saliency.png");
  ASSERT_FALSE(strip.empty());
  // Columns: the face, the trained model's map, then three cascading steps; 120 px cells, 8 px apart.
  const int side = 120, title = 26, cell = side + 8;
  EXPECT_EQ(strip.cols, 5 * cell);
  EXPECT_EQ(strip.rows, title + side + 8);
  const auto at = [&](int column, int row48, int col48) {  // the centre of a 48x48 pixel in a cell
    const double scale = side / 48.0;
    return strip.at<cv::Vec3b>(title + static_cast<int>((row48 + 0.5) * scale),
                               column * cell + static_cast<int>((col48 + 0.5) * scale));
  };
  const cv::Vec3b hot = at(1, 10, 20), cold = at(1, 30, 30), later = at(2, 10, 20);
  EXPECT_GT(hot[2], hot[0] + 100);  // red (BGR) where the trained map is positive
  EXPECT_LT(std::abs(cold[2] - cold[0]), 10);  // grey elsewhere
  EXPECT_LT(std::abs(later[2] - later[0]), 10);  // the randomised model's map is flat there
}

TEST(SanityReport, RefusesStripPixelsThatDoNotMatchTheMaps) {
  fer_test::TempDir dir;
  fer::SanityReportInputs in;
  in.strip_pixels = {std::vector<std::uint8_t>(48 * 48), std::vector<std::uint8_t>(48 * 48)};
  EXPECT_THROW(fer::write_sanity_report(hand_built_check(), in, dir.path().string()), std::invalid_argument);
}

}  // namespace sanity_report_test
