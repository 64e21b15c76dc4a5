#include "fer/data/dataset.h"

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
#endif
#include <random>

namespace fer {
namespace fs = std::filesystem;

void Dataset::add(const std::uint8_t* image, std::int64_t label, std::string source) {
  pixels.insert(pixels.end(), image, image + kImagePixels);
  labels.push_back(label);
  sources.push_back(std::move(source));
}

void Dataset::truncate(std::size_t n) {
  if (n == 0 || n >= size()) return;
  pixels.resize(n * kImagePixels);
  labels.resize(n);
  sources.resize(n);
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

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t") - b + 1);
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

}  // namespace

bool is_image_file(const std::string& path) {
  const auto ext = lower(fs::path(path).extension().string());
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp" || ext == ".tif" || ext == ".tiff";
}

std::vector<std::uint8_t> read_face_image(const std::string& path) {
#if !FER_WITH_OPENCV
  throw DataError(path + ": reading images needs libfer built with OpenCV (FER_WITH_OPENCV=ON); use the FER-2013 CSV");
#else
  cv::Mat img = cv::imread(path, cv::IMREAD_GRAYSCALE);
  if (img.empty()) throw DataError(path + ": cannot decode image");
  if (img.rows != kImageSize || img.cols != kImageSize)
    throw DataError(path + ": image is " + std::to_string(img.cols) + "x" + std::to_string(img.rows) +
                    ", expected 48x48");
  if (!img.isContinuous()) img = img.clone();
  return std::vector<std::uint8_t>(img.ptr<std::uint8_t>(), img.ptr<std::uint8_t>() + kImagePixels);
#endif
}


DatasetSplits load_fer2013_csv(const std::string& path) {
  CsvReader reader(path);
  std::vector<std::string> header, fields;
  if (!reader.next(header)) throw DataError(path + ": empty file");
  int col_emotion = -1, col_pixels = -1, col_usage = -1;
  for (int i = 0; i < static_cast<int>(header.size()); ++i) {
    const auto name = lower(trim(header[i]));
    if (name == "emotion") col_emotion = i;
    else if (name == "pixels") col_pixels = i;
    else if (name == "usage") col_usage = i;
  }
  if (col_emotion < 0 || col_pixels < 0)
    throw DataError(path + ":1: header must name the columns emotion and pixels (and Usage), got '" + csv_row(header) + "'");

  DatasetSplits splits;
  std::vector<std::uint8_t> image(kImagePixels);
  while (reader.next(fields)) {
    const std::string where = reader.where();
    if (fields.size() != header.size())
      throw DataError(where + ": expected " + std::to_string(header.size()) + " fields, found " +
                      std::to_string(fields.size()));
    const std::string label_text = trim(fields[col_emotion]);
    int label = -1;
    auto [lp, lerr] = std::from_chars(label_text.data(), label_text.data() + label_text.size(), label);
    if (lerr != std::errc() || lp != label_text.data() + label_text.size())
      throw DataError(where + ": emotion '" + label_text + "' is not an integer");
    if (label < 0 || label >= kNumClasses)
      throw DataError(where + ": emotion " + label_text + " out of range 0..6");

    const std::string& px = fields[col_pixels];
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
      if (count < kImagePixels) image[count] = static_cast<std::uint8_t>(value);
      ++count;
      p = next;
    }
    if (count != kImagePixels)
      throw DataError(where + ": expected " + std::to_string(kImagePixels) + " pixels (48x48), found " +
                      std::to_string(count));

    Dataset* target = &splits.train;
    if (col_usage >= 0) {
      const std::string usage = trim(fields[col_usage]);
      if (usage == "Training") target = &splits.train;
      else if (usage == "PublicTest") target = &splits.val;
      else if (usage == "PrivateTest") target = &splits.test;
      else throw DataError(where + ": unknown Usage '" + usage + "' (expected Training, PublicTest or PrivateTest)");
    }
    target->add(image.data(), label, where);
  }
  if (splits.train.size() + splits.val.size() + splits.test.size() == 0)
    throw DataError(path + ": no data rows");
  return splits;
}

std::vector<LabelledImageFile> list_image_folder(const std::string& root) {
  if (!fs::is_directory(root)) throw DataError("'" + root + "' is not a directory");
  std::vector<LabelledImageFile> out;
  bool any_split = false;
  // Sorted traversal so that file order, and with it every seeded run, is stable.
  std::vector<fs::path> split_dirs;
  for (const auto& e : fs::directory_iterator(root))
    if (e.is_directory()) split_dirs.push_back(e.path());
  std::sort(split_dirs.begin(), split_dirs.end());
  for (const auto& split_dir : split_dirs) {
    const auto split_name = lower(split_dir.filename().string());
    SplitName split;
    if (split_name == "train" || split_name == "training") split = SplitName::train;
    else if (split_name == "val" || split_name == "validation") split = SplitName::val;
    else if (split_name == "test") split = SplitName::test;
    else throw DataError(split_dir.string() + ": unknown split folder (expected train, val, validation or test)");
    any_split = true;
    std::vector<fs::path> class_dirs;
    for (const auto& e : fs::directory_iterator(split_dir))
      if (e.is_directory()) class_dirs.push_back(e.path());
    std::sort(class_dirs.begin(), class_dirs.end());
    for (const auto& class_dir : class_dirs) {
      const int label = emotion_index(class_dir.filename().string());
      if (label < 0)
        throw DataError(class_dir.string() + ": unknown class folder (expected one of " + emotion_name_list() + ")");
      std::vector<fs::path> files;
      for (const auto& e : fs::directory_iterator(class_dir))
        if (e.is_regular_file() && is_image_file(e.path().string())) files.push_back(e.path());
      std::sort(files.begin(), files.end());
      for (const auto& file : files) out.push_back({split, label, file.string()});
    }
  }
  if (!any_split) throw DataError(root + ": no train/val/test folders found");
  return out;
}

Dataset& split_of(DatasetSplits& splits, SplitName name) {
  return const_cast<Dataset&>(split_of(static_cast<const DatasetSplits&>(splits), name));
}

DatasetSplits load_image_folder(const std::string& root) {
  DatasetSplits splits;
  for (const auto& f : list_image_folder(root))
    split_of(splits, f.split).add(read_face_image(f.path).data(), f.label, f.path);
  return splits;
}

DatasetSplits load_dataset(const std::string& path) {
  if (path.empty()) throw DataError("no dataset path given");
  if (!fs::exists(path)) throw DataError("dataset '" + path + "' does not exist");
  return fs::is_directory(path) ? load_image_folder(path) : load_fer2013_csv(path);
}

DatasetSplits stratified_split(const DatasetSplits& all, double val_fraction, double test_fraction,
                               std::uint64_t seed) {
  std::array<std::vector<std::pair<const Dataset*, std::size_t>>, kNumClasses> by_class;
  for (const Dataset* d : {&all.train, &all.val, &all.test})
    for (std::size_t i = 0; i < d->size(); ++i) by_class[d->labels[i]].push_back({d, i});
  DatasetSplits out;
  std::mt19937_64 rng(seed);
  for (auto& items : by_class) {
    std::shuffle(items.begin(), items.end(), rng);
    const auto n = items.size();
    const auto n_val = static_cast<std::size_t>(std::llround(n * val_fraction));
    const auto n_test = static_cast<std::size_t>(std::llround(n * test_fraction));
    for (std::size_t k = 0; k < n; ++k) {
      const auto& [d, i] = items[k];
      Dataset& target = k < n_val ? out.val : (k < n_val + n_test ? out.test : out.train);
      target.add(d->image(i), d->labels[i], d->sources[i]);
    }
  }
  return out;
}

std::array<std::int64_t, kNumClasses> class_counts(const Dataset& data) {
  std::array<std::int64_t, kNumClasses> counts{};
  for (auto label : data.labels) ++counts[label];
  return counts;
}

std::string class_summary(const Dataset& data) {
  const auto counts = class_counts(data);
  std::string out = "n=" + std::to_string(data.size());
  char buf[64];
  for (int c = 0; c < kNumClasses; ++c) {
    std::snprintf(buf, sizeof buf, "  %s %lld (%.1f%%)", emotion_names()[c].c_str(), static_cast<long long>(counts[c]),
                  data.size() ? 100.0 * counts[c] / data.size() : 0.0);
    out += buf;
  }
  return out;
}

std::vector<float> inverse_frequency_weights(const Dataset& data) {
  const auto counts = class_counts(data);
  std::vector<float> w(kNumClasses, 0.f);
  for (int c = 0; c < kNumClasses; ++c)
    if (counts[c] > 0) w[c] = static_cast<float>(double(data.size()) / (kNumClasses * double(counts[c])));
  return w;
}

}  // namespace fer
