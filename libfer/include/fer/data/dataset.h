// FER-2013 loading: the Kaggle CSV (plain or gzipped) and image folders.
// Images are kept as 48x48 uint8 grayscale in one contiguous buffer.
#pragma once

#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "fer/common/emotions.h"
#include "fer/common/io.h"  // DataError

namespace fer {

constexpr int kImageSize = 48;
constexpr int kImagePixels = kImageSize * kImageSize;

struct Dataset {
  std::vector<std::uint8_t> pixels;  // size() * kImagePixels, row-major per image
  std::vector<std::int64_t> labels;  // 0..6
  std::vector<std::string> sources;  // "file:line" for CSV rows, the path for image files
  // Full photos (load_image_folder_with_faces, fer/faces/faces.h) in which no face
  // was found: listed, never dropped silently. Empty for other sources.
  std::vector<std::string> no_face;

  std::size_t size() const { return labels.size(); }
  const std::uint8_t* image(std::size_t i) const { return pixels.data() + i * kImagePixels; }
  void add(const std::uint8_t* image, std::int64_t label, std::string source);
  // Keeps the first n images (no-op when n == 0 or n >= size()).
  void truncate(std::size_t n);
};

struct DatasetSplits {
  Dataset train, val, test;
};

enum class SplitName { train, val, test };
SplitName parse_split_name(const std::string& name);  // train | val | test; throws DataError
const Dataset& split_of(const DatasetSplits& splits, SplitName name);
Dataset& split_of(DatasetSplits& splits, SplitName name);

// Kaggle CSV `emotion,pixels,Usage` (header required, .gz read transparently).
// Training -> train, PublicTest -> val, PrivateTest -> test.
// Throws DataError naming file:line for a malformed row, a wrong pixel count,
// an out-of-range pixel or label, or an unknown Usage.
DatasetSplits load_fer2013_csv(const std::string& path);

// <root>/<split>/<class>/*.{png,jpg,jpeg,bmp,tiff}; split folders train, val or
// validation, test; class folders matched case-insensitively to emotion_names().
// Throws DataError for unreadable or non-48x48 images and unknown folders.
DatasetSplits load_image_folder(const std::string& root);

// The files of such a folder with their split and label, in load order.
// Throws DataError for unknown split/class folders or when there is no split.
struct LabelledImageFile {
  SplitName split;
  int label;
  std::string path;
};
std::vector<LabelledImageFile> list_image_folder(const std::string& root);

// True for the image extensions the loaders read (png, jpg, jpeg, bmp, tif, tiff; any case).
bool is_image_file(const std::string& path);

// Reads one 48x48 face as grayscale. Throws DataError naming the file when it
// cannot be decoded or has another size.
std::vector<std::uint8_t> read_face_image(const std::string& path);

// Either form, chosen by what `path` is (directory -> image folder).
DatasetSplits load_dataset(const std::string& path);

// Pools every split and re-splits per class: train / val / test with the given
// fractions, shuffled by `seed` (the paper's stratified 80/10/10).
DatasetSplits stratified_split(const DatasetSplits& all, double val_fraction, double test_fraction,
                               std::uint64_t seed);

std::array<std::int64_t, kNumClasses> class_counts(const Dataset& data);

// "n=3589  angry 467 (13.0%)  disgust 56 (1.6%) ..." for logs.
std::string class_summary(const Dataset& data);

// Inverse-frequency weights n / (k * n_c) (scikit-learn's "balanced");
// a class with no images gets weight 0.
std::vector<float> inverse_frequency_weights(const Dataset& data);

}  // namespace fer
