// ONNX written by hand (onnx/onnx.proto's field numbers, noted beside each
// message): the registry's networks need seven operators, and a protobuf
// encoder of ~100 lines keeps libfer free of libonnx and of Python.
#include <torch/torch.h>

#include <stdexcept>

#include "fer/common/io.h"
#include "fer/common/protobuf.h"
#include "fer/deploy/export.h"
#include "layer_chain.h"

namespace fer {
namespace {

using deploy::ChainLayer;
using deploy::LayerKind;
using proto::put_bytes;
using proto::put_int;

constexpr int64_t kIrVersion = 7;  // ONNX 1.7+
constexpr int64_t kOpset = 13;
enum OnnxDataType : int64_t { kOnnxFloat = 1, kOnnxInt64 = 7 };
enum OnnxAttributeType : int64_t { kAttrFloat = 1, kAttrInt = 2, kAttrInts = 7 };

// AttributeProto: name = 1, f = 2, i = 3, ints = 8, type = 20.
std::string int_attribute(const std::string& name, int64_t value) {
  std::string a;
  put_bytes(a, 1, name);
  put_int(a, 3, value);
  put_int(a, 20, kAttrInt);
  return a;
}

std::string ints_attribute(const std::string& name, const std::vector<int64_t>& values) {
  std::string a;
  put_bytes(a, 1, name);
  for (const auto v : values) put_int(a, 8, v);
  put_int(a, 20, kAttrInts);
  return a;
}

std::string float_attribute(const std::string& name, float value) {
  std::string a;
  put_bytes(a, 1, name);
  proto::put_float(a, 2, value);
  put_int(a, 20, kAttrFloat);
  return a;
}

// NodeProto: input = 1, output = 2, name = 3, op_type = 4, attribute = 5.
std::string node(const std::string& op, const std::vector<std::string>& inputs, const std::string& output,
                 const std::string& name, const std::vector<std::string>& attributes = {}) {
  std::string n;
  for (const auto& i : inputs) put_bytes(n, 1, i);
  put_bytes(n, 2, output);
  put_bytes(n, 3, name);
  put_bytes(n, 4, op);
  for (const auto& a : attributes) put_bytes(n, 5, a);
  return n;
}

// TensorProto: dims = 1, data_type = 2, name = 8, raw_data = 9 (little-endian).
std::string float_tensor(const std::string& name, const at::Tensor& t) {
  const auto c = t.contiguous();
  std::string m;
  for (const auto d : c.sizes()) put_int(m, 1, d);
  put_int(m, 2, kOnnxFloat);
  put_bytes(m, 8, name);
  put_bytes(m, 9, std::string_view(static_cast<const char*>(c.data_ptr()), c.numel() * sizeof(float)));
  return m;
}

std::string int64_tensor(const std::string& name, const std::vector<int64_t>& values) {
  std::string m;
  put_int(m, 1, static_cast<int64_t>(values.size()));
  put_int(m, 2, kOnnxInt64);
  put_bytes(m, 8, name);
  put_bytes(m, 9, std::string_view(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(int64_t)));
  return m;
}

// ValueInfoProto: name = 1, type = 2 (TypeProto: tensor_type = 1 (elem_type = 1,
// shape = 2 (TensorShapeProto: dim = 1 (dim_value = 1, dim_param = 2)))).
std::string float_value_info(const std::string& name, const std::vector<int64_t>& dims) {
  std::string shape;
  for (const auto d : dims) {
    std::string dim;
    if (d < 0) put_bytes(dim, 2, "N");
    else put_int(dim, 1, d);
    put_bytes(shape, 1, dim);
  }
  std::string tensor_type;
  put_int(tensor_type, 1, kOnnxFloat);
  put_bytes(tensor_type, 2, shape);
  std::string type;
  put_bytes(type, 1, tensor_type);
  std::string v;
  put_bytes(v, 1, name);
  put_bytes(v, 2, type);
  return v;
}

// GraphProto: node = 1, name = 2, initializer = 5, input = 11, output = 12.
class GraphBuilder {
 public:
  // Adds a node reading the current value (and `weights`, stored as initializers) and makes its output current.
  void add(const std::string& op, const std::string& name, const std::vector<std::pair<std::string, at::Tensor>>& weights,
           const std::vector<std::string>& attributes = {}) {
    std::vector<std::string> inputs{current_};
    for (const auto& [suffix, tensor] : weights) {
      if (!tensor.defined()) continue;
      inputs.push_back(name + "." + suffix);
      put_bytes(graph_, 5, float_tensor(inputs.back(), tensor));
    }
    add_node(op, inputs, name, attributes);
  }
  void add_node(const std::string& op, const std::vector<std::string>& inputs, const std::string& name,
                const std::vector<std::string>& attributes = {}) {
    put_bytes(graph_, 1, node(op, inputs, name, name, attributes));
    current_ = name;
  }
  void add_initializer(const std::string& tensor) { put_bytes(graph_, 5, tensor); }
  const std::string& current() const { return current_; }
  // The graph, its last node's output renamed `output`.
  std::string finish(const std::string& input_info, const std::string& output, const std::vector<int64_t>& output_dims) {
    add_node("Identity", {current_}, output);
    std::string g = graph_;
    put_bytes(g, 2, "libfer");
    put_bytes(g, 11, input_info);
    put_bytes(g, 12, float_value_info(output, output_dims));
    return g;
  }

 private:
  std::string graph_;
  std::string current_ = deploy::kInputName;
};

void add_layer(GraphBuilder& g, const ChainLayer& l) {
  switch (l.kind) {
    case LayerKind::conv:
      g.add("Conv", l.name, {{"weight", l.weight}, {"bias", l.bias}},
            {ints_attribute("kernel_shape", l.kernel), ints_attribute("strides", l.stride),
             ints_attribute("dilations", l.dilation), ints_attribute("pads", l.pads), int_attribute("group", l.groups)});
      break;
    case LayerKind::batch_norm:
      g.add("BatchNormalization", l.name, {{"weight", l.weight}, {"bias", l.bias}, {"running_mean", l.mean}, {"running_var", l.var}},
            {float_attribute("epsilon", static_cast<float>(l.eps))});
      break;
    case LayerKind::relu: g.add("Relu", l.name, {}); break;
    case LayerKind::max_pool:
      g.add("MaxPool", l.name, {},
            {ints_attribute("kernel_shape", l.kernel), ints_attribute("strides", l.stride), ints_attribute("pads", l.pads)});
      break;
    case LayerKind::flatten: g.add("Flatten", l.name, {}, {int_attribute("axis", 1)}); break;
    case LayerKind::linear:
      g.add("Gemm", l.name, {{"weight", l.weight}, {"bias", l.bias}}, {int_attribute("transB", 1)});
      break;
  }
}

// A Slice node taking the centre `size` x `size` of the image (axes 2 and 3).
void add_centre_crop(GraphBuilder& g, int64_t offset, int64_t size) {
  g.add_initializer(int64_tensor("crop.starts", {offset, offset}));
  g.add_initializer(int64_tensor("crop.ends", {offset + size, offset + size}));
  g.add_initializer(int64_tensor("crop.axes", {2, 3}));
  g.add_node("Slice", {g.current(), "crop.starts", "crop.ends", "crop.axes"}, "crop");
}

// StringStringEntryProto: key = 1, value = 2.
std::string metadata_entry(const std::string& key, const std::string& value) {
  std::string e;
  put_bytes(e, 1, key);
  put_bytes(e, 2, value);
  return e;
}

}  // namespace

const EnumNames<ExportOutput>& export_output_names() {
  static const EnumNames<ExportOutput> names{
      "export output", {{"probabilities", ExportOutput::probabilities}, {"logits", ExportOutput::logits}}};
  return names;
}

ExportOutput parse_export_output(const std::string& name) { return export_output_names().parse(name); }

std::string export_output_name(ExportOutput output) { return export_output_names().name(output); }

std::string onnx_model_bytes(const LoadedCheckpoint& checkpoint, const ExportOptions& options) {
  const auto& m = checkpoint.meta.model;
  const int64_t offset = deploy::crop_offset(checkpoint, options), side = deploy::export_image_size(checkpoint, options);
  GraphBuilder g;
  if (m.input_size < side) add_centre_crop(g, offset, m.input_size);
  for (const auto& layer : deploy::layer_chain(*checkpoint.model)) add_layer(g, layer);
  if (options.output == ExportOutput::probabilities) g.add("Softmax", "softmax", {}, {int_attribute("axis", 1)});
  const std::string graph =
      g.finish(float_value_info(deploy::kInputName, {-1, m.in_channels, side, side}),
               export_output_name(options.output), {-1, m.num_classes});

  // ModelProto: ir_version = 1, producer_name = 2, producer_version = 3, graph = 7,
  // opset_import = 8 (OperatorSetIdProto: domain = 1, version = 2), metadata_props = 14.
  std::string model;
  put_int(model, 1, kIrVersion);
  put_bytes(model, 2, "libfer");
  put_bytes(model, 3, FER_VERSION);
  put_bytes(model, 7, graph);
  std::string opset;
  put_bytes(opset, 1, "");
  put_int(opset, 2, kOpset);
  put_bytes(model, 8, opset);
  put_bytes(model, 14, metadata_entry("libfer_meta", deploy::export_metadata(checkpoint, options).dump()));
  return model;
}

void save_onnx(const std::string& path, const LoadedCheckpoint& checkpoint, const ExportOptions& options) {
  const std::string bytes = onnx_model_bytes(checkpoint, options);
  replace_file_atomically(path, [&](const std::string& tmp) { write_file_checked(tmp, bytes); });
}

std::map<std::string, std::string> onnx_metadata(const std::string& path) {
  const std::string bytes = read_file(path);
  std::map<std::string, std::string> metadata;
  try {
    for (const auto& field : proto::parse_fields(bytes)) {
      if (field.number != 14 || field.type != proto::kBytes) continue;
      std::string key, value;
      for (const auto& kv : proto::parse_fields(field.bytes)) {
        if (kv.number == 1) key = std::string(kv.bytes);
        if (kv.number == 2) value = std::string(kv.bytes);
      }
      metadata[key] = value;
    }
  } catch (const std::runtime_error& e) {
    throw std::runtime_error("'" + path + "' is not an ONNX model: " + e.what());
  }
  return metadata;
}

}  // namespace fer
