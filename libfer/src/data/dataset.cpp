#include "fer/data/dataset.h"

#include "fer/data/ferplus.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <numeric>
#if FER_WITH_OPENCV
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#endif
#include <random>

#include "fer/common/io.h"

namespace fer {
namespace fs = std::filesystem;

int square_side(std::size_t values, const std::string& what) {
  const auto side = static_cast<std::size_t>(std::llround(std::sqrt(static_cast<double>(values))));
  if (side < 1 || side * side != values)
    throw std::invalid_argument(what + ": " + std::to_string(values) + " values are not a square image");
  return static_cast<int>(side);
}

void Dataset::add(const std::uint8_t* image, std::int64_t label, std::string source) {
  if (has_votes()) throw DataError(source + ": an image without votes added to a dataset with votes");
  pixels.insert(pixels.end(), image, image + image_pixels());
  labels.push_back(label);
  sources.push_back(std::move(source));
}

void Dataset::add_voted(const std::uint8_t* image, std::int64_t label, const float* image_votes,
                        std::int64_t majority_label, std::string source) {
  if (size() > 0 && !has_votes()) throw DataError(source + ": an image with votes added to a dataset without");
  pixels.insert(pixels.end(), image, image + image_pixels());
  labels.push_back(label);
  votes.insert(votes.end(), image_votes, image_votes + class_names.size());
  majority.push_back(majority_label);
  sources.push_back(std::move(source));
}

void Dataset::add_from(const Dataset& other, std::size_t i) {
  if (other.image_size != image_size)
    throw DataError(other.sources[i] + ": a " + std::to_string(other.image_size) + "x" + std::to_string(other.image_size) +
                    " image added to a dataset of " + std::to_string(image_size) + "x" + std::to_string(image_size));
  if (other.has_votes())
    add_voted(other.image(i), other.labels[i], other.votes_of(i), other.majority[i], other.sources[i]);
  else
    add(other.image(i), other.labels[i], other.sources[i]);
}

Dataset Dataset::empty_like() const {
  Dataset empty;
  empty.class_names = class_names;
  empty.image_size = image_size;
  return empty;
}

void Dataset::truncate(std::size_t n) {
  if (n == 0 || n >= size()) return;
  pixels.resize(n * image_pixels());
  labels.resize(n);
  sources.resize(n);
  if (has_votes()) {
    votes.resize(n * class_names.size());
    majority.resize(n);
  }
}

void set_class_names(DatasetSplits& splits, const std::vector<std::string>& names) {
  for (Dataset* d : {&splits.train, &splits.val, &splits.test}) d->class_names = names;
}

SplitName parse_split_name(const std::string& name) {
  if (name == "train") return SplitName::train;
  if (name == "val") return SplitName::val;
  if (name == "test") return SplitName::test;
  throw DataError("unknown split '" + name + "' (expected train, val or test)");
}

const Dataset& split_of(const DatasetSplits& splits, SplitName name) {
  switch (name) {
    case SplitName::train: return splits.train;
    case SplitName::val: return splits.val;
    default: return splits.test;
  }
}

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

}  // namespace

bool is_image_file(const std::string& path) {
  const auto ext = lower(fs::path(path).extension().string());
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp" || ext == ".tif" || ext == ".tiff";
}

#if FER_WITH_OPENCV
cv::Mat read_image_file(const std::string& path, int imread_flags) {
  cv::Mat image;
  try {
    image = cv::imread(path, imread_flags);
  } catch (const cv::Exception& e) {  // OpenCV asserts on an oversized header instead of returning nothing
    if (e.err.find("CV_IO_MAX_IMAGE_PIXELS") != std::string::npos)
      throw DataError(path + ": image larger than OpenCV's limit of 2^30 pixels (OPENCV_IO_MAX_IMAGE_PIXELS); "
                             "not read");
    throw DataError(path + ": cannot decode image (OpenCV: " + e.err + ")");
  }
  if (image.empty()) throw DataError(path + ": cannot decode image");
  return image;
}
#endif

std::vector<std::uint8_t> read_face_image(const std::string& path, int side) {
#if !FER_WITH_OPENCV
  (void)side;
  throw DataError(path + ": reading images needs libfer built with OpenCV (FER_WITH_OPENCV=ON); use the FER-2013 CSV");
#else
  cv::Mat img = read_image_file(path, cv::IMREAD_GRAYSCALE);  // colour: OpenCV's luma (0.299 R + 0.587 G + 0.114 B)
  if (img.rows != side || img.cols != side) {
    // Area interpolation averages the pixels each output pixel covers: no aliasing when shrinking.
    cv::Mat resized;
    cv::resize(img, resized, cv::Size(side, side), 0, 0, cv::INTER_AREA);
    img = resized;
  }
  if (!img.isContinuous()) img = img.clone();
  return std::vector<std::uint8_t>(img.ptr<std::uint8_t>(), img.ptr<std::uint8_t>() + img.total());
#endif
}

void resize_images(Dataset& data, int side) {
  if (side < 1) throw std::invalid_argument("resize_images: side " + std::to_string(side) + " is not positive");
  if (side == data.image_size) return;
#if !FER_WITH_OPENCV
  throw DataError("resizing " + std::to_string(data.image_size) + "x" + std::to_string(data.image_size) + " images to " +
                  std::to_string(side) + "x" + std::to_string(side) + " needs libfer built with OpenCV (FER_WITH_OPENCV=ON)");
#else
  const int from = data.image_size;
  const int interpolation = side < from ? cv::INTER_AREA : cv::INTER_LINEAR;
  std::vector<std::uint8_t> resized(data.size() * static_cast<std::size_t>(side) * side);
  for (std::size_t i = 0; i < data.size(); ++i) {
    const cv::Mat src(from, from, CV_8U, const_cast<std::uint8_t*>(data.image(i)));
    cv::Mat dst(side, side, CV_8U, resized.data() + i * static_cast<std::size_t>(side) * side);
    cv::resize(src, dst, dst.size(), 0, 0, interpolation);
  }
  data.pixels = std::move(resized);
  data.image_size = side;
#endif
}

void resize_images(DatasetSplits& splits, int side) {
  for (Dataset* d : {&splits.train, &splits.val, &splits.test}) resize_images(*d, side);
}


Fer2013CsvRows::Fer2013CsvRows(const std::string& path) : reader_(path) {
  if (!reader_.next(header_)) throw DataError(path + ": empty file");
  for (int i = 0; i < static_cast<int>(header_.size()); ++i) {
    const auto name = lower(trim(header_[i]));
    if (name == "emotion") col_emotion_ = i;
    else if (name == "pixels") col_pixels_ = i;
    else if (name == "usage") col_usage_ = i;
  }
  if (col_emotion_ < 0 || col_pixels_ < 0)
    throw DataError(path + ":1: header must name the columns emotion and pixels (and Usage), got '" + csv_row(header_) + "'");
}

bool Fer2013CsvRows::next(Fer2013Row& row) {
  if (!reader_.next(fields_)) return false;
  const std::string where = reader_.where();
  if (fields_.size() != header_.size())
    throw DataError(where + ": expected " + std::to_string(header_.size()) + " fields, found " +
                    std::to_string(fields_.size()));
  const std::string label_text = trim(fields_[col_emotion_]);
  int label = -1;
  auto [lp, lerr] = std::from_chars(label_text.data(), label_text.data() + label_text.size(), label);
  if (lerr != std::errc() || lp != label_text.data() + label_text.size())
    throw DataError(where + ": emotion '" + label_text + "' is not an integer");
  if (label < 0 || label >= kNumClasses)
    throw DataError(where + ": emotion " + label_text + " out of range 0.." + std::to_string(kNumClasses - 1) +
                    " (FER-2013's " + emotion_name_list() + ")");

  row.pixels.resize(kImagePixels);
  const std::string& px = fields_[col_pixels_];
  const char* p = px.data();
  const char* end = p + px.size();
  int count = 0;
  while (p < end) {
    while (p < end && *p == ' ') ++p;
    if (p == end) break;
    int value = 0;
    auto [next, err] = std::from_chars(p, end, value);
    if (err != std::errc() || (next < end && *next != ' '))
      throw DataError(where + ": pixel " + std::to_string(count + 1) + " is not an integer");
    if (value < 0 || value > 255)
      throw DataError(where + ": pixel " + std::to_string(count + 1) + " = " + std::to_string(value) +
                      " out of range 0..255");
    if (count < kImagePixels) row.pixels[count] = static_cast<std::uint8_t>(value);
    ++count;
    p = next;
  }
  if (count != kImagePixels)
    throw DataError(where + ": expected " + std::to_string(kImagePixels) + " pixels (48x48), found " +
                    std::to_string(count));

  row.split = SplitName::train;
  row.usage.clear();
  if (col_usage_ >= 0) {
    row.usage = trim(fields_[col_usage_]);
    if (row.usage == "Training") row.split = SplitName::train;
    else if (row.usage == "PublicTest") row.split = SplitName::val;
    else if (row.usage == "PrivateTest") row.split = SplitName::test;
    else throw DataError(where + ": unknown Usage '" + row.usage + "' (expected Training, PublicTest or PrivateTest)");
  }
  row.label = label;
  row.where = where;
  return true;
}

DatasetSplits load_fer2013_csv(const std::string& path) {
  Fer2013CsvRows rows(path);
  DatasetSplits splits;
  Fer2013Row row;
  while (rows.next(row)) split_of(splits, row.split).add(row.pixels.data(), row.label, row.where);
  if (splits.train.size() + splits.val.size() + splits.test.size() == 0)
    throw DataError(path + ": no data rows");
  return splits;
}

namespace {

// The class folders of every split folder, by split, sorted.
std::vector<std::pair<SplitName, std::vector<fs::path>>> class_folders(const std::string& root) {
  std::vector<fs::path> split_dirs;
  for (const auto& e : fs::directory_iterator(root))
    if (e.is_directory()) split_dirs.push_back(e.path());
  // Sorted traversal so that file order, and with it every seeded run, is stable.
  std::sort(split_dirs.begin(), split_dirs.end());
  std::vector<std::pair<SplitName, std::vector<fs::path>>> out;
  for (const auto& split_dir : split_dirs) {
    const auto split_name = lower(split_dir.filename().string());
    SplitName split;
    if (split_name == "train" || split_name == "training") split = SplitName::train;
    else if (split_name == "val" || split_name == "validation") split = SplitName::val;
    else if (split_name == "test") split = SplitName::test;
    else throw DataError(split_dir.string() + ": unknown split folder (expected train, val, validation or test)");
    std::vector<fs::path> class_dirs;
    for (const auto& e : fs::directory_iterator(split_dir))
      if (e.is_directory()) class_dirs.push_back(e.path());
    std::sort(class_dirs.begin(), class_dirs.end());
    out.push_back({split, std::move(class_dirs)});
  }
  return out;
}

// FER-2013's seven when every folder is one of them; else the folders' names, lower-cased and sorted.
std::vector<std::string> classes_of_folders(const std::vector<std::pair<SplitName, std::vector<fs::path>>>& splits) {
  std::vector<std::string> names;
  bool all_fer2013 = true;
  for (const auto& [split, dirs] : splits)
    for (const auto& dir : dirs) {
      const auto name = lower(dir.filename().string());
      all_fer2013 = all_fer2013 && emotion_index(name) >= 0;
      if (class_index(names, name) < 0) names.push_back(name);
    }
  if (all_fer2013) return emotion_names();
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

ImageFolderListing list_image_folder(const std::string& root, const std::vector<std::string>& classes) {
  if (!fs::is_directory(root)) throw DataError("'" + root + "' is not a directory");
  const auto splits = class_folders(root);
  if (splits.empty()) throw DataError(root + ": no train/val/test folders found");
  ImageFolderListing out;
  out.class_names = classes.empty() ? classes_of_folders(splits) : classes;
  if (out.class_names.empty()) throw DataError(root + ": no class folders found");
  for (const auto& [split, class_dirs] : splits)
    for (const auto& class_dir : class_dirs) {
      const int label = class_index(out.class_names, class_dir.filename().string());
      if (label < 0)
        throw DataError(class_dir.string() + ": unknown class folder (expected one of " + class_name_list(out.class_names) +
                        (classes.empty() ? "" : ": data.classes") + ")");
      std::vector<fs::path> files;
      for (const auto& e : fs::directory_iterator(class_dir))
        if (e.is_regular_file() && is_image_file(e.path().string())) files.push_back(e.path());
      std::sort(files.begin(), files.end());
      for (const auto& file : files) out.files.push_back({split, label, file.string()});
    }
  return out;
}

Dataset& split_of(DatasetSplits& splits, SplitName name) {
  return const_cast<Dataset&>(split_of(static_cast<const DatasetSplits&>(splits), name));
}

DatasetSplits load_image_folder(const std::string& root, const std::vector<std::string>& classes, int image_size) {
  const auto listing = list_image_folder(root, classes);
  DatasetSplits splits;
  set_class_names(splits, listing.class_names);
  for (Dataset* d : {&splits.train, &splits.val, &splits.test}) d->image_size = image_size;
  for (const auto& f : listing.files)
    split_of(splits, f.split).add(read_face_image(f.path, image_size).data(), f.label, f.path);
  return splits;
}

DatasetSplits load_dataset(const std::string& path, int image_size) {
  DataConfig data;
  data.path = path;
  data.image_size = image_size;
  return load_dataset(data);
}

DatasetSplits load_dataset(const DataConfig& data) {
  const FerplusOptions ferplus{data.ferplus_unknown, data.ferplus_as_fer2013};
  if (data.path.empty()) throw DataError("no dataset path given");
  if (!fs::exists(data.path)) throw DataError("dataset '" + data.path + "' does not exist");
  const bool folder = fs::is_directory(data.path), ferplus_folder = folder && is_ferplus_folder(data.path);
  if (!data.votes.empty() && folder)
    throw ConfigError("data.votes: '" + data.votes + "' pairs with a Kaggle fer2013.csv, but data.path '" + data.path +
                      "' is a folder" + (ferplus_folder ? " (FER+ folders carry their votes in label.csv)" : ""));
  if (!data.classes.empty() && (!folder || ferplus_folder))
    throw ConfigError("data.classes: sets the classes of an image folder; '" + data.path +
                      "' is not one (its classes come from the data)");
  if ((data.ferplus_unknown || data.ferplus_as_fer2013) && !ferplus_folder && data.votes.empty())
    throw ConfigError(std::string(data.ferplus_unknown ? "data.ferplus_unknown" : "data.ferplus_as_fer2013") +
                      ": applies to FER+ data (a FER+ folder, or data.votes), not to '" + data.path + "'");
  if (ferplus_folder || !data.votes.empty()) {
    DatasetSplits splits = ferplus_folder ? load_ferplus_folders(data.path, ferplus)
                                          : load_ferplus_csv(data.path, data.votes, ferplus);
    resize_images(splits, data.image_size);
    return splits;
  }
  DatasetSplits splits = folder ? load_image_folder(data.path, data.classes, data.image_size) : load_fer2013_csv(data.path);
  resize_images(splits, data.image_size);
  return splits;
}

DatasetSplits stratified_split(const DatasetSplits& all, double val_fraction, double test_fraction,
                               std::uint64_t seed) {
  std::vector<std::vector<std::pair<const Dataset*, std::size_t>>> by_class(all.train.class_names.size());
  for (const Dataset* d : {&all.train, &all.val, &all.test})
    for (std::size_t i = 0; i < d->size(); ++i) by_class[d->labels[i]].push_back({d, i});
  DatasetSplits out;
  set_class_names(out, all.train.class_names);
  for (Dataset* d : {&out.train, &out.val, &out.test}) d->image_size = all.train.image_size;
  std::mt19937_64 rng(seed);
  for (auto& items : by_class) {
    std::shuffle(items.begin(), items.end(), rng);
    const auto n = items.size();
    const auto n_val = static_cast<std::size_t>(std::llround(n * val_fraction));
    const auto n_test = static_cast<std::size_t>(std::llround(n * test_fraction));
    for (std::size_t k = 0; k < n; ++k) {
      const auto& [d, i] = items[k];
      Dataset& target = k < n_val ? out.val : (k < n_val + n_test ? out.test : out.train);
      target.add_from(*d, i);
    }
  }
  return out;
}

std::vector<std::int64_t> class_counts(const Dataset& data) {
  std::vector<std::int64_t> counts(data.class_names.size(), 0);
  for (auto label : data.labels) ++counts[label];
  return counts;
}

Dataset majority_faces(const Dataset& data) {
  if (!data.has_votes() || std::all_of(data.majority.begin(), data.majority.end(), [](auto m) { return m >= 0; }))
    return data;
  Dataset kept = data;
  kept.keep_if([&](std::size_t i) { return data.majority[i] >= 0; });
  return kept;
}

std::string class_summary(const Dataset& data) {
  const auto counts = class_counts(data);
  std::string out = "n=" + std::to_string(data.size());
  char share[32];
  for (int c = 0; c < data.num_classes(); ++c) {
    std::snprintf(share, sizeof share, " %lld (%.1f%%)", static_cast<long long>(counts[c]),
                  data.size() ? 100.0 * counts[c] / data.size() : 0.0);
    out += "  " + data.class_names[c] + share;
  }
  const auto without_majority = std::count(data.majority.begin(), data.majority.end(), -1);
  if (without_majority > 0) out += "; " + std::to_string(without_majority) + " without a majority label";
  for (const auto& [why, count] : data.dropped) out += "; left out: " + std::to_string(count) + " " + why;
  return out;
}

std::vector<float> inverse_frequency_weights(const Dataset& data) {
  const auto counts = class_counts(data);
  const int k = data.num_classes();
  std::vector<float> w(k, 0.f);
  for (int c = 0; c < k; ++c)
    if (counts[c] > 0) w[c] = static_cast<float>(double(data.size()) / (k * double(counts[c])));
  return w;
}

}  // namespace fer
