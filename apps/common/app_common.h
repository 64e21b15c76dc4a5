// Shared by the apps: error handling in main and the dataset lookup order.
#pragma once

#include <CLI/CLI.hpp>
#include <c10/util/Exception.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "fer/common/precision.h"
#include "fer/models/model_store.h"
#include "fer/report/runtime.h"

namespace fer_app {

// --data, then $FER2013_CSV, then data/fer2013.csv (the README's order).
inline std::string resolve_data_path(const std::string& from_cli, const std::string& from_config = "") {
  if (!from_cli.empty()) return from_cli;
  if (!from_config.empty()) return from_config;
  if (const char* env = std::getenv("FER2013_CSV"); env && *env) return env;
  return "data/fer2013.csv";
}

using fer::threads_or_omp;  // the apps' threads setting (fer/report/runtime.h)

// The models the apps use when --model is not given (by name, see
// fer::resolve_models), chosen on PublicTest: the shipped single network with
// the best accuracy (fer-eval, fer-export), and the best of the paper CNN's
// size for the apps that run it per face or per pixel (fer-explain,
// fer-background), where the VGG costs 1.8x a live frame and 1.5x an
// explanation. fer-live's reads histogram-equalised faces: chosen on PublicTest
// and on the clip's audience in stage light (experiments/fer2013_paper_cnn_equalize).
inline const char* const kDefaultModel = "vgg_fer_cosine";
inline const char* const kDefaultSmallModel = "paper_cnn_distill";
inline const char* const kDefaultLiveModel = "paper_cnn_equalize";

// The one checkpoint of an app that runs a single network (a path or a
// shipped name, fer::resolve_models): an ensemble is an error naming it
// (fer-eval takes ensembles).
inline std::string resolve_model(const std::string& value) {
  const auto models = fer::resolve_models(value);
  if (models.size() > 1)
    throw std::runtime_error("--model '" + value + "' is an ensemble of " + std::to_string(models.size()) +
                             " networks; this app runs one (give one of them, or use fer-eval)");
  return models.front();
}

// The apps' process settings: fer::configure_cpu_runtime (threads 0:
// OMP_NUM_THREADS, else all cores), then the oneDNN gradient check, whose
// warning goes to stderr. Returns the threads in use.
inline int configure_runtime(int threads, bool keep_freed_memory = true) {
  const int used = fer::configure_cpu_runtime(threads_or_omp(threads), keep_freed_memory);
  const std::string warning = fer::turn_off_onednn_if_its_gradients_are_wrong();
  if (!warning.empty()) std::fprintf(stderr, "warning: %s\n", warning.c_str());
  return used;
}

// An option parsed straight into an enum: a wrong name is CLI11's usage error
// listing the names. Help shows "TEXT:{a,b,c}=default" in the given order.
template <typename Enum>
CLI::Option* add_enum_option(CLI::App& app, const std::string& name, Enum& value,
                             const std::vector<std::pair<std::string, Enum>>& names, const std::string& help) {
  std::string text = "TEXT:{", default_name;
  for (const auto& [n, v] : names) {
    text += (text.back() == '{' ? "" : ",") + n;
    if (v == value) default_name = n;
  }
  text += "}" + (default_name.empty() ? "" : "=" + default_name);
  const std::map<std::string, Enum> by_name(names.begin(), names.end());
  return app.add_option(name, value, help)->transform(CLI::CheckedTransformer(by_name))->option_text(text);
}

// The same from the library's table of the enum's names (fer/common/enum_names.h).
template <typename Enum>
CLI::Option* add_enum_option(CLI::App& app, const std::string& name, Enum& value, const fer::EnumNames<Enum>& names,
                             const std::string& help) {
  return add_enum_option(app, name, value, names.names, help);
}

// The names an enum's table lists, for CLI::IsMember.
template <typename Enum>
std::vector<std::string> names_of(const fer::EnumNames<Enum>& names) {
  std::vector<std::string> list;
  for (const auto& entry : names.names) list.push_back(entry.first);
  return list;
}

// A --precision option parsed straight into the enum (fp32 | bf16 | fp16).
inline CLI::Option* add_precision_option(CLI::App& app, const std::string& name, fer::Precision& value,
                                         const std::string& help) {
  return add_enum_option(app, name, value, fer::precision_names(), help);
}

// Exit statuses of every app: 0 done, 1 a failure while running (run_main),
// 2 a usage error (bad arguments; as argparse and most Unix tools).
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

// Parses the command line. Returns nothing to go on; else the status to exit
// with: 0 after --help, kExitUsage after "error: <what>" and the --help hint.
inline std::optional<int> parse_command_line(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
    return std::nullopt;
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) return app.exit(e);  // --help
    const std::string program = argc > 0 ? std::filesystem::path(argv[0]).filename().string() : "the program";
    std::fprintf(stderr, "error: %s\nrun %s --help for the options\n", e.what(), program.c_str());
    return kExitUsage;
  }
}

// Runs `body`; any exception becomes "error: ..." on stderr and exit status 1.
template <typename Body>
int run_main(Body body) {
  try {
    return body();
  } catch (const c10::Error& e) {  // LibTorch's message, without the C++ backtrace it appends
    std::fprintf(stderr, "error: %s\n", e.what_without_backtrace());
    return kExitFailure;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return kExitFailure;
  }
}

}  // namespace fer_app
