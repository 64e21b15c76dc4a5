#include "fer/models/model.h"

#include <torch/torch.h>

#include <map>
#include <mutex>
#include <stdexcept>

namespace fer {

nlohmann::json ModelOptions::to_json() const {
  return {{"architecture", architecture}, {"in_channels", in_channels},   {"image_size", image_size},   {"input_size", input_size},
          {"num_classes", num_classes},   {"filters", filters},           {"dense_units", dense_units},
          {"conv_dropout", conv_dropout}, {"dense_dropout", dense_dropout}, {"normalize", normalize}};
}

ModelOptions ModelOptions::from_json(const nlohmann::json& j) {
  ModelOptions o;
  auto need = [&](const char* key) -> const nlohmann::json& {
    if (!j.contains(key)) throw std::runtime_error(std::string("model options lack the key '") + key + "'");
    return j.at(key);
  };
  o.architecture = need("architecture").get<std::string>();
  o.in_channels = need("in_channels").get<int64_t>();
  o.input_size = need("input_size").get<int64_t>();
  o.image_size = j.value("image_size", int64_t{48});
  if (o.input_size > o.image_size)
    throw std::runtime_error("model options: input_size " + std::to_string(o.input_size) + " exceeds image_size " +
                             std::to_string(o.image_size));
  o.num_classes = need("num_classes").get<int64_t>();
  o.filters = need("filters").get<std::vector<int64_t>>();
  o.dense_units = need("dense_units").get<int64_t>();
  o.conv_dropout = need("conv_dropout").get<double>();
  o.dense_dropout = need("dense_dropout").get<double>();
  o.normalize = j.value("normalize", std::string("none"));
  try {
    parse_input_normalization(o.normalize);
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(std::string("model options: normalize: ") + e.what());
  }
  return o;
}

namespace {

// The side of the feature map after one 2x2 pool per block (rounding down:
// 44 -> 22 -> 11 -> 5). Throws std::invalid_argument when nothing is left.
int64_t pooled_side(const ModelOptions& o, const char* architecture) {
  if (o.filters.empty()) throw std::invalid_argument(std::string(architecture) + ": filters must not be empty");
  int64_t side = o.input_size;
  for (std::size_t b = 0; b < o.filters.size(); ++b) side /= 2;
  if (side < 1)
    throw std::invalid_argument(std::string(architecture) + ": input_size " + std::to_string(o.input_size) +
                                " is too small for " + std::to_string(o.filters.size()) + " blocks (one 2x2 pool each)");
  return side;
}

}  // namespace

torch::Tensor SequentialClassifierImpl::forward(torch::Tensor x) { return forward_layers(std::move(x), 0, steps_.size()); }

torch::Tensor SequentialClassifierImpl::forward_layers(torch::Tensor x, std::size_t begin, std::size_t end) {
  if (begin > end || end > steps_.size())
    throw std::out_of_range("forward_layers: [" + std::to_string(begin) + ", " + std::to_string(end) + ") of " +
                            std::to_string(steps_.size()) + " layers");
  for (std::size_t i = begin; i < end; ++i) x = steps_[i](x);
  return x;
}

void SequentialClassifierImpl::set_step(std::size_t index, std::function<torch::Tensor(torch::Tensor)> step) {
  steps_.at(index) = std::move(step);
}

PaperCnnImpl::PaperCnnImpl(const ModelOptions& o) {
  namespace nn = torch::nn;
  const int64_t side = pooled_side(o, "paper_cnn");
  int64_t channels = o.in_channels;
  for (size_t b = 0; b < o.filters.size(); ++b) {
    const std::string block = "block" + std::to_string(b + 1);
    for (int i = 1; i <= 2; ++i) {
      const std::string s = "_" + std::to_string(i);
      add(block + "_conv" + s, nn::Conv2d(nn::Conv2dOptions(channels, o.filters[b], 3).padding(1)));
      add(block + "_relu" + s, nn::ReLU());
      add(block + "_bn" + s, nn::BatchNorm2d(o.filters[b]));
      channels = o.filters[b];
    }
    add(block + "_pool", nn::MaxPool2d(nn::MaxPool2dOptions(2)));
    add(block + "_dropout", nn::Dropout(o.conv_dropout));
  }
  add("flatten", nn::Flatten());
  add("fc1", nn::Linear(channels * side * side, o.dense_units));
  add("fc1_relu", nn::ReLU());
  add("fc1_bn", nn::BatchNorm1d(o.dense_units));
  add("fc1_dropout", nn::Dropout(o.dense_dropout));
  add("fc2", nn::Linear(o.dense_units, o.num_classes));
}

VggFerImpl::VggFerImpl(const ModelOptions& o) {
  namespace nn = torch::nn;
  const int64_t side = pooled_side(o, "vgg_fer");
  int64_t channels = o.in_channels;
  for (size_t b = 0; b < o.filters.size(); ++b) {
    const std::string stage = "stage" + std::to_string(b + 1);
    for (int i = 1; i <= 2; ++i) {
      const std::string s = "_" + std::to_string(i);
      add(stage + "_conv" + s, nn::Conv2d(nn::Conv2dOptions(channels, o.filters[b], 3).padding(1)));
      add(stage + "_bn" + s, nn::BatchNorm2d(o.filters[b]));
      add(stage + "_relu" + s, nn::ReLU());
      channels = o.filters[b];
    }
    add(stage + "_pool", nn::MaxPool2d(nn::MaxPool2dOptions(2)));
    if (o.conv_dropout > 0) add(stage + "_dropout", nn::Dropout(o.conv_dropout));
  }
  add("flatten", nn::Flatten());
  int64_t features = channels * side * side;
  for (int i = 1; i <= 2; ++i) {
    const std::string fc = "fc" + std::to_string(i);
    add(fc, nn::Linear(features, o.dense_units));
    add(fc + "_relu", nn::ReLU());
    add(fc + "_dropout", nn::Dropout(o.dense_dropout));
    features = o.dense_units;
  }
  add("fc3", nn::Linear(features, o.num_classes));
}

namespace {
std::map<std::string, ModelFactory>& registry() {
  static std::map<std::string, ModelFactory> r = {
      {"paper_cnn", [](const ModelOptions& o) -> Classifier { return PaperCnn(o).ptr(); }},
      {"vgg_fer", [](const ModelOptions& o) -> Classifier { return VggFer(o).ptr(); }},
  };
  return r;
}
std::mutex& registry_mutex() {
  static std::mutex m;
  return m;
}
}  // namespace

void register_architecture(const std::string& name, ModelFactory factory) {
  std::lock_guard<std::mutex> lock(registry_mutex());
  if (!registry().emplace(name, std::move(factory)).second)
    throw std::invalid_argument("architecture '" + name + "' is already registered");
}

std::vector<std::string> architecture_names() {
  std::lock_guard<std::mutex> lock(registry_mutex());
  std::vector<std::string> names;
  for (const auto& [name, _] : registry()) names.push_back(name);
  return names;
}

Classifier make_model(const ModelOptions& options) {
  ModelFactory factory;
  {
    std::lock_guard<std::mutex> lock(registry_mutex());
    const auto it = registry().find(options.architecture);
    if (it != registry().end()) factory = it->second;
  }
  if (!factory) {
    std::string known;
    for (const auto& n : architecture_names()) known += (known.empty() ? "" : ", ") + n;
    throw std::invalid_argument("unknown architecture '" + options.architecture + "' (known: " + known + ")");
  }
  Classifier model = factory(options);
  model->set_input_normalization(parse_input_normalization(options.normalize));
  return model;
}

int64_t count_parameters(const torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& p : module.parameters()) n += p.numel();
  return n;
}

}  // namespace fer
