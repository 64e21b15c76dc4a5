// Shared by the apps: error handling in main and the dataset lookup order.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <string>

namespace fer_app {

// --data, then $FER2013_CSV, then data/fer2013.csv (the README's order).
inline std::string resolve_data_path(const std::string& from_cli, const std::string& from_config = "") {
  if (!from_cli.empty()) return from_cli;
  if (!from_config.empty()) return from_config;
  if (const char* env = std::getenv("FER2013_CSV"); env && *env) return env;
  return "data/fer2013.csv";
}

// The default model: the shipped reference checkpoint, found from the working
// directory or next to the binary's repository (build/bin/../../experiments).
inline std::string default_model_path(const char* argv0) {
  const std::string rel = "experiments/fer2013_paper_cnn/best.pt";
  if (std::filesystem::exists(rel)) return rel;
  std::error_code ec;
  const auto exe = std::filesystem::canonical(argv0, ec);
  if (!ec) {
    const auto candidate = exe.parent_path().parent_path().parent_path() / rel;
    if (std::filesystem::exists(candidate)) return candidate.string();
  }
  return rel;
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
