#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <set>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "fer/report/live/trends.h"
#include "fer/report/plot.h"
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

TEST(Plot, TwentySeriesHaveTwentyStyles) {
  std::set<std::string> styles;
  for (std::size_t i = 0; i < 20; ++i) styles.insert(fer::series_line_style(i));
  EXPECT_EQ(styles.size(), 20u);
  EXPECT_EQ(fer::series_line_style(0), "lc rgb '#1f77b4' dt 1");
  EXPECT_EQ(fer::series_line_style(10), "lc rgb '#1f77b4' dt 2");
}

TEST(Plot, ChartsArePngImagesOfTheRequestedSize) {
  if (!fer::gnuplot_available()) GTEST_SKIP() << "gnuplot with pngcairo is not installed (scripts/setup-deps.sh installs it)";
  fer_test::TempDir dir;
  fer::plot_confusion_matrix({{5, 1}, {2, 7}}, {"it's", "b"}, true, "CM", dir / "cm.png");
  const auto roc = fer::roc_curve({1, 0, 1, 0}, {0.9, 0.1, 0.6, 0.7});
  fer::plot_roc_curves({roc}, {"a"}, {0.75}, "ROC", dir / "roc.png");
  fer::plot_training_curves({{1, 1e-3, 1.8, 0.3, 1.7, 0.35, 1}, {2, 1e-3, 1.5, 0.45, 1.6, 0.4, 1}}, "T",
                            dir / "curves.png");
  const auto votes = fer::compute_vote_metrics({6, 4, 0, 1, 9}, {0.5f, 0.3f, 0.2f, 0.1f, 0.9f}, 5);
  fer::plot_vote_agreement(votes, {"neutral", "happy", "surprise", "sad", "contempt"}, "Votes", dir / "votes.png");
  EXPECT_THROW(fer::plot_vote_agreement(votes, {"a", "b"}, "Votes", dir / "bad.png"), std::invalid_argument);
  for (const char* name : {"cm.png", "roc.png", "curves.png", "votes.png"}) {
    const cv::Mat img = cv::imread(dir / name, cv::IMREAD_COLOR);
    ASSERT_FALSE(img.empty()) << name;
    EXPECT_GE(img.cols, 800) << name;
    cv::Scalar mean, stddev;
    cv::meanStdDev(img, mean, stddev);
    EXPECT_GT(stddev[0], 10.0) << name << " is blank";
  }
  EXPECT_THROW(fer::run_gnuplot("plot undefined_function_xyz(x)\n"), std::runtime_error);
}

namespace {

// Puts `dir` first on PATH for the test's lifetime.
class PathPrefix {
 public:
  explicit PathPrefix(const std::string& dir) : old_(std::getenv("PATH") ? std::getenv("PATH") : "") {
    setenv("PATH", (dir + ":" + old_).c_str(), 1);
  }
  ~PathPrefix() { setenv("PATH", old_.c_str(), 1); }

 private:
  std::string old_;
};

void write_script(const std::string& path, const std::string& text) {
  fer_test::write_file(path, text);
  std::filesystem::permissions(path, std::filesystem::perms::owner_all);
}

}  // namespace

// Without SIGPIPE held back, writing a long script into a gnuplot that has
// exited kills the whole process (the test binary with it).
TEST(Plot, AGnuplotThatExitsEarlyIsAnErrorNotASignal) {
  fer_test::TempDir dir;
  write_script(dir / "gnuplot", "#!/bin/sh\nexit 0\n");
  const PathPrefix path(dir.path().string());
  const std::string script = std::string(1 << 20, '#') + "\n";  // far beyond a pipe's buffer
  try {
    fer::run_gnuplot(script, dir / "chart.png");
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    EXPECT_TRUE(what.find("before reading") != std::string::npos || what.find("without writing") != std::string::npos)
        << what;
  }
  // A gnuplot that reads everything but draws nothing is caught by the missing output.
  write_script(dir / "gnuplot", "#!/bin/sh\ncat >/dev/null\nexit 0\n");
  try {
    fer::run_gnuplot("set output 'x.png'\n", dir / "chart.png");
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("chart.png"), std::string::npos) << e.what();
  }
}

TEST(Plot, OneFailingTrendChartLeavesTheOthersDrawn) {
  if (!fer::gnuplot_available()) GTEST_SKIP() << "gnuplot with pngcairo is not installed";
  const std::string real = "/usr/bin/gnuplot";
  if (!std::filesystem::exists(real)) GTEST_SKIP() << "no " << real << " to wrap";
  fer_test::TempDir dir;
  // Fails the bar chart only; hands every other script to the real gnuplot.
  write_script(dir / "gnuplot", "#!/bin/sh\nscript=$(cat)\ncase \"$script\" in *emotion_bar*) exit 3;; esac\n"
                                "printf '%s\\n' \"$script\" | exec " + real + "\n");
  const PathPrefix path(dir.path().string());
  const std::vector<std::string> names{"happy", "sad"};
  std::vector<fer::FrameRecord> records;
  for (int i = 0; i < 20; ++i) records.push_back({i * 0.5, i, 1, 0, 0, 10, 10, {0.7f, 0.3f}, i % 2});
  const auto summary = fer::summarise_trends(records, names, {2.0});
  try {
    fer::plot_trends(summary, dir / "charts");
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("1 of 4 charts failed"), std::string::npos) << what;
    EXPECT_NE(what.find("emotion_bar.png"), std::string::npos) << what;
  }
  for (const char* drawn : {"emotion_pie.png", "emotion_timeline.png", "tracks/track_1_timeline.png"})
    EXPECT_GT(std::filesystem::file_size(dir / (std::string("charts/") + drawn)), 0u) << drawn;
  EXPECT_FALSE(std::filesystem::exists(dir / "charts/emotion_bar.png"));
}
