#include <gtest/gtest.h>

#if FER_WITH_OPENCV
#include <opencv2/imgcodecs.hpp>
#include <zlib.h>
#endif

#include "fer/data/dataset.h"
#include "fer/report/train/train.h"
#include "test_util.h"

using fer_test::pixels_text;
using fer_test::TempDir;

namespace {

const std::string kHeader = "emotion,pixels,Usage\n";

std::string row(int label, const std::string& pixels, const std::string& usage) {
  return std::to_string(label) + "," + pixels + "," + usage + "\n";
}

// Loads `csv` from a temp file and returns the DataError message ("" if none).
std::string load_error(const std::string& csv, std::string* path_out = nullptr) {
  static TempDir dir;
  static int n = 0;
  const std::string path = dir / ("bad" + std::to_string(n++) + ".csv");
  fer_test::write_file(path, csv);
  if (path_out) *path_out = path;
  try {
    fer::load_fer2013_csv(path);
  } catch (const fer::DataError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Fer2013Csv, ParsesRowsIntoCanonicalSplits) {
  TempDir dir;
  const auto path = dir / "f.csv";
  std::string px = pixels_text(48 * 48, 7);
  px[0] = '9';  // first pixel 9, the rest 7
  fer_test::write_file(path, kHeader + row(3, px, "Training") + row(0, pixels_text(2304, 255), "PublicTest") +
                                 row(6, pixels_text(2304, 0), "PrivateTest") + row(5, px, "Training"));
  const auto s = fer::load_fer2013_csv(path);
  ASSERT_EQ(s.train.size(), 2u);
  ASSERT_EQ(s.val.size(), 1u);
  ASSERT_EQ(s.test.size(), 1u);
  EXPECT_EQ(s.train.labels, (std::vector<std::int64_t>{3, 5}));
  EXPECT_EQ(s.train.image(0)[0], 9);
  EXPECT_EQ(s.train.image(0)[1], 7);
  EXPECT_EQ(s.val.image(0)[2303], 255);
  EXPECT_EQ(s.test.labels[0], 6);
  EXPECT_EQ(s.train.sources[1], path + ":5");
}

TEST(Fer2013Csv, ReadsGzipLikePlainAndToleratesCrlf) {
  TempDir dir;
  const std::string text = kHeader + row(1, pixels_text(2304, 3), "Training") + row(2, pixels_text(2304, 4), "PublicTest");
  std::string crlf;
  for (char c : text) crlf += (c == '\n') ? std::string("\r\n") : std::string(1, c);
  fer_test::write_gz(dir / "f.csv.gz", crlf);
  const auto s = fer::load_fer2013_csv(dir / "f.csv.gz");
  ASSERT_EQ(s.train.size(), 1u);
  ASSERT_EQ(s.val.size(), 1u);
  EXPECT_EQ(s.val.labels[0], 2);
  EXPECT_EQ(s.val.image(0)[100], 4);
}

TEST(Fer2013Csv, FileWithoutPrivateTestHasEmptyTestSplit) {
  TempDir dir;
  fer_test::write_file(dir / "f.csv", kHeader + row(1, pixels_text(2304, 3), "Training") + row(2, pixels_text(2304, 4), "PublicTest"));
  const auto s = fer::load_fer2013_csv(dir / "f.csv");
  EXPECT_EQ(s.test.size(), 0u);
}

TEST(Fer2013Csv, EachMalformedRowIsAnErrorNamingFileAndLine) {
  std::string path;
  const std::string good = row(0, pixels_text(2304, 1), "Training");
  struct Case {
    std::string bad_row, expect;
  } cases[] = {
      {"3," + pixels_text(2304, 1) + "\n", "expected 3 fields, found 2"},
      {row(0, pixels_text(2303, 1), "Training"), "expected 2304 pixels (48x48), found 2303"},
      {row(0, pixels_text(2305, 1), "Training"), "found 2305"},
      {row(0, pixels_text(2303, 1) + " 256", "Training"), "pixel 2304 = 256 out of range 0..255"},
      {row(0, "x" + pixels_text(2303, 1), "Training"), "pixel 1 is not an integer"},
      {row(7, pixels_text(2304, 1), "Training"), "emotion 7 out of range 0..6"},
      {row(-1, pixels_text(2304, 1), "Training"), "out of range 0..6"},
      {"happy," + pixels_text(2304, 1) + ",Training\n", "emotion 'happy' is not an integer"},
      {row(0, pixels_text(2304, 1), "Validation"), "unknown Usage 'Validation'"},
  };
  for (const auto& c : cases) {
    const auto msg = load_error(kHeader + good + c.bad_row, &path);
    EXPECT_NE(msg.find(path + ":3: "), std::string::npos) << "message: " << msg;
    EXPECT_NE(msg.find(c.expect), std::string::npos) << "message: " << msg;
  }
  EXPECT_NE(load_error("a,b,c\n").find(":1: header must name"), std::string::npos);
  EXPECT_NE(load_error(kHeader).find("no data rows"), std::string::npos);
  EXPECT_THROW(fer::load_fer2013_csv("/nonexistent/fer.csv"), fer::DataError);
}

#if FER_WITH_OPENCV  // image folders are read with OpenCV
TEST(ImageFolder, ReadsSplitsAndCaseInsensitiveClassFolders) {
  TempDir dir;
  auto put = [&](const std::string& rel, int value, int size = 48) {
    fer_test::fs::create_directories((dir.path() / rel).parent_path());
    cv::imwrite(dir / rel, cv::Mat(size, size, CV_8UC1, cv::Scalar(value)));
  };
  put("train/Happy/a.png", 10);
  put("train/happy/b.jpg", 20);  // same class, different case, lossy format
  put("train/ANGRY/c.bmp", 30);
  put("test/surprise/d.png", 40);
  put("validation/neutral/e.png", 50);
  const auto s = fer::load_dataset(dir.path().string());
  ASSERT_EQ(s.train.size(), 3u);
  ASSERT_EQ(s.val.size(), 1u);
  ASSERT_EQ(s.test.size(), 1u);
  const auto counts = fer::class_counts(s.train);
  EXPECT_EQ(counts[3], 2);  // happy
  EXPECT_EQ(counts[0], 1);  // angry
  EXPECT_EQ(s.test.labels[0], 5);
  EXPECT_EQ(s.val.labels[0], 6);
  EXPECT_EQ(s.val.image(0)[0], 50);

  EXPECT_EQ(s.train.class_names, fer::emotion_names());

  // A class of its own: the classes are the folders' names, sorted.
  put("train/Contempt/x.png", 1);
  const auto own = fer::load_dataset(dir.path().string());
  EXPECT_EQ(own.train.class_names,
            (std::vector<std::string>{"angry", "contempt", "happy", "neutral", "surprise"}));
  EXPECT_EQ(own.val.class_names, own.train.class_names);
  EXPECT_EQ(own.train.labels, (std::vector<std::int64_t>{0, 1, 2, 2}));  // ANGRY, Contempt, Happy, happy
  EXPECT_EQ(own.test.labels[0], 4);

  // data.classes fixes names and order; a folder outside it is an error naming it.
  fer::DataConfig config;
  config.path = dir.path().string();
  config.classes = {"happy", "angry", "contempt", "surprise", "neutral", "sad"};
  const auto listed = fer::load_dataset(config);
  EXPECT_EQ(listed.train.class_names, config.classes);
  EXPECT_EQ(listed.train.labels, (std::vector<std::int64_t>{1, 2, 0, 0}));
  config.classes = {"happy", "angry", "surprise", "neutral"};
  try {
    fer::load_dataset(config);
    ADD_FAILURE() << "a class folder outside data.classes accepted";
  } catch (const fer::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("Contempt: unknown class folder"), std::string::npos) << e.what();
  }
}

// A 96x96 checkerboard of 100 and 200: every even block averages to 150.
cv::Mat checkerboard_96() {
  cv::Mat board(96, 96, CV_8UC1);
  for (int y = 0; y < 96; ++y)
    for (int x = 0; x < 96; ++x) board.at<std::uint8_t>(y, x) = static_cast<std::uint8_t>(((x + y) % 2) ? 200 : 100);
  return board;
}

// Faces of any size and colour read as 48x48 grayscale: area interpolation
// averages each 2x2 block of a 96x96 image; a colour image becomes its luma.
TEST(ImageFolder, AnySizeAndColourIsResizedToGrayscale) {
  TempDir dir;
  fer_test::fs::create_directories(dir.path() / "train" / "contempt");
  fer_test::fs::create_directories(dir.path() / "val" / "contempt");
  cv::imwrite(dir / "train/contempt/big.png", checkerboard_96());
  cv::imwrite(dir / "val/contempt/colour.png", cv::Mat(100, 100, CV_8UC3, cv::Scalar(0, 0, 255)));  // pure red (BGR)
  const auto s = fer::load_dataset(dir.path().string());
  EXPECT_EQ(s.train.class_names, std::vector<std::string>{"contempt"});
  ASSERT_EQ(s.train.size(), 1u);
  for (int i = 0; i < fer::kImagePixels; ++i) ASSERT_EQ(s.train.image(0)[i], 150) << "pixel " << i;
  ASSERT_EQ(s.val.size(), 1u);
  EXPECT_NEAR(s.val.image(0)[0], 0.299 * 255, 1.0);
  EXPECT_NEAR(s.val.image(0)[fer::kImagePixels - 1], 0.299 * 255, 1.0);

  fer_test::write_file(dir / "train/contempt/broken.png", "not an image");
  try {
    fer::load_dataset(dir.path().string());
    ADD_FAILURE() << "an undecodable image accepted";
  } catch (const fer::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("broken.png: cannot decode image"), std::string::npos) << e.what();
  }
}

// data.image_size: a folder's images are read at the model's size: the 96x96
// checkerboard's 4x4 blocks (100, 200) average to 150 at 24 (area
// interpolation); a 20x20 image is enlarged (bilinear).
TEST(ImageFolder, ImagesAreReadAtTheConfiguredSize) {
  TempDir dir;
  fer_test::fs::create_directories(dir.path() / "train" / "calm");
  fer_test::fs::create_directories(dir.path() / "val" / "calm");
  cv::imwrite(dir / "train/calm/big.png", checkerboard_96());
  cv::imwrite(dir / "val/calm/flat.png", cv::Mat(20, 20, CV_8UC1, cv::Scalar(77)));
  fer::DataConfig config;
  config.path = dir.path().string();
  config.image_size = 24;
  const auto s = fer::load_dataset(config);
  for (const auto* d : {&s.train, &s.val, &s.test}) EXPECT_EQ(d->image_size, 24);
  ASSERT_EQ(s.train.pixels.size(), 24u * 24u);
  for (std::size_t i = 0; i < s.train.pixels.size(); ++i) ASSERT_EQ(s.train.pixels[i], 150) << "pixel " << i;
  ASSERT_EQ(s.val.pixels.size(), 24u * 24u);
  for (std::size_t i = 0; i < s.val.pixels.size(); ++i) ASSERT_EQ(s.val.pixels[i], 77) << "pixel " << i;
}

// A dataset's images resized: 2x2 blocks average when shrinking by 2; a
// constant image stays constant when enlarging; the size travels with the data.
TEST(ResizeImages, ShrinkingAveragesBlocksAndEnlargingKeepsConstants) {
  fer::Dataset d;
  d.image_size = 4;
  const std::vector<std::uint8_t> blocks{10, 10, 30, 30,  //
                                         10, 10, 30, 30,  //
                                         50, 50, 70, 70,  //
                                         50, 50, 70, 70};
  d.add(blocks.data(), 0, "blocks");
  fer::Dataset flat = d.empty_like();
  EXPECT_EQ(flat.image_size, 4);
  flat.add(std::vector<std::uint8_t>(16, 99).data(), 1, "flat");
  fer::resize_images(d, 2);
  EXPECT_EQ(d.image_size, 2);
  EXPECT_EQ(d.pixels, (std::vector<std::uint8_t>{10, 30, 50, 70}));
  fer::resize_images(flat, 9);
  EXPECT_EQ(flat.image_pixels(), 81u);
  EXPECT_EQ(flat.pixels, std::vector<std::uint8_t>(81, 99));
  EXPECT_THROW(d.add_from(flat, 0), fer::DataError);  // 9x9 into 2x2
  EXPECT_THROW(fer::resize_images(d, 0), std::invalid_argument);
}

// FER-2013's 48x48 rows resized to data.image_size, every split.
TEST(Fer2013Csv, RowsAreResizedToTheConfiguredSize) {
  TempDir dir;
  fer_test::write_file(dir / "f.csv", kHeader + row(1, pixels_text(2304, 3), "Training") +
                                          row(2, pixels_text(2304, 4), "PublicTest") +
                                          row(3, pixels_text(2304, 5), "PrivateTest"));
  fer::DataConfig config;
  config.path = dir / "f.csv";
  config.image_size = 64;
  const auto s = fer::load_dataset(config);
  for (const auto* d : {&s.train, &s.val, &s.test}) {
    EXPECT_EQ(d->image_size, 64);
    ASSERT_EQ(d->pixels.size(), 64u * 64u);
  }
  EXPECT_EQ(s.test.pixels, std::vector<std::uint8_t>(64 * 64, 5));
}

// A PNG whose header says 46,000 x 46,000 (2.1 gigapixels, no pixel data):
// refused from its header with a message naming the file, not OpenCV's assertion.
TEST(ImageFolder, AnOversizedImageIsRefusedNamingTheFile) {
  const auto be32 = [](std::uint32_t v) {
    return std::string{static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
                       static_cast<char>(v)};
  };
  const auto chunk = [&](const std::string& type_and_data) {
    const auto crc = crc32(0, reinterpret_cast<const Bytef*>(type_and_data.data()), type_and_data.size());
    return be32(static_cast<std::uint32_t>(type_and_data.size() - 4)) + type_and_data + be32(static_cast<std::uint32_t>(crc));
  };
  const std::string png = std::string("\x89PNG\r\n\x1a\n", 8) +
                          chunk("IHDR" + be32(46000) + be32(46000) + std::string("\x08\x00\x00\x00\x00", 5)) +
                          chunk("IDAT" + std::string("\x78\x9c\x03\x00\x00\x00\x00\x01", 8)) +  // an empty zlib stream
                          chunk("IEND");
  TempDir dir;
  fer_test::write_file(dir / "huge.png", png);
  try {
    fer::read_face_image(dir / "huge.png");
    ADD_FAILURE() << "a 46000x46000 image was read";
  } catch (const fer::DataError& e) {
    EXPECT_NE(std::string(e.what()).find(dir / "huge.png: image larger than OpenCV's limit of 2^30 pixels"),
              std::string::npos) << e.what();
  }
}

#endif

TEST(Splits, StratifiedSplitKeepsClassSharesAndIsSeeded) {
  fer::DatasetSplits all;
  std::vector<std::uint8_t> img(fer::kImagePixels, 0);
  for (int c = 0; c < 7; ++c)
    for (int i = 0; i < 100 * (c + 1); ++i) {
      img[0] = static_cast<std::uint8_t>(i % 256);
      all.train.add(img.data(), c, "r" + std::to_string(c) + "_" + std::to_string(i));
    }
  const auto a = fer::stratified_split(all, 0.1, 0.1, 5);
  const auto b = fer::stratified_split(all, 0.1, 0.1, 5);
  const auto c = fer::stratified_split(all, 0.1, 0.1, 6);
  EXPECT_EQ(a.train.size() + a.val.size() + a.test.size(), all.train.size());
  const auto val_counts = fer::class_counts(a.val);
  for (int k = 0; k < 7; ++k) EXPECT_EQ(val_counts[k], 10 * (k + 1));  // exactly 10% per class
  EXPECT_EQ(a.val.sources, b.val.sources);
  EXPECT_NE(a.val.sources, c.val.sources);
}

TEST(Splits, EmptyValidationSplitIsAClearError) {
  TempDir dir;
  fer_test::write_file(dir / "f.csv", kHeader + row(1, pixels_text(2304, 3), "Training"));
  fer::Config cfg;
  cfg.data.path = dir / "f.csv";
  try {
    fer::load_configured_splits(cfg);
    ADD_FAILURE() << "empty validation split accepted";
  } catch (const fer::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("validation split is empty"), std::string::npos) << e.what();
  }
  cfg.data.split = "stratified";  // carving a validation split out of the rows works
  fer_test::write_file(dir / "f.csv", kHeader + row(1, pixels_text(2304, 3), "Training") +
                                          row(1, pixels_text(2304, 3), "Training") + row(1, pixels_text(2304, 3), "Training") +
                                          row(1, pixels_text(2304, 3), "Training") + row(1, pixels_text(2304, 3), "Training"));
  cfg.data.val_fraction = 0.2;
  cfg.data.test_fraction = 0.2;
  const auto s = fer::load_configured_splits(cfg);
  EXPECT_EQ(s.val.size(), 1u);
  EXPECT_EQ(s.train.size(), 3u);
}

TEST(Splits, InverseFrequencyWeightsMatchSklearnBalanced) {
  fer::Dataset d;
  std::vector<std::uint8_t> img(fer::kImagePixels, 0);
  for (int i = 0; i < 6; ++i) d.add(img.data(), 0, "");
  for (int i = 0; i < 2; ++i) d.add(img.data(), 3, "");
  const auto w = fer::inverse_frequency_weights(d);
  EXPECT_FLOAT_EQ(w[0], 8.0f / (7 * 6));
  EXPECT_FLOAT_EQ(w[3], 8.0f / (7 * 2));
  EXPECT_FLOAT_EQ(w[1], 0.0f);
}
