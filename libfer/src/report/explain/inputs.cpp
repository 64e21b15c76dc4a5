// What an explanation batch explains: image files, folders, FER-2013 CSV rows;
// their labels by the model's classes.
#include <algorithm>
#include <filesystem>

#include "fer/faces/faces.h"
#include "fer/report/explain/batch.h"

namespace fer {
namespace fs = std::filesystem;

namespace {

bool is_csv(const fs::path& p) {
  std::string name = p.filename().string();
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return name.size() > 4 && (name.rfind(".csv") == name.size() - 4 || name.rfind(".csv.gz") == name.size() - 7);
}

ExplainItem read_image_item(const fs::path& path, const std::vector<std::string>& class_names,
                            const FaceDetector* detector, int side) {
  ExplainItem item;
  item.source = path.string();
  try {
    if (detector) {
      const auto face = detect_largest_face(*detector, item.source, side);
      if (!face.found) item.error = item.source + ": no face detected";
      item.pixels = face.pixels;
    } else {
      item.pixels = read_face_image(item.source, side);
    }
  } catch (const DataError& e) {
    item.error = e.what();
    return item;
  }
  item.label = class_index(class_names, path.parent_path().filename().string());
  return item;
}

}  // namespace

std::vector<ExplainItem> collect_explain_inputs(const std::vector<std::string>& inputs, const std::string& split,
                                                std::size_t limit, const std::vector<std::string>& class_names,
                                                const FaceDetector* detector, int side) {
  std::vector<ExplainItem> items;
  auto full = [&] { return limit > 0 && items.size() >= limit; };
  for (const auto& input : inputs) {
    if (full()) break;
    const fs::path path(input);
    if (!fs::exists(path)) throw DataError("input '" + input + "' does not exist");
    if (fs::is_directory(path)) {
      std::vector<fs::path> files;
      for (const auto& e : fs::recursive_directory_iterator(path))
        if (e.is_regular_file() && is_image_file(e.path().string())) files.push_back(e.path());
      std::sort(files.begin(), files.end());
      for (const auto& f : files) {
        if (full()) break;
        items.push_back(read_image_item(f, class_names, detector, side));
      }
    } else if (is_csv(path)) {
      auto splits = load_fer2013_csv(input);
      Dataset& d = split_of(splits, parse_split_name(split));
      if (d.size() == 0) throw DataError(input + ": the " + split + " split is empty");
      d.truncate(limit > 0 ? limit - items.size() : 0);
      resize_images(d, side);
      for (std::size_t i = 0; i < d.size() && !full(); ++i)
        items.push_back({d.sources[i], std::vector<std::uint8_t>(d.image(i), d.image(i) + d.image_pixels()),
                         class_index(class_names, d.class_names[d.labels[i]]), ""});
    } else {
      items.push_back(read_image_item(path, class_names, detector, side));
    }
  }
  return items;
}

}  // namespace fer
