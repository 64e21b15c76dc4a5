// Face datasets: FER-2013's Kaggle CSV (plain or gzipped), FER+'s vote files
// (fer/data/ferplus.h) and image folders with classes of their own. Images are
// kept as square uint8 grayscale (48x48 unless data.image_size says) in one
// contiguous buffer; the class list (names, in label order) travels with the data.
#pragma once

#include <array>
#include <utility>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "fer/common/emotions.h"
#include "fer/common/io.h"  // DataError
#include "fer/config/config.h"

namespace cv {
class Mat;
}

namespace fer {

// FER-2013's face side: its CSV's images, and the default data.image_size.
constexpr int kImageSize = 48;
constexpr int kImagePixels = kImageSize * kImageSize;

// The side of a square image (a face, a map) of `values` values. Throws
// std::invalid_argument naming `what` when `values` is 0 or not a square.
int square_side(std::size_t values, const std::string& what);

struct Dataset {
  std::vector<std::string> class_names = emotion_names();  // label order; FER-2013's seven unless the data says
  int image_size = kImageSize;       // every image's side
  std::vector<std::uint8_t> pixels;  // size() * image_pixels(), row-major per image
  std::vector<std::int64_t> labels;  // 0 .. num_classes() - 1
  std::vector<std::string> sources;  // "file:line" for CSV rows, the path for image files
  // Annotator votes (FER+), empty for single-label data: size() * num_classes()
  // counts, row-major per image, and each image's majority-rule label (-1: none;
  // fer/data/ferplus.h). `labels` then holds the majority label, or the most
  // voted class where there is none.
  std::vector<float> votes;
  std::vector<std::int64_t> majority;
  // Full photos (load_image_folder_with_faces, fer/faces/faces.h) in which no face
  // was found: listed, never dropped silently. Empty for other sources.
  std::vector<std::string> no_face;
  // Rows a loader left out, with why ("not a face (NF votes)": count), for logs.
  std::vector<std::pair<std::string, std::int64_t>> dropped;

  std::size_t size() const { return labels.size(); }
  int num_classes() const { return static_cast<int>(class_names.size()); }
  bool has_votes() const { return !votes.empty(); }
  std::size_t image_pixels() const { return static_cast<std::size_t>(image_size) * image_size; }
  const std::uint8_t* image(std::size_t i) const { return pixels.data() + i * image_pixels(); }
  const float* votes_of(std::size_t i) const { return votes.data() + i * class_names.size(); }
  void add(const std::uint8_t* image, std::int64_t label, std::string source);
  // An image with its votes (num_classes() counts) and majority label (-1: none).
  void add_voted(const std::uint8_t* image, std::int64_t label, const float* votes, std::int64_t majority,
                 std::string source);
  // Appends image i of `other` (same classes and image size) with its votes.
  void add_from(const Dataset& other, std::size_t i);
  // Keeps the first n images (no-op when n == 0 or n >= size()).
  void truncate(std::size_t n);
  // Keeps the images for which keep(i) is true, in order.
  template <typename Predicate>
  void keep_if(Predicate keep) {
    Dataset kept = empty_like();
    for (std::size_t i = 0; i < size(); ++i)
      if (keep(i)) kept.add_from(*this, i);
    kept.no_face = std::move(no_face);
    kept.dropped = std::move(dropped);
    *this = std::move(kept);
  }
  // No images, the same classes and image size.
  Dataset empty_like() const;
};

// The faces with a majority label (FER+'s majority rule: what accuracy and
// validation count), in order; every face of single-label data.
Dataset majority_faces(const Dataset& data);

struct DatasetSplits {
  Dataset train, val, test;
};

enum class SplitName { train, val, test };
SplitName parse_split_name(const std::string& name);  // train | val | test; throws DataError
const Dataset& split_of(const DatasetSplits& splits, SplitName name);
Dataset& split_of(DatasetSplits& splits, SplitName name);

// One row of a Kaggle FER-2013 CSV.
struct Fer2013Row {
  std::vector<std::uint8_t> pixels;  // kImagePixels
  int label = 0;
  SplitName split = SplitName::train;
  std::string usage;                 // as written: Training, PublicTest, PrivateTest ("" without the column)
  std::string where;                 // "file:line"
};

// Reads such a CSV row by row (load_fer2013_csv; FER+'s paired form).
class Fer2013CsvRows {
 public:
  explicit Fer2013CsvRows(const std::string& path);  // reads and checks the header; throws DataError
  // The next row; false at the end. Throws DataError naming file:line for a bad row.
  bool next(Fer2013Row& row);

 private:
  CsvReader reader_;
  std::vector<std::string> header_, fields_;
  int col_emotion_ = -1, col_pixels_ = -1, col_usage_ = -1;
};

// Kaggle CSV `emotion,pixels,Usage` (header required, .gz read transparently).
// Training -> train, PublicTest -> val, PrivateTest -> test.
// Throws DataError naming file:line for a malformed row, a wrong pixel count,
// an out-of-range pixel or label, or an unknown Usage.
DatasetSplits load_fer2013_csv(const std::string& path);

// <root>/<split>/<class>/*.{png,jpg,jpeg,bmp,tiff}; split folders train, val or
// validation, test. The classes: `classes` when given (class folders matched
// to it case-insensitively; another folder is an error naming it); else
// FER-2013's seven in their order when every class folder is one of them
// (case-insensitively); else the class folders' names over all splits,
// lower-cased and sorted.
// Images of any size are resized to image_size (read_face_image). Throws
// DataError for unreadable images and unknown folders.
DatasetSplits load_image_folder(const std::string& root, const std::vector<std::string>& classes = {},
                                int image_size = kImageSize);

// The files of such a folder with their split and label, in load order.
// Throws DataError for unknown split/class folders or when there is no split.
struct LabelledImageFile {
  SplitName split;
  int label;
  std::string path;
};
struct ImageFolderListing {
  std::vector<std::string> class_names;
  std::vector<LabelledImageFile> files;
};
ImageFolderListing list_image_folder(const std::string& root, const std::vector<std::string>& classes = {});

// True for the image extensions the loaders read (png, jpg, jpeg, bmp, tif, tiff; any case).
bool is_image_file(const std::string& path);

// Reads one face image of any size, grayscale or colour, as side x side
// grayscale (colour by OpenCV's luma; another size resized with area
// interpolation: a folder of RAF-DB's 100x100 or AffectNet's larger faces reads
// as it is). Throws DataError naming the file when it cannot be decoded.
std::vector<std::uint8_t> read_face_image(const std::string& path, int side = kImageSize);

// Every image of `data` resized to side x side (area interpolation when
// shrinking, bilinear when enlarging); a no-op at its own size. Requires side >= 1.
void resize_images(Dataset& data, int side);
void resize_images(DatasetSplits& splits, int side);

#if FER_WITH_OPENCV
// cv::imread (flags: cv::IMREAD_*) for every loader that reads image files
// (datasets, photos, explanation inputs, live image folders). Throws DataError
// naming the file when it cannot be decoded, and when it is larger than
// OpenCV's limit of 2^30 pixels (refused from its header, before any memory is
// taken; the environment variable OPENCV_IO_MAX_IMAGE_PIXELS moves the limit).
cv::Mat read_image_file(const std::string& path, int imread_flags);
#endif

// Any form, chosen by what `path` is: a folder with FER2013Train/ or
// FER2013Valid/ holding label.csv -> FER+ (fer/data/ferplus.h, default
// options); another folder -> image folder; a file -> FER-2013 CSV. Images at
// image_size (a model's: read_checkpoint_meta(path).model.image_size).
DatasetSplits load_dataset(const std::string& path, int image_size = kImageSize);

// The dataset a config's data section names: data.path in any form above,
// FER+ paired with data.votes when set, data.classes for image folders, the
// FER+ class options, its images at data.image_size. Throws DataError naming
// the file, ConfigError naming the key that does not apply (data.votes beside a
// folder, data.classes beside a CSV).
DatasetSplits load_dataset(const DataConfig& data);

// Gives every split of `splits` the class list `names`.
void set_class_names(DatasetSplits& splits, const std::vector<std::string>& names);

// Pools every split and re-splits per class: train / val / test with the given
// fractions, shuffled by `seed` (the paper's stratified 80/10/10).
DatasetSplits stratified_split(const DatasetSplits& all, double val_fraction, double test_fraction,
                               std::uint64_t seed);

// Images per class, num_classes() entries.
std::vector<std::int64_t> class_counts(const Dataset& data);

// "n=3589  angry 467 (13.0%)  disgust 56 (1.6%) ..." for logs.
std::string class_summary(const Dataset& data);

// Inverse-frequency weights n / (k * n_c) (scikit-learn's "balanced");
// a class with no images gets weight 0.
std::vector<float> inverse_frequency_weights(const Dataset& data);

}  // namespace fer
