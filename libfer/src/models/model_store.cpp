#include "fer/models/model_store.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "fer/common/io.h"

namespace fer {
namespace fs = std::filesystem;

namespace {

// A shipped model's folder holds best.pt (one network) or ensemble.json (several).
bool holds_model(const fs::path& folder) {
  return fs::is_regular_file(folder / "best.pt") || fs::is_regular_file(folder / "ensemble.json");
}

// The folder names models.txt lists, checked: each a plain name whose folder holds a model.
std::vector<std::string> read_manifest(const fs::path& dir) {
  const auto manifest = dir / kModelManifest;
  std::ifstream in(manifest);
  if (!in) throw std::runtime_error(manifest.string() + ": cannot read");
  std::vector<std::string> folders;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    const auto name = trim(line.substr(0, line.find('#')));
    if (name.empty()) continue;
    const auto where = manifest.string() + ":" + std::to_string(number) + ": ";
    if (name.find('/') != std::string::npos || name == "." || name == "..")
      throw std::runtime_error(where + "'" + name + "' is not a folder name of " + dir.string());
    if (!holds_model(dir / name))
      throw std::runtime_error(where + "'" + name + "' holds no best.pt or ensemble.json in " + dir.string());
    folders.push_back(name);
  }
  return folders;
}

std::string joined(const std::vector<std::string>& names) {
  std::string text;
  for (const auto& n : names) text += (text.empty() ? "" : ", ") + n;
  return text;
}

// "<path> (<origin>: a, b)" or "(<origin>: no such folder)", for the error.
std::string describe(const ModelDir& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir.path, ec)) return dir.path + " (" + dir.origin + ": no such folder)";
  const auto names = shipped_model_names(dir.path);
  return dir.path + " (" + dir.origin + ": " + (names.empty() ? "no models" : joined(names)) + ")";
}

}  // namespace

std::vector<std::string> read_ensemble_members(const std::string& ensemble_json) {
  nlohmann::json manifest;
  try {
    manifest = nlohmann::json::parse(read_file(ensemble_json));
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(ensemble_json + ": not valid JSON: " + e.what());
  }
  const auto members = manifest.find("members");
  if (members == manifest.end() || !members->is_array() || members->size() < 2)
    throw std::runtime_error(ensemble_json + ": \"members\" must be an array of at least two checkpoint paths");
  const fs::path base = fs::path(ensemble_json).parent_path();
  std::vector<std::string> paths;
  for (const auto& member : *members) {
    if (!member.is_string()) throw std::runtime_error(ensemble_json + ": \"members\" holds a non-string: " + member.dump());
    const std::string path = (base / member.get<std::string>()).lexically_normal().string();
    if (!fs::is_regular_file(path))
      throw std::runtime_error(ensemble_json + ": member '" + member.get<std::string>() + "' (" + path + ") does not exist");
    if (std::find(paths.begin(), paths.end(), path) != paths.end())
      throw std::runtime_error(ensemble_json + ": member '" + member.get<std::string>() + "' is listed twice");
    paths.push_back(path);
  }
  return paths;
}

std::vector<ModelDir> shipped_model_dirs() {
  std::vector<ModelDir> dirs;
  if (const char* env = std::getenv("FER_MODEL_DIR"); env && *env) dirs.push_back({env, "$FER_MODEL_DIR"});
#ifdef FER_SOURCE_EXPERIMENTS_DIR
  dirs.push_back({FER_SOURCE_EXPERIMENTS_DIR, "source tree"});
#endif
  if (const auto share = program_share_dir(); !share.empty())
    dirs.push_back({(fs::path(share) / "models").string(), "install"});
  return dirs;
}

std::vector<std::string> shipped_model_folders(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return {};
  if (fs::exists(fs::path(dir) / kModelManifest)) return read_manifest(dir);
  std::vector<std::string> folders;
  for (const auto& entry : fs::directory_iterator(dir, ec))
    if (holds_model(entry.path())) folders.push_back(entry.path().filename().string());
  return folders;
}

std::vector<std::string> shipped_model_names(const std::string& dir) {
  std::vector<std::string> names;
  for (auto name : shipped_model_folders(dir)) {
    if (name.rfind("fer2013_", 0) == 0) name = name.substr(8);
    names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::vector<std::string> resolve_models(const std::string& value, const std::vector<ModelDir>& dirs) {
  if (fs::is_regular_file(value))
    return fs::path(value).extension() == ".json" ? read_ensemble_members(value) : std::vector<std::string>{value};
  std::string looked;
  for (const auto& dir : dirs) {
    const auto folders = shipped_model_folders(dir.path);
    for (const auto& run : {value, "fer2013_" + value}) {
      if (std::find(folders.begin(), folders.end(), run) == folders.end()) continue;
      const fs::path folder = fs::path(dir.path) / run;
      if (fs::is_regular_file(folder / "best.pt")) return {(folder / "best.pt").string()};
      if (fs::is_regular_file(folder / "ensemble.json")) return read_ensemble_members((folder / "ensemble.json").string());
    }
    looked += "\n  " + describe(dir);
  }
  if (dirs.empty()) looked = " nowhere (no folder to search)";
  throw std::runtime_error("model '" + value + "' is neither a checkpoint file nor a shipped model; looked in:" + looked +
                           "\n(set $FER_MODEL_DIR to a folder of <name>/best.pt, or give a checkpoint path)");
}

std::vector<std::string> resolve_models(const std::string& value) { return resolve_models(value, shipped_model_dirs()); }

}  // namespace fer
