// A TorchScript module generated as source code from the layer chain and
// compiled by LibTorch (Module::define): the result holds its own forward(),
// so it runs without libfer in Python and C++ alike.
#include <torch/script.h>

#include <sstream>
#include <stdexcept>

#include "fer/common/io.h"
#include "fer/deploy/export.h"
#include "layer_chain.h"

namespace fer {
namespace {

using deploy::ChainLayer;
using deploy::LayerKind;

std::string list(const std::vector<int64_t>& v) {
  std::ostringstream s;
  s << "[";
  for (std::size_t i = 0; i < v.size(); ++i) s << (i ? ", " : "") << v[i];
  return s.str() + "]";
}

// Registers the layer's tensors on `module` and returns their attribute names ("None" for a missing bias).
std::vector<std::string> register_tensors(torch::jit::Module& module, const ChainLayer& l) {
  std::vector<std::string> names;
  const std::pair<const char*, const at::Tensor*> tensors[] = {
      {"weight", &l.weight}, {"bias", &l.bias}, {"running_mean", &l.mean}, {"running_var", &l.var}};
  for (const auto& [suffix, tensor] : tensors) {
    if (!tensor->defined()) {
      names.push_back("None");
      continue;
    }
    const std::string name = l.name + "_" + suffix;
    if (l.kind == LayerKind::batch_norm && names.size() >= 2) module.register_buffer(name, *tensor);
    else module.register_parameter(name, *tensor, /*is_buffer=*/false);
    names.push_back("self." + name);
  }
  return names;
}

// One line of forward()'s body: x = <the layer applied to x>.
std::string layer_statement(torch::jit::Module& module, const ChainLayer& l) {
  const auto t = register_tensors(module, l);
  std::ostringstream s;
  switch (l.kind) {
    case LayerKind::conv: {
      const bool symmetric = l.pads[0] == l.pads[2] && l.pads[1] == l.pads[3];
      if (!symmetric)  // constant_pad_nd takes (left, right, top, bottom)
        s << "x = torch.constant_pad_nd(x, " << list({l.pads[1], l.pads[3], l.pads[0], l.pads[2]}) << ", 0.0)\n    ";
      s << "x = torch.conv2d(x, " << t[0] << ", " << t[1] << ", " << list(l.stride) << ", "
        << list(symmetric ? std::vector<int64_t>{l.pads[0], l.pads[1]} : std::vector<int64_t>{0, 0}) << ", "
        << list(l.dilation) << ", " << l.groups << ")";
      break;
    }
    case LayerKind::batch_norm:
      s.precision(17);
      s << "x = torch.batch_norm(x, " << t[0] << ", " << t[1] << ", " << t[2] << ", " << t[3] << ", False, 0.0, "
        << l.eps << ", False)";
      break;
    case LayerKind::relu: s << "x = torch.relu(x)"; break;
    case LayerKind::max_pool:
      s << "x = torch.max_pool2d(x, " << list(l.kernel) << ", " << list(l.stride) << ", " << list({l.pads[0], l.pads[1]})
        << ", " << list(l.dilation) << ", False)";
      break;
    case LayerKind::flatten: s << "x = torch.flatten(x, 1)"; break;
    case LayerKind::linear: s << "x = torch.linear(x, " << t[0] << ", " << t[1] << ")"; break;
  }
  return s.str();
}

}  // namespace

void save_torchscript(const std::string& path, const LoadedCheckpoint& checkpoint, const ExportOptions& options) {
  const auto& m = checkpoint.meta.model;
  const int64_t offset = deploy::crop_offset(checkpoint, options);
  torch::jit::Module module("__torch__.libfer.ExportedClassifier");
  std::ostringstream code;
  code << "def forward(self, image):\n    x = image\n";
  if (m.input_size < options.image_size)
    code << "    x = x[:, :, " << offset << ":" << offset + m.input_size << ", " << offset << ":" << offset + m.input_size
         << "]\n";
  for (const auto& layer : deploy::layer_chain(*checkpoint.model)) code << "    " << layer_statement(module, layer) << "\n";
  if (options.output == ExportOutput::probabilities) code << "    x = torch.softmax(x, 1)\n";
  code << "    return x\n";
  module.define(code.str());
  module.eval();

  const torch::jit::ExtraFilesMap extra{{"libfer_export.json", deploy::export_metadata(checkpoint, options).dump(2)}};
  replace_file_atomically(path, [&](const std::string& tmp) {
    try {
      module.save(tmp, extra);
    } catch (const c10::Error& e) {
      throw std::runtime_error("cannot write '" + tmp + "': " + e.what_without_backtrace());
    }
  });
}

}  // namespace fer
