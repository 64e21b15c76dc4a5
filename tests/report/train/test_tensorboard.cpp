#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>

#include "fer/engine/history.h"
#include "fer/report/train/tensorboard.h"
#include "fer/report/train/train.h"
#include "test_util.h"

namespace {
namespace fs = std::filesystem;

// The events of FILE as tests/report/train/read_tfevents.py (framing, CRCs and
// protobuf decoded by Python's standard library) reads them.
nlohmann::json read_events(const fs::path& file, const fs::path& image_dir) {
  const fs::path script = fs::path(fer_test::source_dir()) / "tests/report/train/read_tfevents.py";
  const fs::path out = image_dir / "events.json";
  const std::string command = "python3 '" + script.string() + "' '" + file.string() + "' --dump-images '" +
                              image_dir.string() + "' > '" + out.string() + "'";
  EXPECT_EQ(std::system(command.c_str()), 0) << command;
  return nlohmann::json::parse(fer_test::read_text(out.string()));
}

fs::path the_event_file(const fs::path& run) {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(run / "tb")) files.push_back(e.path());
  EXPECT_EQ(files.size(), 1u);
  EXPECT_EQ(files.front().filename().string().rfind("events.out.tfevents.", 0), 0u);
  return files.front();
}

void expect_float_equal(double written, double expected, const std::string& what) {
  EXPECT_NEAR(written, expected, 1e-6 * std::max(1.0, std::abs(expected))) << what;  // float32 in the file
}

}  // namespace

TEST(Crc32c, MatchesTheReferenceCheckValues) {
  EXPECT_EQ(fer::crc32c(""), 0u);
  EXPECT_EQ(fer::crc32c("123456789"), 0xE3069283u);                  // the CRC catalogue's check value
  EXPECT_EQ(fer::crc32c(std::string(32, '\0')), 0x8A9136AAu);         // RFC 3720, B.4
  EXPECT_EQ(fer::crc32c(std::string(32, '\xff')), 0x62A8AB43u);       // RFC 3720, B.4
  EXPECT_EQ(fer::masked_crc32c("123456789"), 0xC78AB0E5u);            // ((c >> 15) | (c << 17)) + 0xa282ead8
}

TEST(TensorBoard, ARecordIsLengthItsCrcDataAndTheDataCrc) {
  const std::string record = fer::tfrecord("abc");
  ASSERT_EQ(record.size(), 8u + 4 + 3 + 4);
  EXPECT_EQ(record.substr(0, 8), std::string("\x03\0\0\0\0\0\0\0", 8));
  EXPECT_EQ(record.substr(12, 3), "abc");
  std::uint32_t data_crc;
  std::memcpy(&data_crc, record.data() + 15, 4);
  EXPECT_EQ(data_crc, fer::masked_crc32c("abc"));
  EXPECT_THROW(fer::image_event(0, 1, "x", "not a png at all, not at all"), std::invalid_argument);
}

// The independent reader sees: file_version first, the config at step 0, every
// epoch once with history.csv's values (a resume cut the first run's end-of-run
// images away and appended), and the confusion matrices, byte for byte, once.
TEST(TensorBoard, EveryRunWritesEventsThatMatchItsHistoryAndResumeDuplicatesNoStep) {
  fer_test::SyntheticData data;
  fer_test::TempDir runs;
  auto config = fer_test::tiny_config(data.csv, 3);
  config.train.epochs = 2;
  fer::train({config, runs / "r", false});
  config.train.epochs = 3;
  fer::train({config, runs / "r", true});

  const auto events = read_events(the_event_file(runs / "r"), runs.path());
  ASSERT_GE(events.size(), 5u);
  EXPECT_EQ(events[0].value("file_version", ""), "brain.Event:2");
  EXPECT_EQ(events[1]["step"], 0);
  EXPECT_NE(events[1]["texts"]["config"].get<std::string>().find("    train:"), std::string::npos);

  const auto history = fer::read_history_csv(runs / "r/history.csv");
  std::map<int, nlohmann::json> scalars;
  std::multiset<std::string> image_tags;
  for (const auto& e : events) {
    if (e.contains("scalars")) {
      EXPECT_TRUE(scalars.emplace(e["step"].get<int>(), e["scalars"]).second) << "step " << e["step"] << " twice";
    }
    if (e.contains("images"))
      for (const auto& [tag, image] : e["images"].items()) image_tags.insert(tag);
  }
  ASSERT_EQ(scalars.size(), history.size());
  for (const auto& h : history) {
    const auto& s = scalars.at(h.epoch);
    const std::string at = " at epoch " + std::to_string(h.epoch);
    expect_float_equal(s["train/loss"], h.train_loss, "train/loss" + at);
    expect_float_equal(s["train/accuracy"], h.train_accuracy, "train/accuracy" + at);
    expect_float_equal(s["val/loss"], h.val_loss, "val/loss" + at);
    expect_float_equal(s["val/accuracy"], h.val_accuracy, "val/accuracy" + at);
    expect_float_equal(s["lr"], h.lr, "lr" + at);
    EXPECT_GT(s["train/images_per_second"].get<double>(), 0) << at;
  }
  for (const char* chart : {"confusion_matrix", "confusion_matrix_normalized"}) {
    const fs::path png = fs::path(runs / "r") / (std::string(chart) + ".png");
    const std::string tag = std::string("val/") + chart;
    EXPECT_EQ(image_tags.count(tag), fs::exists(png) ? 1u : 0u) << tag;  // charts need gnuplot
    if (fs::exists(png))
      EXPECT_EQ(fer_test::read_text((runs.path() / ("val_" + std::string(chart) + ".png")).string()),
                fer_test::read_text(png.string()));
  }
}

TEST(TensorBoard, OffWritesNoEventFile) {
  fer_test::SyntheticData data;
  fer_test::TempDir runs;
  auto config = fer_test::tiny_config(data.csv, 3);
  config.train.epochs = 1;
  config.train.tensorboard = false;
  fer::train({config, runs / "r", false});
  EXPECT_FALSE(fs::exists(runs / "r/tb"));
}
