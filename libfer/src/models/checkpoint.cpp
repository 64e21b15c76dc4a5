#include "fer/models/checkpoint.h"

#include <caffe2/serialize/inline_container.h>
#include <torch/script.h>

#include <filesystem>
#include <sstream>
#include <limits>
#include <set>

#include "fer/common/io.h"
#include "fer/common/precision.h"

namespace fer {
namespace {

constexpr const char* kMetaFile = "libfer_meta.json";
constexpr const char* kFormat = "libfer-checkpoint";
constexpr int kFormatVersion = 1;

// Returns the TorchScript submodule for a dotted prefix, creating the chain.
torch::jit::Module& submodule_for(std::map<std::string, torch::jit::Module>& modules,
                                  const std::shared_ptr<torch::jit::CompilationUnit>& cu, const std::string& path) {
  auto it = modules.find(path);
  if (it != modules.end()) return it->second;
  const auto dot = path.rfind('.');
  const std::string parent_path = dot == std::string::npos ? "" : path.substr(0, dot);
  const std::string name = dot == std::string::npos ? path : path.substr(dot + 1);
  torch::jit::Module& parent = submodule_for(modules, cu, parent_path);
  std::string type_name = path;
  std::replace(type_name.begin(), type_name.end(), '.', '_');
  torch::jit::Module child(c10::QualifiedName("__torch__.libfer." + type_name), cu, /*shouldMangle=*/true);
  parent.register_module(name, child);
  return modules.emplace(path, child).first->second;
}

std::pair<std::string, std::string> split_name(const std::string& full) {
  const auto dot = full.rfind('.');
  if (dot == std::string::npos) return {"", full};
  return {full.substr(0, dot), full.substr(dot + 1)};
}

// fer-export's TorchScript module as a Classifier. forward() gives logits: a
// probabilities export's log (softmax of it is the probabilities again).
class ExportedClassifierImpl : public ClassifierImpl {
 public:
  ExportedClassifierImpl(torch::jit::Module module, bool probabilities)
      : module_(std::move(module)), probabilities_(probabilities) {}
  at::Tensor forward(at::Tensor x) override {
    const auto y = module_.forward({x}).toTensor();
    return probabilities_ ? y.clamp_min(std::numeric_limits<float>::min()).log() : y;
  }

 private:
  torch::jit::Module module_;
  bool probabilities_;
};

// The export record of a fer-export TorchScript file; null for other archives.
nlohmann::json export_record(const std::string& path) {
  caffe2::serialize::PyTorchStreamReader reader(path);
  const std::string record = std::string("extra/") + kExportMetadataFile;
  if (!reader.hasRecord(record)) return nullptr;
  const auto [data, size] = reader.getRecord(record);
  return nlohmann::json::parse(std::string(static_cast<const char*>(data.get()), size)).at("export");
}

LoadedCheckpoint load_export(const std::string& path, torch::jit::Module module, const std::string& meta_text,
                             const c10::Device& device) {
  LoadedCheckpoint out;
  const auto meta = nlohmann::json::parse(meta_text);
  const auto& record = meta.at("export");
  out.meta = CheckpointMeta::from_json(meta);
  out.meta.model.image_size = record.at("input_shape").at(2).get<int64_t>();
  out.meta.model.input_size = out.meta.model.image_size;  // the module crops inside
  if (record.contains("quantization") && !device.is_cpu())
    throw std::runtime_error("'" + path + "' is an int8 model: it runs on the CPU only, not on " + device.str());
  module.eval();
  module.to(device);
  out.model = std::make_shared<ExportedClassifierImpl>(std::move(module), record.at("output") == "probabilities");
  out.model->set_input_normalization(parse_input_normalization(out.meta.model.normalize));
  return out;
}

}  // namespace

nlohmann::json CheckpointMeta::preprocessing(const ModelOptions& model) {
  const bool equalize = parse_input_normalization(model.normalize) == InputNormalization::equalize;
  const std::string side = std::to_string(model.image_size) + "x" + std::to_string(model.image_size);
  return {{"color", "grayscale"},
          {"layout", "NCHW"},
          {"height", model.image_size},
          {"width", model.image_size},
          {"normalize", model.normalize},
          {"scale", 1.0 / 255.0},
          {"description", equalize ? "each " + side + " uint8 image histogram-equalised (OpenCV's equalizeHist), then divided "
                                     "by 255; no mean/std normalisation; output is logits"
                                   : "uint8 pixels divided by 255; no mean/std normalisation; output is logits"}};
}

nlohmann::json CheckpointMeta::to_json() const {
  return {{"format", kFormat},         {"format_version", kFormatVersion}, {"model", model.to_json()},
          {"class_names", class_names}, {"preprocessing", preprocessing(model)}, {"info", info}};
}

CheckpointMeta CheckpointMeta::from_json(const nlohmann::json& j) {
  if (j.value("format", "") != kFormat) throw std::runtime_error("not a libfer checkpoint (format field missing)");
  CheckpointMeta m;
  m.model = ModelOptions::from_json(j.at("model"));
  m.class_names = j.at("class_names").get<std::vector<std::string>>();
  m.info = j.value("info", nlohmann::json::object());
  return m;
}

void save_checkpoint(const std::string& path, ClassifierImpl& model, const CheckpointMeta& meta, const Blobs& blobs) {
  auto cu = std::make_shared<torch::jit::CompilationUnit>();
  std::map<std::string, torch::jit::Module> modules;
  modules.emplace("", torch::jit::Module(c10::QualifiedName("__torch__.libfer.Checkpoint"), cu, true));
  torch::NoGradGuard no_grad;
  for (const auto& item : model.named_parameters(/*recurse=*/true)) {
    auto [prefix, name] = split_name(item.key());
    submodule_for(modules, cu, prefix).register_parameter(name, item.value().detach().to(torch::kCPU).clone(), false);
  }
  for (const auto& item : model.named_buffers(/*recurse=*/true)) {
    auto [prefix, name] = split_name(item.key());
    submodule_for(modules, cu, prefix).register_buffer(name, item.value().detach().to(torch::kCPU).clone());
  }
  const std::string meta_text = meta.to_json().dump(2);
  modules.at("").register_attribute("libfer_meta", c10::StringType::get(), meta_text);

  torch::jit::ExtraFilesMap extra{{kMetaFile, meta_text}};
  for (const auto& [name, data] : blobs) extra[name] = data;

  const std::filesystem::path target(path);
  if (target.has_parent_path()) std::filesystem::create_directories(target.parent_path());
  // Serialized in memory first: LibTorch's file writer aborts the process when
  // a write fails (its destructor throws); our checked writes report the cause.
  std::ostringstream archive;
  try {
    modules.at("").save(archive, extra);
  } catch (const c10::Error& e) {
    throw std::runtime_error("cannot serialize checkpoint '" + path + "': " + e.what_without_backtrace());
  }
  try {
    write_text_atomic(path, archive.str());
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(std::string(e.what()) + " (checkpoint " + path + " not replaced)");
  }
}

CheckpointMeta read_checkpoint_meta(const std::string& path) {
  if (!std::filesystem::exists(path)) throw std::runtime_error("checkpoint '" + path + "' does not exist");
  try {
    caffe2::serialize::PyTorchStreamReader reader(path);
    for (const char* file : {kMetaFile, kExportMetadataFile}) {
      const std::string record = std::string("extra/") + file;
      if (!reader.hasRecord(record)) continue;
      const auto [data, size] = reader.getRecord(record);
      const auto json = nlohmann::json::parse(std::string(static_cast<const char*>(data.get()), size));
      auto meta = CheckpointMeta::from_json(json);
      if (std::string(file) == kExportMetadataFile)  // the module crops inside: it takes whole faces
        meta.model.image_size = meta.model.input_size = json.at("export").at("input_shape").at(2).get<int64_t>();
      return meta;
    }
  } catch (const c10::Error& e) {
    throw std::runtime_error("cannot read checkpoint '" + path + "': " + e.what_without_backtrace());
  } catch (const std::exception& e) {
    throw std::runtime_error("checkpoint '" + path + "': " + e.what());
  }
  throw std::runtime_error("checkpoint '" + path + "' has no libfer metadata (not written by libfer?)");
}

std::vector<std::string> checkpoint_blob_names(const std::string& path) {
  if (!std::filesystem::exists(path)) throw std::runtime_error("checkpoint '" + path + "' does not exist");
  std::vector<std::string> names;
  try {
    caffe2::serialize::PyTorchStreamReader reader(path);
    for (const auto& record : reader.getAllRecords())
      if (record.rfind("extra/", 0) == 0 && record != std::string("extra/") + kMetaFile) names.push_back(record.substr(6));
  } catch (const c10::Error& e) {
    throw std::runtime_error("cannot read checkpoint '" + path + "': " + e.what_without_backtrace());
  }
  return names;
}

LoadedCheckpoint load_checkpoint(const std::string& path, const torch::Device& device,
                                 const std::vector<std::string>& blob_names) {
  if (!std::filesystem::exists(path)) throw std::runtime_error("checkpoint '" + path + "' does not exist");
  torch::jit::ExtraFilesMap extra{{kMetaFile, ""}, {kExportMetadataFile, ""}};
  for (const auto& name : blob_names) extra[name] = "";
  torch::jit::Module archive;
  try {
    const auto exported = export_record(path);
    if (exported.is_object() && exported.contains("quantization")) use_quantized_engine();  // unpacks int8 weights
    archive = torch::jit::load(path, torch::kCPU, extra);
  } catch (const c10::Error& e) {
    throw std::runtime_error("cannot read checkpoint '" + path + "': " + e.what_without_backtrace());
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error("checkpoint '" + path + "': unreadable export record: " + e.what());
  }
  if (extra[kMetaFile].empty() && !extra[kExportMetadataFile].empty()) {
    try {
      return load_export(path, std::move(archive), extra[kExportMetadataFile], device);
    } catch (const nlohmann::json::exception& e) {
      throw std::runtime_error("'" + path + "': unreadable export record: " + e.what());
    }
  }
  if (extra[kMetaFile].empty())
    throw std::runtime_error("checkpoint '" + path + "' has no libfer metadata (not written by libfer?)");

  LoadedCheckpoint out;
  try {
    out.meta = CheckpointMeta::from_json(nlohmann::json::parse(extra[kMetaFile]));
    out.model = make_model(out.meta.model);
  } catch (const std::exception& e) {
    throw std::runtime_error("checkpoint '" + path + "': " + e.what());
  }

  std::map<std::string, torch::Tensor> stored;
  for (const auto& p : archive.named_parameters(/*recurse=*/true)) stored[p.name] = p.value;
  for (const auto& b : archive.named_buffers(/*recurse=*/true)) stored[b.name] = b.value;

  torch::NoGradGuard no_grad;
  std::set<std::string> used;
  auto copy_into = [&](const std::string& name, torch::Tensor& target) {
    const auto it = stored.find(name);
    if (it == stored.end())
      throw std::runtime_error("checkpoint '" + path + "' lacks the tensor '" + name + "' of architecture '" +
                               out.meta.model.architecture + "'");
    if (it->second.sizes() != target.sizes())
      throw std::runtime_error("checkpoint '" + path + "': tensor '" + name + "' has shape " +
                               c10::str(it->second.sizes()) + ", the model expects " + c10::str(target.sizes()));
    target.copy_(it->second);
    used.insert(name);
  };
  for (auto& item : out.model->named_parameters(true)) copy_into(item.key(), item.value());
  for (auto& item : out.model->named_buffers(true)) copy_into(item.key(), item.value());
  for (const auto& [name, _] : stored)
    if (!used.count(name))
      throw std::runtime_error("checkpoint '" + path + "' has the tensor '" + name + "' that the architecture '" +
                               out.meta.model.architecture + "' does not");

  out.model->to(device);
  out.model->eval();
  for (const auto& name : blob_names)
    if (!extra[name].empty()) out.blobs[name] = extra[name];
  return out;
}

}  // namespace fer
