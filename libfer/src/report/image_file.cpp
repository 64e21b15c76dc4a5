#include "fer/report/image_file.h"

#include <filesystem>
#include <opencv2/imgcodecs.hpp>
#include <stdexcept>
#include <vector>

#include "fer/common/io.h"

namespace fer {

void write_image_file(const std::string& path, const cv::Mat& image) {
  const std::string extension = std::filesystem::path(path).extension().string();
  std::vector<uchar> bytes;
  bool encoded = false;
  try {
    encoded = !extension.empty() && cv::imencode(extension, image, bytes);
  } catch (const cv::Exception&) {  // OpenCV throws for an extension it has no encoder for
  }
  if (!encoded) throw std::runtime_error("cannot write '" + path + "': cannot encode a '" + extension + "' image");
  write_file_checked(path, std::string(bytes.begin(), bytes.end()));
}

}  // namespace fer
