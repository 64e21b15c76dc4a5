#include "fer/inference/inference.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "fer/common/emotions.h"
#include "fer/data/augment.h"
#include "fer/data/dataset.h"

namespace fer {

torch::Device resolve_device(const std::string& spec) {
  if (spec == "auto") return torch::cuda::is_available() ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
  torch::Device device(torch::kCPU);
  try {
    device = torch::Device(spec);
  } catch (const c10::Error&) {
    throw std::runtime_error("invalid device '" + spec + "' (expected auto, cpu, cuda or cuda:N)");
  }
  if (device.is_cuda()) {
    if (!torch::cuda::is_available())
      throw std::runtime_error("device '" + spec + "' requested but this LibTorch build sees no CUDA device");
    const auto count = static_cast<int64_t>(torch::cuda::device_count());
    if (device.has_index() && device.index() >= count)
      throw std::runtime_error("device '" + spec + "' requested but only " + std::to_string(count) +
                               " CUDA device(s) are present");
  }
  return device;
}

torch::Tensor images_tensor(const Dataset& data) {
  const auto n = static_cast<int64_t>(data.size());
  const int64_t side = data.image_size;
  if (n == 0) return torch::empty({0, side, side}, torch::kUInt8);
  return torch::from_blob(const_cast<std::uint8_t*>(data.pixels.data()), {n, side, side}, torch::kUInt8)
      .clone();
}

torch::Tensor labels_tensor(const Dataset& data) {
  return torch::tensor(data.labels, torch::kInt64);
}

const EnumNames<Tta>& tta_names() {
  static const EnumNames<Tta> names{"test-time augmentation",
                                    {{"none", Tta::none}, {"flip", Tta::flip}, {"tencrop", Tta::tencrop}},
                                    {{"false", Tta::none}, {"true", Tta::flip}}};
  return names;
}

Tta parse_tta(const std::string& name) { return tta_names().parse(name); }

std::string tta_name(Tta tta) { return tta_names().name(tta); }

std::vector<torch::Tensor> tta_views(const torch::Tensor& x, Tta tta, int64_t size, int64_t tencrop_padding) {
  if (tta != Tta::tencrop) {
    const auto centre = center_crop(x, size);
    if (tta == Tta::none) return {centre};
    return {centre, centre.flip({3})};
  }
  namespace F = torch::nn::functional;
  const auto source = size < x.size(3) ? x
                                       : F::pad(x, F::PadFuncOptions({tencrop_padding, tencrop_padding, tencrop_padding,
                                                                      tencrop_padding})
                                                       .mode(torch::kReplicate));
  const int64_t h = source.size(2), w = source.size(3);
  const int64_t corners[5][2] = {{0, 0}, {0, w - size}, {h - size, 0}, {h - size, w - size}, {(h - size) / 2, (w - size) / 2}};
  std::vector<torch::Tensor> views;
  for (const auto& c : corners) {
    const auto crop = source.narrow(2, c[0], size).narrow(3, c[1], size);
    views.push_back(crop);
    views.push_back(crop.flip({3}));
  }
  return views;
}

namespace {
// The softmax of each TTA view of one batch, [B,classes] float32 on `device`.
std::vector<torch::Tensor> batch_view_probabilities(ClassifierImpl& model, const torch::Tensor& x,
                                                    const torch::Device& device, const PredictOptions& o) {
  std::vector<torch::Tensor> probabilities;
  for (const auto& view : tta_views(x, o.tta, o.input_size)) {
    torch::Tensor logits;
    {
      AutocastScope autocast(device, o.precision);
      logits = model.forward(view.contiguous()).to(torch::kFloat32);
    }
    probabilities.push_back(torch::softmax(logits, 1));
  }
  return probabilities;
}

// Calls `per_batch(x)` with each batch of `model`'s inputs (normalised as it
// expects), advancing the progress bar.
template <typename PerBatch>
void for_each_batch(const ClassifierImpl& model, const torch::Tensor& images_u8, const torch::Device& device,
                    const PredictOptions& options, PerBatch per_batch) {
  TORCH_CHECK(images_u8.dim() == 3 && images_u8.scalar_type() == torch::kUInt8,
              "predict_probabilities expects uint8 images [N,H,W], got ", images_u8.sizes());
  TORCH_CHECK(options.batch_size > 0, "batch_size must be > 0");
  const int64_t n = images_u8.size(0);
  std::unique_ptr<ProgressSink> bar;
  if (options.progress) bar = options.progress(n, options.progress_label);
  for (int64_t start = 0; start < n; start += options.batch_size) {
    const int64_t end = std::min(n, start + options.batch_size);
    const auto idx = torch::arange(start, end, torch::kInt64).to(images_u8.device());
    per_batch(normalize_input(to_model_input(images_u8, idx, device), model.input_normalization()));
    if (bar) bar->advance(end - start, end - start);
  }
  if (bar) bar->finish();
}
}  // namespace

torch::Tensor predict_probabilities(ClassifierImpl& model, const torch::Tensor& images_u8, const torch::Device& device,
                                    const PredictOptions& options) {
  torch::NoGradGuard no_grad;
  model.eval();
  std::vector<torch::Tensor> chunks;
  for_each_batch(model, images_u8, device, options, [&](const torch::Tensor& x) {
    // The views' mean is taken on the device, batch by batch.
    const auto mean = mean_probabilities(batch_view_probabilities(model, x, device, options));
    chunks.push_back(mean.to(torch::kCPU, torch::kFloat32));
  });
  if (chunks.empty()) return torch::empty({0, 0}, torch::kFloat32);
  return torch::cat(chunks, 0);
}

std::vector<torch::Tensor> predict_view_probabilities(ClassifierImpl& model, const torch::Tensor& images_u8,
                                                      const torch::Device& device, const PredictOptions& options) {
  torch::NoGradGuard no_grad;
  model.eval();
  std::vector<std::vector<torch::Tensor>> chunks;  // [view][batch]
  for_each_batch(model, images_u8, device, options, [&](const torch::Tensor& x) {
    const auto views = batch_view_probabilities(model, x, device, options);
    chunks.resize(views.size());
    for (std::size_t v = 0; v < views.size(); ++v) chunks[v].push_back(views[v].to(torch::kCPU, torch::kFloat32));
  });
  std::vector<torch::Tensor> per_view;
  for (const auto& view : chunks) per_view.push_back(torch::cat(view, 0));
  return per_view;
}

torch::Tensor predict_ensemble_probabilities(const std::vector<LoadedCheckpoint>& members, const torch::Tensor& images_u8,
                                             const torch::Device& device, const PredictOptions& options) {
  if (members.empty()) throw std::invalid_argument("an ensemble needs at least one model");
  std::vector<torch::Tensor> probabilities;
  for (std::size_t m = 0; m < members.size(); ++m) {
    const auto& model = members[m].meta.model;
    if (images_u8.size(-1) != model.image_size)
      throw std::invalid_argument(fmt::format("model {} of the ensemble takes {}x{} faces, the images are {}x{}", m + 1,
                                              model.image_size, model.image_size, images_u8.size(-2), images_u8.size(-1)));
    PredictOptions o = options;
    o.input_size = model.input_size;
    if (options.progress) o.progress_label = options.progress_label + " [" + std::to_string(m + 1) + "/" +
                                             std::to_string(members.size()) + "]";
    probabilities.push_back(predict_probabilities(*members[m].model, images_u8, device, o));
  }
  return mean_probabilities(probabilities);
}

torch::Tensor mean_probabilities(const std::vector<torch::Tensor>& probabilities) {
  if (probabilities.empty()) throw std::invalid_argument("mean_probabilities: no probabilities to average");
  torch::Tensor sum = probabilities.front();
  for (std::size_t m = 1; m < probabilities.size(); ++m) {
    if (!probabilities[m].sizes().equals(sum.sizes()))
      throw std::invalid_argument("mean_probabilities: tensor " + std::to_string(m) + " has shape " +
                                  c10::str(probabilities[m].sizes()) + ", tensor 0 " + c10::str(sum.sizes()));
    sum = sum + probabilities[m];
  }
  return probabilities.size() == 1 ? sum : sum / static_cast<double>(probabilities.size());
}

BatchPredictor probability_predictor(ClassifierImpl& model, const torch::Device& device, Precision precision,
                                     int64_t input_size) {
  // Inputs follow the conv weights' layout (channels-last after use_channels_last).
  auto format = torch::MemoryFormat::Contiguous;
  for (const auto& p : model.parameters())  // (a one-channel kernel is contiguous both ways: look at them all)
    if (p.dim() == 4 && !p.is_contiguous() && p.is_contiguous(torch::MemoryFormat::ChannelsLast))
      format = torch::MemoryFormat::ChannelsLast;
  return [&model, device, precision, input_size, format](const std::vector<float>& images, int n) {
    torch::NoGradGuard no_grad;
    model.eval();
    if (n <= 0 || images.size() % static_cast<std::size_t>(n) != 0)
      throw std::invalid_argument(fmt::format("probability predictor: {} values are not {} images", images.size(), n));
    const int64_t side = square_side(images.size() / static_cast<std::size_t>(n), "probability predictor image");
    const auto x = center_crop(
        torch::from_blob(const_cast<float*>(images.data()), {n, 1, side, side}, torch::kFloat32).to(device), input_size);
    torch::Tensor logits;
    {
      AutocastScope autocast(device, precision);
      logits = model.forward(x.contiguous(format)).to(torch::kFloat32);
    }
    const auto p = torch::softmax(logits, 1).to(torch::kCPU).contiguous();
    return std::vector<float>(p.data_ptr<float>(), p.data_ptr<float>() + p.numel());
  };
}

EnsemblePrediction predict_checkpoints(const std::vector<std::string>& checkpoint_paths, const Dataset& data,
                                       const c10::Device& device, const PredictOptions& options) {
  if (checkpoint_paths.empty()) throw std::runtime_error("no checkpoint to evaluate");
  if (data.size() == 0) throw std::runtime_error("no images to predict");
  std::vector<LoadedCheckpoint> members;
  for (const auto& path : checkpoint_paths) {
    members.push_back(load_checkpoint(path, device));
    if (members.back().meta.class_names != members.front().meta.class_names)
      throw std::runtime_error("ensemble member '" + path + "' has other class names than '" +
                               checkpoint_paths.front() + "'");
  }
  const auto side = static_cast<int>(members.front().meta.model.image_size);
  Dataset resized;
  if (data.image_size != side) {  // faces of another size: the model's (image folders read at 48 by default)
    resized = data;
    resize_images(resized, side);
  }
  const auto& faces = data.image_size == side ? data : resized;
  const auto probs = predict_ensemble_probabilities(members, images_tensor(faces), device, options).contiguous();
  return {std::vector<float>(probs.data_ptr<float>(), probs.data_ptr<float>() + probs.numel()),
          members.front().meta.class_names};
}

std::vector<std::string> missing_classes(const EnsemblePrediction& prediction, const std::vector<std::string>& classes) {
  std::vector<std::string> missing;
  for (const auto& name : classes)
    if (std::find(prediction.class_names.begin(), prediction.class_names.end(), name) == prediction.class_names.end())
      missing.push_back(name);
  return missing;
}

EnsemblePrediction restrict_to_classes(const EnsemblePrediction& prediction, const std::vector<std::string>& classes) {
  const auto missing = missing_classes(prediction, classes);
  if (!missing.empty())
    throw std::invalid_argument("restrict_to_classes: the prediction has no class " + class_name_list(missing) +
                                " (its classes: " + class_name_list(prediction.class_names) + ")");
  if (prediction.class_names == classes) return prediction;
  const std::size_t from = prediction.class_names.size(), to = classes.size();
  if (from == 0 || prediction.probabilities.size() % from != 0)
    throw std::invalid_argument("restrict_to_classes: " + std::to_string(prediction.probabilities.size()) +
                                " probabilities for " + std::to_string(from) + " classes");
  std::vector<std::size_t> column;
  for (const auto& name : classes)
    column.push_back(static_cast<std::size_t>(
        std::find(prediction.class_names.begin(), prediction.class_names.end(), name) - prediction.class_names.begin()));
  EnsemblePrediction restricted{{}, classes};
  const std::size_t rows = prediction.probabilities.size() / from;
  restricted.probabilities.resize(rows * to);
  for (std::size_t r = 0; r < rows; ++r) {
    const float* in = prediction.probabilities.data() + r * from;
    float* out = restricted.probabilities.data() + r * to;
    double sum = 0;
    for (std::size_t c = 0; c < to; ++c) sum += out[c] = in[column[c]];
    for (std::size_t c = 0; c < to; ++c) out[c] = sum > 0 ? static_cast<float>(out[c] / sum) : 1.0f / to;
  }
  return restricted;
}

}  // namespace fer
