#include <gtest/gtest.h>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "fer/plot.h"
#include "test_util.h"

TEST(Plot, HistoryCsvRoundTripsAndRejectsBadRows) {
  fer_test::TempDir dir;
  const std::vector<fer::EpochRecord> h{{1, 1e-3, 1.8, 0.3, 1.7, 0.35, 120.5}, {2, 2e-4, 1.5, 0.45, 1.4, 0.5, 119.0}};
  fer::write_history_csv(h, dir / "history.csv");
  const auto back = fer::read_history_csv(dir / "history.csv");
  ASSERT_EQ(back.size(), 2u);
  EXPECT_EQ(back[1].epoch, 2);
  EXPECT_DOUBLE_EQ(back[1].lr, 2e-4);
  EXPECT_DOUBLE_EQ(back[0].val_accuracy, 0.35);
  fer_test::write_file(dir / "bad.csv", "epoch,lr,train_loss,train_accuracy,val_loss,val_accuracy,seconds\n1,2,x\n");
  EXPECT_THROW(fer::read_history_csv(dir / "bad.csv"), std::runtime_error);
}

TEST(Plot, ChartsArePngImagesOfTheRequestedSize) {
  if (!fer::gnuplot_available()) GTEST_SKIP() << "gnuplot with pngcairo is not installed (scripts/setup-deps.sh installs it)";
  fer_test::TempDir dir;
  fer::plot_confusion_matrix({{5, 1}, {2, 7}}, {"it's", "b"}, true, "CM", dir / "cm.png");
  const auto roc = fer::roc_curve({1, 0, 1, 0}, {0.9, 0.1, 0.6, 0.7});
  fer::plot_roc_curves({roc}, {"a"}, {0.75}, "ROC", dir / "roc.png");
  fer::plot_training_curves({{1, 1e-3, 1.8, 0.3, 1.7, 0.35, 1}, {2, 1e-3, 1.5, 0.45, 1.6, 0.4, 1}}, "T",
                            dir / "curves.png");
  for (const char* name : {"cm.png", "roc.png", "curves.png"}) {
    const cv::Mat img = cv::imread(dir / name, cv::IMREAD_COLOR);
    ASSERT_FALSE(img.empty()) << name;
    EXPECT_GE(img.cols, 800) << name;
    cv::Scalar mean, stddev;
    cv::meanStdDev(img, mean, stddev);
    EXPECT_GT(stddev[0], 10.0) << name << " is blank";
  }
  EXPECT_THROW(fer::run_gnuplot("plot undefined_function_xyz(x)\n"), std::runtime_error);
}
