// Image files written with checked calls (explanation panels, live crops).
#pragma once

#include <opencv2/core/mat.hpp>

#include <string>

namespace fer {

// Writes `image` to `path` in the format its extension names (.png, .jpg, ...):
// encoded in memory, then written with checked calls. Throws
// std::runtime_error naming the file and the cause ("No space left on
// device"), where cv::imwrite only returns false; an extension OpenCV cannot
// encode is an error naming it.
void write_image_file(const std::string& path, const cv::Mat& image);

}  // namespace fer
