// Shared by the apps: error handling in main and the dataset lookup order.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "fer/evaluate.h"
#include "fer/runtime.h"

namespace fer_app {

// --data, then $FER2013_CSV, then data/fer2013.csv (the README's order).
inline std::string resolve_data_path(const std::string& from_cli, const std::string& from_config = "") {
  if (!from_cli.empty()) return from_cli;
  if (!from_config.empty()) return from_config;
  if (const char* env = std::getenv("FER2013_CSV"); env && *env) return env;
  return "data/fer2013.csv";
}

// A threads setting of 0 (all cores) yields to OMP_NUM_THREADS when a launcher
// set it: torchrun sets 1 per rank, fer-train --nproc cores / ranks.
inline int threads_or_omp(int configured) {
  if (configured > 0) return configured;
  const char* omp = std::getenv("OMP_NUM_THREADS");
  const int n = omp ? std::atoi(omp) : 0;
  return n > 0 ? n : 0;
}

// The shipped models live in experiments/<run>/best.pt, found from the working
// directory or next to the binary's repository (build/bin/../../experiments).
inline std::filesystem::path experiments_dir(const char* argv0) {
  if (std::filesystem::is_directory("experiments")) return "experiments";
  std::error_code ec;
  const auto exe = std::filesystem::canonical(argv0, ec);
  if (!ec && std::filesystem::is_directory(exe.parent_path().parent_path().parent_path() / "experiments"))
    return exe.parent_path().parent_path().parent_path() / "experiments";
  return "experiments";
}

// The model the apps use when --model is not given (by name, see resolve_model):
// the shipped single model with the best PublicTest accuracy.
inline const char* const kDefaultModel = "paper_cnn_long";

// A shipped model's folder, experiments/<name> or experiments/fer2013_<name>,
// holds best.pt (one network) or ensemble.json (several, fer::read_ensemble_members).
inline bool is_shipped_model_dir(const std::filesystem::path& dir) {
  return std::filesystem::is_regular_file(dir / "best.pt") || std::filesystem::is_regular_file(dir / "ensemble.json");
}

inline std::string shipped_model_names(const std::filesystem::path& dir) {
  std::string names;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec))
    if (is_shipped_model_dir(entry.path())) {
      std::string name = entry.path().filename().string();
      if (name.rfind("fer2013_", 0) == 0) name = name.substr(8);
      names += (names.empty() ? "" : ", ") + name;
    }
  return names.empty() ? "none found in " + dir.string() : names;
}

// A --model value: a checkpoint file, an ensemble.json, or the name of a
// shipped model or ensemble (e.g. "paper_cnn"). Returns its checkpoints: one,
// or an ensemble's members. Throws naming the value and the shipped names.
inline std::vector<std::string> resolve_models(const std::string& value, const char* argv0) {
  namespace fs = std::filesystem;
  if (fs::is_regular_file(value))
    return fs::path(value).extension() == ".json" ? fer::read_ensemble_members(value) : std::vector<std::string>{value};
  const fs::path dir = experiments_dir(argv0);
  for (const auto& run : {fs::path(value), fs::path("fer2013_" + value)}) {
    if (fs::is_regular_file(dir / run / "best.pt")) return {(dir / run / "best.pt").string()};
    if (fs::is_regular_file(dir / run / "ensemble.json")) return fer::read_ensemble_members((dir / run / "ensemble.json").string());
  }
  throw std::runtime_error("--model '" + value + "' is neither a checkpoint file nor a shipped model (shipped: " +
                           shipped_model_names(dir) + ")");
}

// The one checkpoint of an app that runs a single network: an ensemble is an
// error naming it (fer-eval takes ensembles).
inline std::string resolve_model(const std::string& value, const char* argv0) {
  const auto models = resolve_models(value, argv0);
  if (models.size() > 1)
    throw std::runtime_error("--model '" + value + "' is an ensemble of " + std::to_string(models.size()) +
                             " networks; this app runs one (give one of them, or use fer-eval)");
  return models.front();
}

// The apps' process settings: fer::configure_cpu_runtime, then the oneDNN
// gradient check, whose warning goes to stderr. Returns the threads in use.
inline int configure_runtime(int threads, bool keep_freed_memory = true) {
  const int used = fer::configure_cpu_runtime(threads, keep_freed_memory);
  const std::string warning = fer::turn_off_onednn_if_its_gradients_are_wrong();
  if (!warning.empty()) std::fprintf(stderr, "warning: %s\n", warning.c_str());
  return used;
}

// Runs `body`; any exception becomes "error: ..." on stderr and exit status 1.
template <typename Body>
int run_main(Body body) {
  try {
    return body();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}

}  // namespace fer_app
