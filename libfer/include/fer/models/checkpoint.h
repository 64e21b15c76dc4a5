// Checkpoints: one TorchScript archive holding the weights (as a module tree
// that mirrors the model) and the metadata needed to rebuild the model without
// a config. Python reads it with `torch.jit.load(path).state_dict()`.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "fer/models/model.h"

namespace fer {

struct CheckpointMeta {
  ModelOptions model;
  std::vector<std::string> class_names;
  nlohmann::json info;  // free-form: epoch, validation metrics, config name...

  // Preprocessing every checkpoint states explicitly so other tools can feed it.
  static nlohmann::json preprocessing(const ModelOptions& model);
  nlohmann::json to_json() const;
  static CheckpointMeta from_json(const nlohmann::json& j);
};

// Extra named byte blobs stored inside the archive (e.g. optimizer state for resuming).
using Blobs = std::map<std::string, std::string>;

// Writes atomically: a temporary file beside `path`, then rename, so a killed
// process never leaves a truncated checkpoint. Throws std::runtime_error.
void save_checkpoint(const std::string& path, ClassifierImpl& model, const CheckpointMeta& meta,
                     const Blobs& blobs = {});

struct LoadedCheckpoint {
  Classifier model;  // in eval mode, on the requested device
  CheckpointMeta meta;
  Blobs blobs;
};

// The extra file of fer-export's TorchScript files (fer/deploy/export.h): the
// checkpoint's metadata plus an "export" record.
constexpr const char* kExportMetadataFile = "libfer_export.json";

// Rebuilds the model from the stored metadata and loads the weights. A
// TorchScript file of fer-export (float or int8) loads too: its module is the
// model (forward gives logits; log-probabilities for a probabilities export),
// meta.model.input_size is the export's image size (it crops inside), it has
// no sequential_layers() (DeepSHAP refuses it) and int8 runs on the CPU only.
// `blob_names` lists the blobs to read back (absent ones are left out).
// Throws std::runtime_error naming the file for an unreadable archive, a
// missing metadata record, an unknown architecture or mismatched weights, and
// for an int8 export asked onto another device than the CPU.
LoadedCheckpoint load_checkpoint(const std::string& path, const c10::Device& device,
                                 const std::vector<std::string>& blob_names = {});

// The metadata of a checkpoint or fer-export file alone (no weights loaded): as
// load_checkpoint(path, ...).meta. Throws as load_checkpoint.
CheckpointMeta read_checkpoint_meta(const std::string& path);

// The names of every blob stored in the checkpoint (for rewriting it whole).
std::vector<std::string> checkpoint_blob_names(const std::string& path);

}  // namespace fer
