// A model seen as a function from images to class probabilities: what LIME and
// the faithfulness curves need, with no LibTorch in sight.
#pragma once

#include <functional>
#include <vector>

namespace fer {

// Images are float [n, h*w] row-major (one channel); returns [n, classes] scores.
using BatchPredictor = std::function<std::vector<float>(const std::vector<float>& images, int n)>;

}  // namespace fer
