// What the export tests share: the shipped models and PublicTest faces.
#pragma once

#include <torch/torch.h>

#include "fer/data/dataset.h"
#include "fer/inference/inference.h"
#include "fer/models/checkpoint.h"
#include "test_util.h"

namespace fer_test {

// Two architectures and both input paths: paper_cnn at 48 px, vgg_fer at 40 px (centre crop in the graph).
inline const std::vector<std::string>& export_models() {
  static const std::vector<std::string> names{"fer2013_paper_cnn_long", "fer2013_vgg_fer_cosine"};
  return names;
}

inline fer::LoadedCheckpoint shipped_checkpoint(const std::string& name) {
  return fer::load_checkpoint((fs::path(source_dir()) / "experiments" / name / "best.pt").string(), torch::kCPU);
}

// The first `n` PublicTest faces as uint8 [n,48,48]; undefined when FER-2013 is absent.
inline torch::Tensor public_test_faces(int64_t n) {
  const std::string csv = real_fer2013();
  if (csv.empty()) return {};
  auto val = fer::load_dataset(csv).val;
  val.truncate(static_cast<std::size_t>(n));
  return fer::images_tensor(val);
}

// libfer's probabilities for the faces, at the model's own input size (centre crop).
inline torch::Tensor libfer_probabilities(const fer::LoadedCheckpoint& ckpt, const torch::Tensor& faces_u8) {
  fer::PredictOptions options;
  options.input_size = ckpt.meta.model.input_size;
  return fer::predict_probabilities(*ckpt.model, faces_u8, torch::kCPU, options);
}

// A small paper CNN (4 and 8 filters, 16 dense units) with random weights.
inline fer::LoadedCheckpoint random_paper_cnn(int64_t input_size = 48) {
  fer::LoadedCheckpoint c;
  c.meta.model.input_size = input_size;
  c.meta.model.filters = {4, 8};
  c.meta.model.dense_units = 16;
  c.meta.class_names = {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"};
  c.model = fer::make_model(c.meta.model);
  c.model->eval();
  return c;
}

// The exported graphs' input: [n,1,48,48] float pixels / 255.
inline torch::Tensor export_input(const torch::Tensor& faces_u8) {
  return faces_u8.unsqueeze(1).to(torch::kFloat32).div(255.0).contiguous();
}

}  // namespace fer_test
