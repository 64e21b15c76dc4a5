#include "fer/data/ferplus.h"

#include <algorithm>
#include <charconv>
#include <filesystem>

#include "fer/common/io.h"

namespace fer {
namespace fs = std::filesystem;

namespace {

constexpr int kUnknownColumn = 8;
constexpr int kNotFaceColumn = 9;
const char* const kNotAFace = "not a face (NF holds the most votes)";
const char* const kNoClassVotes = "with no vote for a kept class";

void count_dropped(Dataset& split, const std::string& why) {
  for (auto& [reason, count] : split.dropped)
    if (reason == why) {
      ++count;
      return;
    }
  split.dropped.push_back({why, 1});
}

// Ten counts from fields[first..first+9], each a number in 0..10.
FerplusCounts parse_counts(const std::vector<std::string>& fields, std::size_t first, const std::string& where) {
  FerplusCounts counts{};
  for (int c = 0; c < kFerplusColumns; ++c) {
    const auto text = trim(fields[first + c]);
    int value = -1;
    const auto [end, err] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (err != std::errc() || end != text.data() + text.size() || value < 0 || value > 10)
      throw DataError(where + ": " + ferplus_columns()[c] + " votes '" + text + "' is not a count in 0..10");
    counts[c] = static_cast<float>(value);
  }
  return counts;
}

struct SplitFolder {
  const char* name;
  SplitName split;
};
constexpr SplitFolder kSplitFolders[] = {
    {"FER2013Train", SplitName::train}, {"FER2013Valid", SplitName::val}, {"FER2013Test", SplitName::test}};

void read_split_folder(DatasetSplits& splits, const fs::path& folder, SplitName split, const FerplusOptions& options) {
  CsvReader reader((folder / "label.csv").string());
  std::vector<std::string> fields;
  while (reader.next(fields)) {
    const auto where = reader.where();
    if (fields.size() != 2 + kFerplusColumns)
      throw DataError(where + ": expected 12 fields (name, face box, ten vote counts), found " +
                      std::to_string(fields.size()));
    const auto name = trim(fields[0]);
    if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..")
      throw DataError(where + ": '" + name + "' is not an image file name");
    const auto counts = parse_counts(fields, 2, where);
    const auto png = (folder / name).string();
    if (!fs::is_regular_file(png)) throw DataError(where + ": " + png + " does not exist");
    add_ferplus_face(splits, split, read_face_image(png).data(), counts, options, png);
  }
}

}  // namespace

const std::vector<std::string>& ferplus_columns() {
  static const std::vector<std::string> columns{"neutral", "happiness", "surprise", "sadness", "anger",
                                                "disgust", "fear",      "contempt", "unknown", "NF"};
  return columns;
}

std::vector<std::string> ferplus_class_names(const FerplusOptions& options) {
  if (options.as_fer2013) return emotion_names();
  std::vector<std::string> names{"neutral", "happy", "surprise", "sad", "angry", "disgust", "fear", "contempt"};
  if (options.keep_unknown) names.push_back("unknown");
  return names;
}

std::array<int, kFerplusColumns> ferplus_column_classes(const FerplusOptions& options) {
  if (options.as_fer2013) {
    std::array<int, kFerplusColumns> classes{};
    const std::vector<std::string> fer2013_spelling{"neutral", "happy", "surprise", "sad", "angry", "disgust", "fear"};
    classes.fill(-1);
    for (std::size_t c = 0; c < fer2013_spelling.size(); ++c) classes[c] = emotion_index(fer2013_spelling[c]);
    return classes;
  }
  return {0, 1, 2, 3, 4, 5, 6, 7, options.keep_unknown ? 8 : -1, -1};
}

int ferplus_majority_column(const FerplusCounts& counts) {
  FerplusCounts kept = counts;
  float total = 0;
  for (auto& c : kept) {
    if (c <= 1) c = 0;  // a single vote is an outlier
    total += c;
  }
  const auto best = std::max_element(kept.begin(), kept.end());  // the first of equals
  if (*best <= 0 || *best <= 0.5f * total) return -1;
  return static_cast<int>(best - kept.begin());
}

bool ferplus_not_a_face(const FerplusCounts& counts) {
  for (int c = 0; c < kNotFaceColumn; ++c)
    if (counts[c] >= counts[kNotFaceColumn]) return false;
  return true;
}

void add_ferplus_face(DatasetSplits& splits, SplitName split, const std::uint8_t* pixels, const FerplusCounts& counts,
                      const FerplusOptions& options, const std::string& source) {
  Dataset& target = split_of(splits, split);
  if (ferplus_not_a_face(counts)) return count_dropped(target, kNotAFace);
  const auto classes = ferplus_column_classes(options);
  std::vector<float> votes(target.class_names.size(), 0.f);
  for (int c = 0; c < kFerplusColumns; ++c)
    if (classes[c] >= 0) votes[classes[c]] += counts[c];
  const auto most = std::max_element(votes.begin(), votes.end());
  if (*most <= 0) return count_dropped(target, kNoClassVotes);
  const int column = ferplus_majority_column(counts);
  const std::int64_t majority = column < 0 ? -1 : classes[column];
  const std::int64_t label = majority >= 0 ? majority : most - votes.begin();
  target.add_voted(pixels, label, votes.data(), majority, source);
}

bool is_ferplus_folder(const std::string& path) {
  for (const auto& folder : kSplitFolders)
    if (fs::is_regular_file(fs::path(path) / folder.name / "label.csv")) return true;
  return false;
}

DatasetSplits load_ferplus_folders(const std::string& root, const FerplusOptions& options) {
  if (!is_ferplus_folder(root))
    throw DataError(root + ": no FER2013Train/, FER2013Valid/ or FER2013Test/ folder with a label.csv");
  DatasetSplits splits;
  set_class_names(splits, ferplus_class_names(options));
  for (const auto& folder : kSplitFolders) {
    const auto dir = fs::path(root) / folder.name;
    if (fs::is_regular_file(dir / "label.csv")) read_split_folder(splits, dir, folder.split, options);
  }
  return splits;
}

DatasetSplits load_ferplus_csv(const std::string& fer2013_csv, const std::string& votes_csv,
                               const FerplusOptions& options) {
  Fer2013CsvRows faces(fer2013_csv);
  CsvReader votes(votes_csv);
  std::vector<std::string> header, fields;
  if (!votes.next(header) || header.size() != 2 + kFerplusColumns || trim(header[0]) != "Usage")
    throw DataError(votes_csv + ":1: expected the header Usage,Image name," +
                    "neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF");
  DatasetSplits splits;
  set_class_names(splits, ferplus_class_names(options));
  Fer2013Row face;
  while (true) {
    const bool have_face = faces.next(face), have_votes = votes.next(fields);
    if (!have_face && !have_votes) break;
    if (have_face != have_votes)
      throw DataError((have_face ? votes_csv : fer2013_csv) + " ends before " +
                      (have_face ? face.where : votes.where()) + ": the two files must have a row for each face, in order");
    const auto where = votes.where();
    if (fields.size() != 2 + kFerplusColumns)
      throw DataError(where + ": expected 12 fields (Usage, Image name, ten vote counts), found " +
                      std::to_string(fields.size()));
    if (trim(fields[0]) != face.usage)
      throw DataError(where + ": Usage '" + trim(fields[0]) + "' differs from '" + face.usage + "' at " + face.where +
                      ": the files are not paired row by row");
    if (trim(fields[1]).empty()) {  // FER+ dropped this row: not a face
      count_dropped(split_of(splits, face.split), kNotAFace);
      continue;
    }
    add_ferplus_face(splits, face.split, face.pixels.data(), parse_counts(fields, 2, where), options, face.where);
  }
  if (splits.train.size() + splits.val.size() + splits.test.size() == 0)
    throw DataError(votes_csv + ": no face rows");
  return splits;
}

}  // namespace fer
