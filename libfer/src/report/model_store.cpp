#include "fer/report/model_store.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>

#include "fer/common/io.h"
#include "fer/report/evaluate.h"

namespace fer {
namespace fs = std::filesystem;

namespace {

// A shipped model's folder holds best.pt (one network) or ensemble.json (several).
bool holds_model(const fs::path& folder) {
  return fs::is_regular_file(folder / "best.pt") || fs::is_regular_file(folder / "ensemble.json");
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

std::vector<std::string> shipped_model_names(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const auto& p = entry.path();
    if (!holds_model(p)) continue;
    std::string name = p.filename().string();
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
    for (const auto& run : {fs::path(value), fs::path("fer2013_" + value)}) {
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
