// The model zoo: shipped models by name: experiments/<name>/ (or fer2013_<name>/) folders
// holding best.pt (one network) or ensemble.json (several), listed in
// experiments/models.txt and searched in a fixed order, so an app finds them
// from any build folder and any working directory, and installed.
//
//   const auto checkpoints = fer::resolve_models("paper_cnn_long");  // or a .pt / ensemble.json path
//   fer::evaluate_checkpoints(checkpoints, data, "out", options);
#pragma once

#include <string>
#include <vector>

namespace fer {

// One folder the search visits, and why it is in the list.
struct ModelDir {
  std::string path;
  std::string origin;  // "$FER_MODEL_DIR", "source tree", "install"
};

// A shipped ensemble: a file ensemble.json, {"members": ["../a/best.pt", ...]},
// whose member paths are relative to the file's folder (so the folder can sit
// beside its members anywhere). Returns the members' paths, in order, ready
// for evaluate_checkpoints. Requires at least two members, each an existing
// file, none repeated; throws std::runtime_error naming the file and the
// offending key or member.
std::vector<std::string> read_ensemble_members(const std::string& ensemble_json);

// The folders searched for shipped models, in order:
//   1. $FER_MODEL_DIR, when set;
//   2. experiments/ of the source tree libfer was built from;
//   3. <program>/../share/libfer/models (where `cmake --install` puts them).
// Every folder is listed whether or not it exists (errors show them all).
std::vector<ModelDir> shipped_model_dirs();

// The name of the manifest that lists a model folder's shipped models.
constexpr const char* kModelManifest = "models.txt";

// The model folders of `dir`, in the order found: the ones its models.txt lists
// (one folder name a line, '#' comments), when it has one (experiments/, an
// install); else every sub-folder holding best.pt or ensemble.json (a folder of
// one's own in $FER_MODEL_DIR). None when `dir` does not exist. Throws
// std::runtime_error naming models.txt and its line for a listed folder that
// holds no model or a name that is not a plain folder name.
std::vector<std::string> shipped_model_folders(const std::string& dir);

// The names of the shipped models in `dir` (a folder's name without its
// "fer2013_" prefix), sorted; none when `dir` does not exist.
std::vector<std::string> shipped_model_names(const std::string& dir);

// A model given by path or by name. `value` is a checkpoint file, an
// ensemble.json file, or the name of a shipped model or ensemble, looked up
// among the shipped_model_folders() of shipped_model_dirs() (the first folder
// that has it wins). Returns its
// checkpoints: one, or an ensemble's members (read_ensemble_members).
// Throws std::runtime_error naming the value and every folder searched with
// what it holds.
std::vector<std::string> resolve_models(const std::string& value);

// The same lookup over the given folders.
std::vector<std::string> resolve_models(const std::string& value, const std::vector<ModelDir>& dirs);

}  // namespace fer
