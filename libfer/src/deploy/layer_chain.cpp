#include "layer_chain.h"

#include <torch/script.h>
#include <torch/torch.h>

#include <map>
#include <sstream>
#include <stdexcept>
#include <type_traits>

#include "fer/common/io.h"

namespace fer::deploy {
namespace {

std::vector<int64_t> pair_of(const torch::ExpandingArray<2>& a) { return {(*a)[0], (*a)[1]}; }

at::Tensor cpu_copy(const at::Tensor& t) { return t.defined() ? t.detach().to(torch::kCPU, torch::kFloat32).clone() : t; }

ChainLayer layer(LayerKind kind, const std::string& name, const at::Tensor& weight = {}, const at::Tensor& bias = {}) {
  ChainLayer l;
  l.kind = kind;
  l.name = name;
  l.weight = cpu_copy(weight);
  l.bias = cpu_copy(bias);
  return l;
}

// Top, left, bottom, right. Unqualified visit: c10::visit (LibTorch 1.x's
// c10::variant) or std::visit (2.x's std::variant), found by argument lookup.
std::vector<int64_t> conv_pads(const torch::nn::detail::ConvNdOptions<2>& o) {
  return visit(
      [&](const auto& padding) -> std::vector<int64_t> {
        using Padding = std::decay_t<decltype(padding)>;
        if constexpr (std::is_same_v<Padding, torch::ExpandingArray<2>>) {
          return {(*padding)[0], (*padding)[1], (*padding)[0], (*padding)[1]};
        } else if constexpr (std::is_same_v<Padding, torch::enumtype::kValid>) {
          return {0, 0, 0, 0};
        } else {  // kSame: the total split as LibTorch does, the smaller half first
          std::vector<int64_t> before(2), after(2);
          for (int i = 0; i < 2; ++i) {
            const int64_t total = (*o.dilation())[i] * ((*o.kernel_size())[i] - 1);
            before[i] = total / 2;
            after[i] = total - before[i];
          }
          return {before[0], before[1], after[0], after[1]};
        }
      },
      o.padding());
}

std::invalid_argument unsupported(const std::string& name, const std::string& why) {
  return std::invalid_argument("cannot export layer '" + name + "': " + why);
}

ChainLayer conv_layer(const std::string& name, torch::nn::Conv2dImpl& conv) {
  const auto& o = conv.options;
  if (torch::enumtype::get_enum_name(o.padding_mode()) != "kZeros") throw unsupported(name, "padding mode is not zeros");
  if (o.transposed()) throw unsupported(name, "transposed convolution");
  ChainLayer l = layer(LayerKind::conv, name, conv.weight, conv.bias);
  l.kernel = pair_of(o.kernel_size());
  l.stride = pair_of(o.stride());
  l.dilation = pair_of(o.dilation());
  l.pads = conv_pads(o);
  l.groups = o.groups();
  return l;
}

template <typename BatchNorm>
ChainLayer batch_norm_layer(const std::string& name, BatchNorm& bn) {
  if (!bn.options.affine() || !bn.options.track_running_stats())
    throw unsupported(name, "batch norm without affine parameters or running statistics");
  ChainLayer l = layer(LayerKind::batch_norm, name, bn.weight, bn.bias);
  l.mean = cpu_copy(bn.running_mean);
  l.var = cpu_copy(bn.running_var);
  l.eps = bn.options.eps();
  return l;
}

ChainLayer max_pool_layer(const std::string& name, torch::nn::MaxPool2dImpl& pool) {
  const auto& o = pool.options;
  if (o.ceil_mode()) throw unsupported(name, "ceil_mode pooling");
  ChainLayer l = layer(LayerKind::max_pool, name);
  l.kernel = pair_of(o.kernel_size());
  l.stride = pair_of(o.stride());
  l.dilation = pair_of(o.dilation());
  if (l.dilation != std::vector<int64_t>{1, 1}) throw unsupported(name, "dilated pooling");
  const auto pad = pair_of(o.padding());
  l.pads = {pad[0], pad[1], pad[0], pad[1]};
  return l;
}

// Appends `module`'s layer to `chain` (nothing for dropout).
void append_layer(std::vector<ChainLayer>& chain, const std::string& name, torch::nn::Module& module) {
  if (auto* conv = dynamic_cast<torch::nn::Conv2dImpl*>(&module)) {
    chain.push_back(conv_layer(name, *conv));
  } else if (auto* bn2 = dynamic_cast<torch::nn::BatchNorm2dImpl*>(&module)) {
    chain.push_back(batch_norm_layer(name, *bn2));
  } else if (auto* bn1 = dynamic_cast<torch::nn::BatchNorm1dImpl*>(&module)) {
    chain.push_back(batch_norm_layer(name, *bn1));
  } else if (dynamic_cast<torch::nn::ReLUImpl*>(&module)) {
    chain.push_back(layer(LayerKind::relu, name));
  } else if (auto* pool = dynamic_cast<torch::nn::MaxPool2dImpl*>(&module)) {
    chain.push_back(max_pool_layer(name, *pool));
  } else if (dynamic_cast<torch::nn::DropoutImpl*>(&module)) {
    // the identity at inference
  } else if (auto* flatten = dynamic_cast<torch::nn::FlattenImpl*>(&module)) {
    if (flatten->options.start_dim() != 1 || flatten->options.end_dim() != -1)
      throw unsupported(name, "flatten other than from dimension 1 to the end");
    chain.push_back(layer(LayerKind::flatten, name));
  } else if (auto* linear = dynamic_cast<torch::nn::LinearImpl*>(&module)) {
    chain.push_back(layer(LayerKind::linear, name, linear->weight, linear->bias));
  } else {
    throw unsupported(name, "module type " + module.name() + " has no exporter");
  }
}

}  // namespace

std::vector<ChainLayer> layer_chain(ClassifierImpl& model) {
  const auto layers = model.sequential_layers();
  if (layers.empty())
    throw std::invalid_argument("cannot export a " + model.name() + ": it is not a chain of layers (no sequential_layers())");
  std::map<const torch::nn::Module*, std::string> names;
  for (const auto& child : model.named_children()) names[child.value().get()] = child.key();
  std::vector<ChainLayer> chain;
  torch::NoGradGuard no_grad;
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const auto it = names.find(layers[i].get());
    append_layer(chain, it != names.end() ? it->second : "layer" + std::to_string(i), *layers[i]);
  }
  return chain;
}

int64_t export_image_size(const LoadedCheckpoint& checkpoint, const ExportOptions& options) {
  return options.image_size > 0 ? options.image_size : checkpoint.meta.model.image_size;
}

int64_t crop_offset(const LoadedCheckpoint& checkpoint, const ExportOptions& options) {
  const int64_t size = checkpoint.meta.model.input_size, side = export_image_size(checkpoint, options);
  if (side < size)
    throw std::invalid_argument("export image_size " + std::to_string(side) + " is below the model's input_size " +
                                std::to_string(size));
  return (side - size) / 2;
}

static std::string input_description(const std::string& normalize, int64_t side) {
  const std::string scaled = "float pixels / 255 in [0,1]; centre-cropped to the model's input_size inside";
  if (parse_input_normalization(normalize) == InputNormalization::none) return scaled;
  return "each " + std::to_string(side) + "x" + std::to_string(side) +
         " uint8 face histogram-equalised first (OpenCV's equalizeHist; normalize: " + normalize + "), then " + scaled;
}

nlohmann::json export_metadata(const LoadedCheckpoint& checkpoint, const ExportOptions& options) {
  auto meta = checkpoint.meta.to_json();
  const int64_t side = export_image_size(checkpoint, options);
  meta["export"] = {{"input", kInputName},
                    {"input_shape", {"N", checkpoint.meta.model.in_channels, side, side}},
                    {"input_description", input_description(checkpoint.meta.model.normalize, side)},
                    {"output", export_output_name(options.output)},
                    {"output_shape", {"N", checkpoint.meta.model.num_classes}}};
  return meta;
}

std::string crop_expression(const LoadedCheckpoint& checkpoint, const ExportOptions& options, const std::string& input) {
  const int64_t offset = crop_offset(checkpoint, options), size = checkpoint.meta.model.input_size;
  if (size == export_image_size(checkpoint, options)) return input;
  const std::string range = std::to_string(offset) + ":" + std::to_string(offset + size);
  return input + "[:, :, " + range + ", " + range + "]";
}

std::string script_ints(const std::vector<int64_t>& values) {
  std::ostringstream s;
  s << "[";
  for (std::size_t i = 0; i < values.size(); ++i) s << (i ? ", " : "") << values[i];
  return s.str() + "]";
}

std::string script_real(double value) {
  std::ostringstream s;
  s.precision(17);
  s << value;
  const std::string text = s.str();
  // TorchScript reads "1" as an int: keep doubles recognisable.
  return text.find_first_of(".eEn") == std::string::npos ? text + ".0" : text;
}

std::string max_pool_statement(const ChainLayer& l) {
  return "x = torch.max_pool2d(x, " + script_ints(l.kernel) + ", " + script_ints(l.stride) + ", " +
         script_ints({l.pads[0], l.pads[1]}) + ", " + script_ints(l.dilation) + ", False)";
}

void save_script_module(const std::string& path, torch::jit::Module& module, const nlohmann::json& meta) {
  const torch::jit::ExtraFilesMap extra{{kExportMetadataFile, meta.dump(2)}};
  replace_file_atomically(path, [&](const std::string& tmp) {
    try {
      module.save(tmp, extra);
    } catch (const c10::Error& e) {
      throw std::runtime_error("cannot write '" + tmp + "': " + e.what_without_backtrace());
    }
  });
}

}  // namespace fer::deploy
