// Helpers shared by the tests: temporary directories, synthetic FER-2013 files,
// and the real data when it is beside the repository.
#pragma once

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <zlib.h>

#include "fer/config/config.h"
#include "fer/report/live/trends.h"
#include "fer/report/plot.h"

#include <csignal>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace fer_test {
namespace fs = std::filesystem;

// The source tree (shipped models, configs, ../shared) and the folder of the
// built binaries. Only tests/test_paths.cpp has them compiled in, so every
// other test source compiles to the same object from any checkout (ccache hits).
const char* source_dir();
const char* bin_dir();

// A fresh directory under the system temp dir, removed when the object dies.
class TempDir {
 public:
  TempDir() {
    static int counter = 0;
    path_ = fs::temp_directory_path() /
            ("fer_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// Writes past `bytes` fail with EFBIG ("File too large") in this process for
// the object's lifetime (RLIMIT_FSIZE, SIGXFSZ ignored): a full disk without
// root or a mount.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    old_handler_ = std::signal(SIGXFSZ, SIG_IGN);
    getrlimit(RLIMIT_FSIZE, &old_);
    rlimit limit = old_;
    limit.rlim_cur = bytes;
    setrlimit(RLIMIT_FSIZE, &limit);
  }
  ~FileSizeLimit() {
    setrlimit(RLIMIT_FSIZE, &old_);
    std::signal(SIGXFSZ, old_handler_);
  }
  FileSizeLimit(const FileSizeLimit&) = delete;
  FileSizeLimit& operator=(const FileSizeLimit&) = delete;

 private:
  rlimit old_{};
  void (*old_handler_)(int) = SIG_DFL;
};

// A wellbeing rule on sad and fear with the given window, share, duration and cooldown (seconds).
inline fer::AlertConfig alert_rule(double window, double threshold, double min_duration, double cooldown) {
  fer::AlertConfig c;
  c.negative_emotions = {"sad", "fear"};
  c.window_s = window;
  c.threshold = threshold;
  c.min_duration_s = min_duration;
  c.cooldown_s = cooldown;
  return c;
}

// One face observation (a frames.csv row) with a smoothed label and zero probabilities.
inline fer::FrameRecord frame_record(double time_s, std::int64_t frame, int track, int label) {
  fer::FrameRecord r;
  r.time_s = time_s;
  r.frame = frame;
  r.track = track;
  r.label = label;
  r.probabilities.assign(7, 0.0f);
  return r;
}

// $FER_CHROMIUM, else the first of chromium / chromium-browser / google-chrome on PATH; "" when none.
inline std::string find_chromium() {
  if (const char* env = std::getenv("FER_CHROMIUM")) return env;
  for (const char* name : {"chromium", "chromium-browser", "google-chrome"})
    if (std::system(("command -v " + std::string(name) + " >/dev/null 2>&1").c_str()) == 0) return name;
  return "";
}

// The DOM of the page at `url` after its scripts ran, as headless Chromium dumps
// it; the browser profile and the dump go under `scratch`. Fails the test when
// the browser does not run.
inline std::string rendered_dom(const std::string& chromium, const std::string& url, const fs::path& scratch) {
  const std::string dom = (scratch / "dom.html").string();
  const std::string command = "timeout 120 " + chromium + " --headless --no-sandbox --disable-gpu --user-data-dir=" +
                              (scratch / "profile").string() + " --dump-dom '" + url + "' > " + dom + " 2>/dev/null";
  EXPECT_EQ(std::system(command.c_str()), 0) << command;
  std::ifstream in(dom);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

inline std::string pixels_text(int count, int value) {
  std::string s;
  for (int i = 0; i < count; ++i) s += (i ? " " : "") + std::to_string(value);
  return s;
}

// The message of the E that f() throws, or "" when it throws none (another
// exception propagates and fails the test).
template <typename E = std::exception, typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  return "";
}

// The whole file, or "" when it cannot be read (tests print logs that may be absent).
inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

inline void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
}

inline void write_gz(const std::string& path, const std::string& text) {
  gzFile f = gzopen(path.c_str(), "wb");
  gzwrite(f, text.data(), static_cast<unsigned>(text.size()));
  gzclose(f);
}

// A learnable synthetic FER-2013 CSV: class c brightens one of 7 horizontal
// bands (plus noise), so a CNN separates the classes within an epoch or two.
inline std::string synthetic_csv(int train_per_class, int val_per_class, int test_per_class, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> noise(0, 60);
  std::string out = "emotion,pixels,Usage\n";
  auto rows = [&](int per_class, const char* usage) {
    for (int i = 0; i < per_class; ++i)
      for (int c = 0; c < 7; ++c) {
        out += std::to_string(c) + ",";
        for (int p = 0; p < 48 * 48; ++p) {
          const int row = p / 48;
          const int v = (row / 7 == c ? 170 : 40) + noise(rng);
          out += (p ? " " : "") + std::to_string(v);
        }
        out += std::string(",") + usage + "\n";
      }
  };
  rows(train_per_class, "Training");
  rows(val_per_class, "PublicTest");
  rows(test_per_class, "PrivateTest");
  return out;
}

// ../shared/data/fer2013/fer2013.csv.gz beside the repository, or $FER2013_CSV.
inline std::string real_fer2013() {
  if (const char* env = std::getenv("FER2013_CSV"); env && *env && fs::exists(env)) return env;
  const fs::path shared = fs::path(fer_test::source_dir()) / ".." / "shared" / "data" / "fer2013" / "fer2013.csv.gz";
  return fs::exists(shared) ? shared.lexically_normal().string() : "";
}

// The real 9-second speaker clip in ../shared, or "" when it is not there.
inline std::string real_clip() {
  const fs::path clip = fs::path(fer_test::source_dir()) / ".." / "shared" / "data" / "video" / "face_clip_640x360.mp4";
  return fs::exists(clip) ? clip.lexically_normal().string() : "";
}

// A small, fast training configuration over `csv` (a synthetic CSV).
inline fer::Config tiny_config(const std::string& csv, int seed) {
  fer::Config c;
  c.name = "tiny";
  c.data.path = csv;
  c.model.filters = {8, 16, 32};
  c.model.dense_units = 64;
  c.train.epochs = 3;
  c.train.batch_size = 32;
  c.train.threads = 2;
  c.train.seed = seed;
  return c;
}

// A learnable synthetic FER-2013 CSV in its own temporary directory.
struct SyntheticData {
  TempDir dir;
  std::string csv = dir / "synthetic.csv";
  explicit SyntheticData(int train_per_class = 20, int test_per_class = 3) {
    write_file(csv, synthetic_csv(train_per_class, 6, test_per_class, 1));
  }
};

// Two runs' histories agree epoch by epoch (resumed against uninterrupted).
inline void expect_same_history(const std::vector<fer::EpochRecord>& a, const std::vector<fer::EpochRecord>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].epoch, b[i].epoch);
    EXPECT_DOUBLE_EQ(a[i].lr, b[i].lr);
    EXPECT_NEAR(a[i].train_loss, b[i].train_loss, 1e-5) << "epoch " << a[i].epoch;
    EXPECT_NEAR(a[i].val_loss, b[i].val_loss, 1e-5) << "epoch " << a[i].epoch;
    EXPECT_DOUBLE_EQ(a[i].val_accuracy, b[i].val_accuracy) << "epoch " << a[i].epoch;
  }
}

}  // namespace fer_test
