// A TorchScript module generated as source code from the layer chain and
// compiled by LibTorch (Module::define): the result holds its own forward(),
// so it runs without libfer in Python and C++ alike.
#include <torch/script.h>

#include <sstream>
#include <stdexcept>

#include "fer/deploy/export.h"
#include "layer_chain.h"

namespace fer {
namespace {

using deploy::ChainLayer;
using deploy::LayerKind;
using deploy::script_ints;

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
        s << "x = torch.constant_pad_nd(x, " << script_ints({l.pads[1], l.pads[3], l.pads[0], l.pads[2]}) << ", 0.0)\n    ";
      s << "x = torch.conv2d(x, " << t[0] << ", " << t[1] << ", " << script_ints(l.stride) << ", "
        << script_ints(symmetric ? std::vector<int64_t>{l.pads[0], l.pads[1]} : std::vector<int64_t>{0, 0}) << ", "
        << script_ints(l.dilation) << ", " << l.groups << ")";
      break;
    }
    case LayerKind::batch_norm:
      s << "x = torch.batch_norm(x, " << t[0] << ", " << t[1] << ", " << t[2] << ", " << t[3] << ", False, 0.0, "
        << deploy::script_real(l.eps) << ", False)";
      break;
    case LayerKind::relu: s << "x = torch.relu(x)"; break;
    case LayerKind::max_pool: s << deploy::max_pool_statement(l); break;
    case LayerKind::flatten: s << "x = torch.flatten(x, 1)"; break;
    case LayerKind::linear: s << "x = torch.linear(x, " << t[0] << ", " << t[1] << ")"; break;
  }
  return s.str();
}

}  // namespace

void save_torchscript(const std::string& path, const LoadedCheckpoint& checkpoint, const ExportOptions& options) {
  torch::jit::Module module("__torch__.libfer.ExportedClassifier");
  std::ostringstream code;
  code << "def forward(self, image):\n    x = " << deploy::crop_expression(checkpoint, options, "image") << "\n";
  for (const auto& layer : deploy::layer_chain(*checkpoint.model)) code << "    " << layer_statement(module, layer) << "\n";
  if (options.output == ExportOutput::probabilities) code << "    x = torch.softmax(x, 1)\n";
  code << "    return x\n";
  module.define(code.str());
  module.eval();
  deploy::save_script_module(path, module, deploy::export_metadata(checkpoint, options));
}

}  // namespace fer
