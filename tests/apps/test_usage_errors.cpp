// Every app's exit statuses: a usage error is one "error: ..." line with the
// --help hint and status 2; a failure while running is "error: ..." and 1.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <string>

#include "test_util.h"

namespace {

struct Outcome {
  int status = -1;
  std::string err;
};

// Runs build/bin/<app> with `args` (shell words), stdout discarded.
Outcome run_app(const std::string& app, const std::string& args) {
  fer_test::TempDir dir;
  const std::string err = dir / "stderr.txt";
  const std::string command = std::string(fer_test::bin_dir()) + "/" + app + " " + args + " >/dev/null 2>" + err;
  const int raw = std::system(command.c_str());
  return {WIFEXITED(raw) ? WEXITSTATUS(raw) : -1, fer_test::read_text(err)};
}

void expect_usage_error(const std::string& app, const std::string& args, const std::string& names) {
  SCOPED_TRACE(app + " " + args);
  const auto r = run_app(app, args);
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_EQ(r.err.rfind("error: ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find(names), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("run " + app + " --help for the options"), std::string::npos) << r.err;
}

}  // namespace

TEST(AppUsage, BadArgumentsAreAnErrorLineAndStatusTwoInEveryApp) {
  int apps = 0;
  for (const char* app : {"fer-train", "fer-eval", "fer-explain", "fer-background", "fer-live", "fer-trends", "fer-detect",
                          "fer-sweep", "fer-compare", "fer-export", "fer-bench"}) {
    if (!fer_test::fs::exists(std::string(fer_test::bin_dir()) + "/" + app)) continue;  // builds without OpenCV lack some
    expect_usage_error(app, "--no-such-option", "");  // CLI11 names the first problem: a required option, or this one
    ++apps;
  }
  EXPECT_GE(apps, 5);
  expect_usage_error("fer-export", "--format tflite --out x.onnx", "tflite");
  expect_usage_error("fer-compare", "/no/such/run/folder", "/no/such/run/folder");
  EXPECT_EQ(run_app("fer-eval", "--help").status, 0);
}

TEST(AppUsage, AFailureWhileRunningIsStatusOne) {
  const auto r = run_app("fer-eval", "--model /no/such/model.pt --data /no/such/data.csv");
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_EQ(r.err.rfind("error: ", 0), 0u) << r.err;
}

TEST(AppUsage, FerExportCreatesTheFolderOfItsOutputFile) {
  if (!fer_test::fs::exists(std::string(fer_test::bin_dir()) + "/fer-export")) GTEST_SKIP() << "no fer-export in this build";
  fer_test::TempDir dir;
  const std::string out = dir / "exports/paper_cnn/model.pt";
  const auto r = run_app("fer-export", "--model paper_cnn --format torchscript --out " + out);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_GT(fer_test::fs::file_size(out), 1000000u);  // the network's 5 M float weights, not an empty file
}
