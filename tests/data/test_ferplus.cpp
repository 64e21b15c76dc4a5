// FER+ in both forms (label.csv folders, fer2013.csv + fer2013new.csv), the
// majority rule on hand-computed votes, and the errors for malformed files.
#include <gtest/gtest.h>

#include <fstream>

#if FER_WITH_OPENCV
#include <opencv2/imgcodecs.hpp>
#endif

#include "fer/common/io.h"
#include "fer/data/ferplus.h"
#include "test_util.h"

using fer_test::pixels_text;
using fer_test::TempDir;

namespace {

// Columns: neutral happiness surprise sadness anger disgust fear contempt unknown NF.
fer::FerplusCounts counts(std::initializer_list<float> values) {
  fer::FerplusCounts c{};
  std::copy(values.begin(), values.end(), c.begin());
  return c;
}

std::string vote_text(const fer::FerplusCounts& c) {
  std::string text;
  for (float v : c) text += "," + std::to_string(static_cast<int>(v));
  return text;
}

}  // namespace

TEST(FerplusVotes, MajorityRuleDropsSingleVotesAndNeedsMoreThanHalf) {
  // 6 neutral of 10: a majority.
  EXPECT_EQ(fer::ferplus_majority_column(counts({6, 1, 1, 1, 1, 0, 0, 0, 0, 0})), 0);
  // 4 neutral, 3 anger, 2 disgust, 1 sadness: the single vote goes, 4 of 9 is no majority.
  EXPECT_EQ(fer::ferplus_majority_column(counts({4, 0, 0, 1, 3, 2, 0, 0, 0, 0})), -1);
  // 5 happiness, 2 surprise, 3 single votes dropped: 5 of 7 > half.
  EXPECT_EQ(fer::ferplus_majority_column(counts({1, 5, 2, 1, 0, 0, 1, 0, 0, 0})), 1);
  // 5 and 5: exactly half is not more than half.
  EXPECT_EQ(fer::ferplus_majority_column(counts({0, 5, 5, 0, 0, 0, 0, 0, 0, 0})), -1);
  // The unknown column can win: the caller decides what it means.
  EXPECT_EQ(fer::ferplus_majority_column(counts({2, 0, 0, 0, 0, 0, 0, 0, 8, 0})), 8);
  // NF with the most votes is not a face; a tie with a class is.
  EXPECT_TRUE(fer::ferplus_not_a_face(counts({2, 0, 0, 0, 0, 0, 0, 0, 3, 5})));
  EXPECT_FALSE(fer::ferplus_not_a_face(counts({5, 0, 0, 0, 0, 0, 0, 0, 0, 5})));
}

TEST(FerplusVotes, ClassOptionsMapTheColumns) {
  fer::FerplusOptions options;
  EXPECT_EQ(fer::ferplus_class_names(options),
            (std::vector<std::string>{"neutral", "happy", "surprise", "sad", "angry", "disgust", "fear", "contempt"}));
  options.keep_unknown = true;
  EXPECT_EQ(fer::ferplus_class_names(options).back(), "unknown");
  EXPECT_EQ(fer::ferplus_column_classes(options)[8], 8);
  options = {};
  options.as_fer2013 = true;
  EXPECT_EQ(fer::ferplus_class_names(options), fer::emotion_names());
  // neutral -> 6, happiness -> 3, surprise -> 5, sadness -> 4, anger -> 0, disgust -> 1, fear -> 2; contempt, unknown, NF -> none
  EXPECT_EQ(fer::ferplus_column_classes(options), (std::array<int, 10>{6, 3, 5, 4, 0, 1, 2, -1, -1, -1}));
}

TEST(FerplusVotes, FacesAreKeptDroppedAndLabelledByTheRules) {
  fer::DatasetSplits splits;
  fer::set_class_names(splits, fer::ferplus_class_names({}));
  const std::vector<std::uint8_t> image(fer::kImagePixels, 0);
  const auto add = [&](fer::SplitName split, const fer::FerplusCounts& c) {
    fer::add_ferplus_face(splits, split, image.data(), c, {}, "f");
  };
  add(fer::SplitName::train, counts({6, 1, 1, 1, 1, 0, 0, 0, 0, 0}));  // majority neutral
  add(fer::SplitName::train, counts({0, 0, 0, 1, 4, 3, 0, 0, 2, 0}));  // no majority: label = most voted (anger)
  add(fer::SplitName::train, counts({0, 0, 0, 0, 0, 0, 0, 0, 2, 8}));  // not a face
  add(fer::SplitName::train, counts({0, 0, 0, 0, 0, 0, 0, 0, 10, 0}));  // votes only for unknown
  add(fer::SplitName::val, counts({0, 0, 0, 1, 4, 3, 0, 0, 2, 0}));  // no majority: kept for the vote metrics
  add(fer::SplitName::val, counts({0, 0, 0, 0, 0, 0, 0, 7, 3, 0}));  // majority contempt
  ASSERT_EQ(splits.train.size(), 2u);
  EXPECT_EQ(splits.train.labels, (std::vector<std::int64_t>{0, 4}));
  EXPECT_EQ(splits.train.majority, (std::vector<std::int64_t>{0, -1}));
  EXPECT_EQ(std::vector<float>(splits.train.votes_of(1), splits.train.votes_of(1) + 8),
            (std::vector<float>{0, 0, 0, 1, 4, 3, 0, 0}));
  EXPECT_EQ(splits.train.dropped.size(), 2u);
  ASSERT_EQ(splits.val.size(), 2u);
  EXPECT_EQ(splits.val.majority, (std::vector<std::int64_t>{-1, 7}));
  EXPECT_TRUE(splits.val.dropped.empty());
  const auto scored = fer::majority_faces(splits.val);  // what validation and accuracy count
  ASSERT_EQ(scored.size(), 1u);
  EXPECT_EQ(scored.labels[0], 7);
  EXPECT_EQ(scored.sources.size(), 1u);
  EXPECT_EQ(std::vector<float>(scored.votes_of(0), scored.votes_of(0) + 8), (std::vector<float>{0, 0, 0, 0, 0, 0, 0, 7}));
}

TEST(FerplusCsv, PairsKaggleRowsWithTheirVotesAndRefusesMismatches) {
  TempDir dir;
  const std::string kaggle = "emotion,pixels,Usage\n"
                             "0," + pixels_text(2304, 1) + ",Training\n"
                             "3," + pixels_text(2304, 2) + ",Training\n"
                             "4," + pixels_text(2304, 3) + ",PublicTest\n"
                             "6," + pixels_text(2304, 4) + ",PrivateTest\n";
  const std::string header = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF\n";
  fer_test::write_file(dir / "fer2013.csv", kaggle);
  fer_test::write_file(dir / "new.csv", header + "Training,fer0000000.png" + vote_text(counts({0, 0, 0, 0, 9, 1})) +
                                            "\nTraining," + vote_text(counts({0, 0, 0, 0, 0, 0, 0, 0, 0, 10})) +
                                            "\nPublicTest,fer0000002.png" + vote_text(counts({2, 0, 0, 8})) +
                                            "\nPrivateTest,fer0000003.png" + vote_text(counts({7, 3})) + "\n");
  const auto s = fer::load_ferplus_csv(dir / "fer2013.csv", dir / "new.csv", {});
  ASSERT_EQ(s.train.size(), 1u);  // the blank name: FER+ found no face
  EXPECT_EQ(s.train.labels[0], 4);
  EXPECT_EQ(s.train.image(0)[0], 1);
  EXPECT_EQ(s.train.dropped.front().second, 1);
  ASSERT_EQ(s.val.size(), 1u);
  EXPECT_EQ(s.val.labels[0], 3);
  EXPECT_EQ(s.val.image(0)[0], 3);
  ASSERT_EQ(s.test.size(), 1u);
  EXPECT_EQ(s.test.labels[0], 0);

  // Usage differs on the third row: both files' lines named.
  fer_test::write_file(dir / "swapped.csv", header + "Training,a" + vote_text(counts({9})) + "\nTraining,b" +
                                                vote_text(counts({9})) + "\nTraining,c" + vote_text(counts({9})) +
                                                "\nPrivateTest,d" + vote_text(counts({9})) + "\n");
  auto what = fer_test::error_of<fer::DataError>([&] { fer::load_ferplus_csv(dir / "fer2013.csv", dir / "swapped.csv", {}); });
  EXPECT_NE(what.find("swapped.csv:4: Usage 'Training' differs from 'PublicTest' at " + dir / "fer2013.csv:4"),
            std::string::npos) << what;
  // One row short: the file that ends first, and where the other goes on.
  fer_test::write_file(dir / "short.csv", header + "Training,a" + vote_text(counts({9})) + "\n");
  what = fer_test::error_of<fer::DataError>([&] { fer::load_ferplus_csv(dir / "fer2013.csv", dir / "short.csv", {}); });
  EXPECT_NE(what.find("short.csv ends before " + dir / "fer2013.csv:3"), std::string::npos) << what;
  // A count that is no count.
  fer_test::write_file(dir / "bad.csv", header + "Training,a,0,0,0,x,0,0,0,0,0,0\n");
  what = fer_test::error_of<fer::DataError>([&] { fer::load_ferplus_csv(dir / "fer2013.csv", dir / "bad.csv", {}); });
  EXPECT_NE(what.find("bad.csv:2: sadness votes 'x' is not a count in 0..10"), std::string::npos) << what;
}

#if FER_WITH_OPENCV
TEST(FerplusFolders, ReadsLabelCsvAndPngsAndNamesMalformedLines) {
  TempDir dir;
  fer_test::fs::create_directories(dir.path() / "FER2013Train");
  fer_test::fs::create_directories(dir.path() / "FER2013Valid");
  cv::imwrite(dir / "FER2013Train/fer0000000.png", cv::Mat(48, 48, CV_8UC1, cv::Scalar(11)));
  cv::imwrite(dir / "FER2013Train/fer0000001.png", cv::Mat(48, 48, CV_8UC1, cv::Scalar(12)));
  cv::imwrite(dir / "FER2013Valid/fer0028709.png", cv::Mat(48, 48, CV_8UC1, cv::Scalar(13)));
  fer_test::write_file(dir / "FER2013Train/label.csv",
                       "fer0000000.png,\"(0, 0, 48, 48)\"" + vote_text(counts({4, 0, 0, 1, 3, 2})) +
                           "\nfer0000001.png,\"(0, 0, 48, 48)\"" + vote_text(counts({0, 10})) + "\n");
  fer_test::write_file(dir / "FER2013Valid/label.csv",
                       "fer0028709.png,\"(0, 0, 48, 48)\"" + vote_text(counts({0, 0, 0, 0, 0, 0, 0, 6, 4})) + "\n");
  EXPECT_TRUE(fer::is_ferplus_folder(dir.path()));
  const auto s = fer::load_dataset(dir.path().string());  // found as FER+ by its layout
  ASSERT_EQ(s.train.size(), 2u);
  EXPECT_EQ(s.train.class_names.size(), 8u);
  EXPECT_EQ(s.train.majority, (std::vector<std::int64_t>{-1, 1}));
  EXPECT_EQ(s.train.labels, (std::vector<std::int64_t>{0, 1}));
  EXPECT_EQ(s.train.image(1)[0], 12);
  EXPECT_EQ(s.train.sources[0], dir / "FER2013Train/fer0000000.png");
  ASSERT_EQ(s.val.size(), 1u);
  EXPECT_EQ(s.val.labels[0], 7);  // contempt

  fer::DataConfig config;
  config.path = dir.path().string();
  config.ferplus_as_fer2013 = true;  // contempt has no FER-2013 class: the face has no vote for a kept class
  const auto mapped = fer::load_dataset(config);
  EXPECT_EQ(mapped.train.class_names, fer::emotion_names());
  EXPECT_EQ(mapped.train.labels, (std::vector<std::int64_t>{6, 3}));
  EXPECT_EQ(mapped.val.size(), 0u);

  const auto broken = [&](const std::string& line) {
    fer_test::write_file(dir / "FER2013Train/label.csv", line + "\n");
    return fer_test::error_of<fer::DataError>([&] { fer::load_dataset(dir.path().string()); });
  };
  const auto label_csv = dir / "FER2013Train/label.csv";
  EXPECT_NE(broken("fer0000000.png,\"(0, 0, 48, 48)\",1,2,3").find(label_csv + ":1: expected 12 fields"),
            std::string::npos);
  EXPECT_NE(broken("fer0000000.png,\"(0, 0, 48, 48)\",0,0,0,0,0,0,0,0,0,11").find(label_csv + ":1: NF votes '11'"),
            std::string::npos);
  EXPECT_NE(broken("missing.png,\"(0, 0, 48, 48)\"" + vote_text(counts({9}))).find("missing.png does not exist"),
            std::string::npos);
  EXPECT_NE(broken("../x.png,\"(0, 0, 48, 48)\"" + vote_text(counts({9}))).find("is not an image file name"),
            std::string::npos);
}

// Built from the shared copy when it is there: the first faces of FER2013Train
// in both forms agree on every face's votes and labels (the pixels differ: the
// shared fer2013.csv.gz was rebuilt from JPEGs).
TEST(FerplusFolders, BothFormsOfTheSharedCopyAgree) {
  const auto shared = fer_test::fs::path(fer_test::source_dir()) / ".." / "shared" / "data";
  if (!fer_test::fs::exists(shared / "ferplus" / "FER2013Train" / "label.csv") || fer_test::real_fer2013().empty())
    GTEST_SKIP() << "../shared/data/ferplus or fer2013 not found";
  TempDir dir;
  const int n = 60;
  fer_test::fs::create_directories(dir.path() / "FER2013Train");
  std::ifstream labels(shared / "ferplus" / "FER2013Train" / "label.csv");
  std::string line, text;
  std::vector<std::string> kept;
  for (int i = 0; i < n && std::getline(labels, line); ++i) text += line + "\n";
  fer_test::write_file(dir / "FER2013Train/label.csv", text);
  fer::CsvReader rows(dir / "FER2013Train/label.csv");
  std::vector<std::string> fields;
  while (rows.next(fields))
    fer_test::fs::copy_file(shared / "ferplus" / "FER2013Train" / fields[0], dir.path() / "FER2013Train" / fields[0]);
  // The paired form: the first n + (faces FER+ dropped among them) rows of each file.
  std::ifstream votes(shared / "ferplus" / "fer2013new.csv");
  std::string votes_text, kaggle_text;
  fer::CsvReader kaggle(fer_test::real_fer2013());
  kaggle.next(fields);
  kaggle_text = "emotion,pixels,Usage\n";
  int faces = 0;
  for (std::getline(votes, line), votes_text = line + "\n"; faces < n && std::getline(votes, line);) {
    votes_text += line + "\n";
    faces += line.find(",fer") != std::string::npos;
    kaggle.next(fields);
    kaggle_text += fer::csv_row(fields) + "\n";
  }
  fer_test::write_file(dir / "new.csv", votes_text);
  fer_test::write_file(dir / "fer2013.csv", kaggle_text);
  const auto folders = fer::load_ferplus_folders(dir.path(), {});
  const auto paired = fer::load_ferplus_csv(dir / "fer2013.csv", dir / "new.csv", {});
  ASSERT_GT(folders.train.size(), 40u);
  EXPECT_EQ(folders.train.labels, paired.train.labels);
  EXPECT_EQ(folders.train.votes, paired.train.votes);
  EXPECT_EQ(folders.train.majority, paired.train.majority);
}
#endif
