// Classifier architectures, chosen by name from a registry.
//
//   fer::ModelOptions opts;                      // paper_cnn defaults
//   fer::Classifier net = fer::make_model(opts);
//   torch::Tensor logits = net->forward(x);      // x: [B,1,48,48] float in [0,1]
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "fer/data/input_normalization.h"

namespace fer {

// Everything needed to rebuild an architecture; stored in every checkpoint.
struct ModelOptions {
  std::string architecture = "paper_cnn";
  int64_t in_channels = 1;
  int64_t image_size = 48;  // the side of the faces it is fed (data.image_size)
  int64_t input_size = 48;  // the side it sees: the centre input_size crop of them (augment.crop_size)
  int64_t num_classes = 7;
  std::vector<int64_t> filters{32, 64, 128};
  int64_t dense_units = 1024;
  double conv_dropout = 0.25;
  double dense_dropout = 0.5;
  std::string normalize = "none";  // the photometric normalisation of its inputs (data.normalize; fer/data/input_normalization.h)

  nlohmann::json to_json() const;
  // Throws std::runtime_error naming a missing key or an unknown normalize;
  // checkpoints older than normalize read as "none", older than image_size as 48.
  static ModelOptions from_json(const nlohmann::json& j);
};

// Base of every architecture: maps [B,C,H,W] images to [B,num_classes] logits.
class ClassifierImpl : public torch::nn::Module {
 public:
  virtual at::Tensor forward(at::Tensor x) = 0;
  // The layers in forward order when forward() is exactly their composition;
  // layer-walking explainers (DeepSHAP) need it. Empty: not sequential.
  virtual std::vector<std::shared_ptr<torch::nn::Module>> sequential_layers() const { return {}; }

  // What every input gets before forward() (ModelOptions::normalize; make_model
  // and load_checkpoint set it): normalize_input(x, input_normalization()).
  InputNormalization input_normalization() const { return input_normalization_; }
  void set_input_normalization(InputNormalization mode) { input_normalization_ = mode; }

 private:
  InputNormalization input_normalization_ = InputNormalization::none;
};
using Classifier = std::shared_ptr<ClassifierImpl>;

// A classifier that is a plain chain of registered modules: forward() is their
// composition, and sequential_layers() lists them (DeepSHAP walks it).
class SequentialClassifierImpl : public ClassifierImpl {
 public:
  at::Tensor forward(at::Tensor x) override;
  std::vector<std::shared_ptr<torch::nn::Module>> sequential_layers() const override { return layers_; }
  // Replaces how layer `index` is applied in forward(); the module stays
  // registered and listed (SyncBatchNorm swaps in a cross-rank batch norm this way).
  // Throws std::out_of_range for an index past the last layer.
  void set_step(std::size_t index, std::function<at::Tensor(at::Tensor)> step);
  // Layers [begin, end) applied to x: forward() is forward_layers(x, 0, size),
  // and split at any layer (Grad-CAM reads and differentiates a layer's output).
  at::Tensor forward_layers(at::Tensor x, std::size_t begin, std::size_t end);
  // The layers' registered names, in forward order ("block3_conv_2", "fc2").
  const std::vector<std::string>& layer_names() const { return names_; }

 protected:
  // Registers `module` under `name` and appends it to the chain.
  template <typename ModuleHolder>
  void add(const std::string& name, ModuleHolder module) {
    register_module(name, module);
    names_.push_back(name);
    layers_.push_back(module.ptr());
    steps_.push_back([m = module.ptr()](at::Tensor x) { return m->forward(x); });
  }

 private:
  std::vector<std::string> names_;
  std::vector<std::shared_ptr<torch::nn::Module>> layers_;
  std::vector<std::function<at::Tensor(at::Tensor)>> steps_;
};

// The paper's CNN ("paper_cnn"). Per block b with f filters:
//   [Conv3x3(same) -> ReLU -> BatchNorm] x2 -> MaxPool2x2 -> Dropout(conv_dropout)
// then Flatten -> Linear(dense_units) -> ReLU -> BatchNorm1d -> Dropout -> Linear(num_classes).
// Each activation/pooling layer is its own registered module (explainers hook them).
class PaperCnnImpl : public SequentialClassifierImpl {
 public:
  explicit PaperCnnImpl(const ModelOptions& options);
};
TORCH_MODULE(PaperCnn);

// A VGG-style network after Khaireddin & Chen (2021), 73.28% on FER-2013 from
// scratch ("vgg_fer"). Per stage s with f filters:
//   [Conv3x3(same) -> BatchNorm -> ReLU] x2 -> MaxPool2x2 (-> Dropout(conv_dropout) when > 0)
// then Flatten -> [Linear(dense_units) -> ReLU -> Dropout(dense_dropout)] x2 -> Linear(num_classes).
// Their configuration: filters {64, 128, 256, 512}, dense_units 4096,
// dense_dropout 0.2, 40x40 crops (input_size 40): 2x2x512 features.
class VggFerImpl : public SequentialClassifierImpl {
 public:
  explicit VggFerImpl(const ModelOptions& options);
};
TORCH_MODULE(VggFer);

using ModelFactory = std::function<Classifier(const ModelOptions&)>;

// Adds an architecture; throws std::invalid_argument if the name is taken.
void register_architecture(const std::string& name, ModelFactory factory);
std::vector<std::string> architecture_names();

// Builds `options.architecture`; throws std::invalid_argument naming the
// unknown architecture and the known ones.
Classifier make_model(const ModelOptions& options);

int64_t count_parameters(const torch::nn::Module& module);

}  // namespace fer
