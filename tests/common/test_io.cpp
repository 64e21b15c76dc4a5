// fer/common/io.h: the one atomic writer, CSV reader/writer and .npy encoder.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <set>

#include "fer/common/emotions.h"
#include "fer/common/io.h"
#include "fer/engine/history.h"
#include "test_util.h"


TEST(Io, CsvFieldsRoundTripThroughQuotingWhateverTheyHold) {
  const std::vector<std::string> fields = {"plain", "a,b", "say \"hi\"", "two\nlines", "", "cr\rhere", "\"\""};
  const std::string row = fer::csv_row(fields);
  EXPECT_EQ(row.substr(0, 13), "plain,\"a,b\",\"");
  EXPECT_EQ(fer::csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
  EXPECT_EQ(fer::csv_field("plain"), "plain");
  EXPECT_EQ(fer::parse_csv_row(row), fields);
  EXPECT_EQ(fer::parse_csv_row("a,,"), (std::vector<std::string>{"a", "", ""}));
}

TEST(Io, TrimDropsSpacesTabsAndCarriageReturnsAtTheEndsOnly) {
  EXPECT_EQ(fer::trim(" \t a b\t\r"), "a b");
  EXPECT_EQ(fer::trim(" \r\t"), "");
  EXPECT_EQ(fer::trim("x"), "x");
}

TEST(Io, CsvReaderReadsPlainAndGzipFilesWithMultiLineFieldsAndNamesLines) {
  fer_test::TempDir dir;
  const std::string text = "x,y\r\n1,\"a\nb\"\n\n2,\"c,\"\"d\"\"\"\n";
  fer_test::write_file(dir / "t.csv", text);
  fer_test::write_gz(dir / "t.csv.gz", text);
  for (const auto* name : {"t.csv", "t.csv.gz"}) {
    fer::CsvReader csv(dir / name);
    std::vector<std::string> f;
    ASSERT_TRUE(csv.next(f));
    EXPECT_EQ(f, (std::vector<std::string>{"x", "y"}));
    EXPECT_EQ(csv.where(), dir / name + ":1");
    ASSERT_TRUE(csv.next(f));
    EXPECT_EQ(f, (std::vector<std::string>{"1", "a\nb"}));
    EXPECT_EQ(csv.where(), dir / name + ":2");
    ASSERT_TRUE(csv.next(f));  // the blank line 4 is skipped
    EXPECT_EQ(f, (std::vector<std::string>{"2", "c,\"d\""}));
    EXPECT_EQ(csv.where(), dir / name + ":5");
    EXPECT_FALSE(csv.next(f));
  }
  fer_test::write_file(dir / "open.csv", "a\n\"never closed\n");
  fer::CsvReader open(dir / "open.csv");
  std::vector<std::string> f;
  ASSERT_TRUE(open.next(f));
  try {
    open.next(f);
    FAIL() << "expected an error";
  } catch (const fer::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("open.csv:2: a quoted field is not closed"), std::string::npos) << e.what();
  }
  EXPECT_THROW(fer::CsvReader(dir / "missing.csv"), fer::DataError);
}

TEST(Io, AtomicReplacementKeepsTheOldFileWhenTheWriterFails) {
  fer_test::TempDir dir;
  const auto path = dir / "f.txt";
  fer::write_text_atomic(path, "first\n");
  EXPECT_EQ(fer_test::read_text(path), "first\n");
  EXPECT_THROW(fer::replace_file_atomically(path,
                                            [](const std::string& tmp) {
                                              std::ofstream(tmp) << "half";
                                              throw std::runtime_error("writer died");
                                            }),
               std::runtime_error);
  EXPECT_EQ(fer_test::read_text(path), "first\n");
  EXPECT_FALSE(fer_test::fs::exists(path + ".tmp"));
  fer::write_text_atomic(path, "second\n");
  EXPECT_EQ(fer_test::read_text(path), "second\n");
  EXPECT_THROW(fer::write_text_atomic(dir / "no/such/dir/f.txt", "x"), std::runtime_error);
}

// A log on a full disk (the file-size limit): the failing write names the file
// and the cause and is cut back off, so the file holds whole rows only; appending
// after a reopen keeps what is there.
TEST(Io, AnAppendFileThatHitsAFullDiskKeepsWholeRowsAndNamesTheCause) {
  fer_test::TempDir dir;
  const std::string path = dir / "log.csv";
  {
    fer::AppendFile log(path, fer::AppendFile::Mode::truncate);
    log.write("a,1\n");
    log.write("b,2\n");
    fer_test::FileSizeLimit full(16);
    try {
      log.write("c," + std::string(100, '3') + "\n");
      FAIL() << "a write past the limit must throw";
    } catch (const std::runtime_error& e) {
      EXPECT_EQ(std::string(e.what()), "cannot write '" + path + "': File too large");
    }
    EXPECT_FALSE(log.is_open());
    EXPECT_THROW(log.write("d,4\n"), std::logic_error);
  }
  EXPECT_EQ(fer_test::read_text(path), "a,1\nb,2\n");
  fer::AppendFile again(path, fer::AppendFile::Mode::append);
  again.write("e,5\n");
  again.close();
  EXPECT_EQ(fer_test::read_text(path), "a,1\nb,2\ne,5\n");
  EXPECT_THROW(fer::AppendFile(dir / "no/such/folder/x.csv", fer::AppendFile::Mode::truncate), std::runtime_error);
}

TEST(Io, NpyHeaderIsNumpysAndTheBytesRoundTrip) {
  const std::vector<float> values = {0.5f, -1.0f, 2.25f, 3.0f, 4.0f, 5.0f};
  const std::string bytes = fer::npy_float32_bytes(values.data(), {2, 3});
  // numpy 1.24's np.save of the same array, byte for byte: a version 1.0
  // header of 118 bytes, space-padded so the data starts at byte 128.
  std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
  dict += std::string(117 - dict.size(), ' ') + "\n";
  const std::string numpy_header = std::string("\x93NUMPY\x01\x00\x76\x00", 10) + dict;
  ASSERT_EQ(bytes.size(), 128 + values.size() * sizeof(float));
  EXPECT_EQ(bytes.substr(0, 128), numpy_header);
  float first = 0;
  std::memcpy(&first, bytes.data() + 128, sizeof first);
  EXPECT_EQ(first, 0.5f);
  const auto back = fer::parse_npy_float32(bytes, "x");
  EXPECT_EQ(back.shape, (std::vector<std::int64_t>{2, 3}));
  EXPECT_EQ(back.values, values);
  EXPECT_NE(fer::npy_float32_bytes(values.data(), {6}).find("'shape': (6,)"), std::string::npos);
  EXPECT_THROW(fer::parse_npy_float32(bytes.substr(0, 70), "x"), fer::DataError);
}

TEST(Io, HistoryCsvNamesTheLineOfABadNumber) {
  fer_test::TempDir dir;
  fer_test::write_file(dir / "h.csv", "epoch,lr,train_loss,train_accuracy,val_loss,val_accuracy,seconds\n"
                                      "1,0.001,1.8,0.3,1.7,0.35,120.5\n2,0.001,x,0.3,1.7,0.35,120.5\n");
  try {
    fer::read_history_csv(dir / "h.csv");
    FAIL() << "expected an error";
  } catch (const fer::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("h.csv:3: 'x' is not a number"), std::string::npos) << e.what();
  }
  const std::vector<fer::EpochRecord> h{{1, 1e-3, 1.8, 0.3, 1.7, 0.35, 120.5}};
  const auto back = fer::history_from_json(fer::history_to_json(h));
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0].epoch, 1);
  EXPECT_DOUBLE_EQ(back[0].val_accuracy, 0.35);
}

TEST(Emotions, NamesAndColoursHaveOneSource) {
  EXPECT_EQ(fer::emotion_names().size(), static_cast<std::size_t>(fer::kNumClasses));
  EXPECT_EQ(fer::emotion_index("Happy"), 3);
  EXPECT_EQ(fer::emotion_index("bored"), -1);
  EXPECT_EQ(fer::class_index({"calm", "Tired"}, "TIRED"), 1);  // any list, any case
  EXPECT_EQ(fer::class_index({"calm", "Tired"}, "happy"), -1);
  EXPECT_EQ(fer::class_name_list({"calm", "Tired"}), "calm, Tired");
  EXPECT_EQ(fer::class_name_list({}), "");
  EXPECT_EQ(fer::emotion_name_list(), "angry, disgust, fear, happy, sad, surprise, neutral");
  EXPECT_EQ(fer::class_colour_hex(0), "#d62728");
  EXPECT_EQ(fer::class_colour_hex(7), fer::class_colour_hex(0));
  const auto sad = fer::class_colour(4);
  EXPECT_EQ(fer::class_colour_hex(4), "#1f77b4");
  EXPECT_EQ(sad.r, 0x1f);
}

// A class keeps its colour in any class list: FER+'s order puts neutral first
// and sad fourth, and they stay grey and blue; contempt and unknown get their own.
TEST(Emotions, ClassesAreColouredByNameInAnyOrder) {
  const std::vector<std::string> ferplus{"neutral", "happy", "surprise", "sad", "angry", "disgust", "fear", "contempt", "unknown"};
  for (std::size_t c = 0; c < 7; ++c)
    EXPECT_EQ(fer::class_colour_hex(ferplus, c), fer::class_colour_hex(static_cast<std::size_t>(fer::emotion_index(ferplus[c]))));
  EXPECT_EQ(fer::class_colour_hex(fer::emotion_names(), 4), "#1f77b4");
  std::set<std::string> colours;
  for (std::size_t c = 0; c < ferplus.size(); ++c) colours.insert(fer::class_colour_hex(ferplus, c));
  EXPECT_EQ(colours.size(), ferplus.size()) << "two classes share a colour";
  // Names of one's own: the palette by index.
  EXPECT_EQ(fer::class_colour_hex({"a", "b"}, 1), fer::class_colour_hex(1));
}

TEST(Io, ReadFileReturnsTheBytesAndNamesAMissingFile) {
  fer_test::TempDir dir;
  fer_test::write_file(dir / "a.bin", std::string("x\0y\n", 4));
  EXPECT_EQ(fer::read_file(dir / "a.bin"), std::string("x\0y\n", 4));
  try {
    fer::read_file(dir / "missing.txt");
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("missing.txt"), std::string::npos) << e.what();
  }
}
