// FER+ (Barsoum et al. 2016, arXiv 1608.01041): FER-2013's faces, each voted
// on by ten crowd annotators over ten columns — neutral, happiness, surprise,
// sadness, anger, disgust, fear, contempt, unknown, NF (not a face). Read in
// both forms users have:
//   - the folders FERPlus's generate_training_data.py writes: FER2013Train/,
//     FER2013Valid/, FER2013Test/, each PNGs and a header-less label.csv
//     (`name,"(x, y, w, h)",` ten counts);
//   - Kaggle's fer2013.csv with Microsoft's fer2013new.csv beside it, paired
//     row by row (`Usage,Image name,` ten counts; a blank name: not a face).
//
//   fer::DatasetSplits d = fer::load_ferplus_folders("ferplus", {});
//   d.train.votes_of(0);   // 8 vote counts: neutral happy surprise sad angry disgust fear contempt
//
// What is kept: faces whose NF column holds the most votes are dropped (and
// counted in Dataset::dropped), as are faces with no vote for a kept class.
// A face without a majority label stays in every split (majority -1, labelled
// with its most voted class): validation and accuracy count only the faces
// with one (fer::majority_faces; the standard FER+ "majority rule" figure),
// the agreement with the annotators counts them all.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "fer/data/dataset.h"

namespace fer {

constexpr int kFerplusColumns = 10;
using FerplusCounts = std::array<float, kFerplusColumns>;

// The ten columns, in the files' order.
const std::vector<std::string>& ferplus_columns();

struct FerplusOptions {
  bool keep_unknown = false;  // 'unknown' as a class of its own (after contempt)
  bool as_fer2013 = false;    // FER-2013's seven classes in its order; contempt's votes are dropped
};

// The classes FER+ gives under `options`, in label order. FER+'s names are
// spelled as FER-2013 spells them (happiness -> happy, sadness -> sad,
// anger -> angry), so a class is named alike in every model:
// neutral, happy, surprise, sad, angry, disgust, fear, contempt[, unknown].
std::vector<std::string> ferplus_class_names(const FerplusOptions& options);

// The class each column counts for under `options`, -1 for none (NF; unknown
// unless kept; contempt under as_fer2013).
std::array<int, kFerplusColumns> ferplus_column_classes(const FerplusOptions& options);

// Barsoum et al.'s majority rule on the ten counts: columns with a single vote
// are dropped as outliers; the most-voted column (the first on a tie) must hold
// more than half of the remaining votes. Returns that column, or -1.
int ferplus_majority_column(const FerplusCounts& counts);

// Whether the NF column holds more votes than every other column.
bool ferplus_not_a_face(const FerplusCounts& counts);

// A folder holding FER2013Train/label.csv, FER2013Valid/label.csv or FER2013Test/label.csv.
bool is_ferplus_folder(const std::string& path);

// The folder form. Splits present are read (FER2013Train -> train, FER2013Valid
// -> val, FER2013Test -> test). Throws DataError naming label.csv and its line
// for a malformed row (field count, a count that is not a number in 0..10, a
// name that is not a plain file name) and naming the PNG that cannot be read.
DatasetSplits load_ferplus_folders(const std::string& root, const FerplusOptions& options);

// The paired form: fer2013.csv (Fer2013CsvRows) and fer2013new.csv row by row.
// Throws DataError naming both lines where the Usage differs, and naming the
// file that runs out first when the row counts differ.
DatasetSplits load_ferplus_csv(const std::string& fer2013_csv, const std::string& votes_csv,
                               const FerplusOptions& options);

// Adds one face to its split under the rules above (the loaders' shared step).
void add_ferplus_face(DatasetSplits& splits, SplitName split, const std::uint8_t* pixels, const FerplusCounts& counts,
                      const FerplusOptions& options, const std::string& source);

}  // namespace fer
