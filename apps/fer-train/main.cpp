// fer-train: train a model from a YAML config.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>

#include "app_common.h"
#include "launcher.h"
#include "fer/config/config.h"
#include "fer/report/runtime.h"
#include "fer/report/train.h"

int main(int argc, char** argv) {
  CLI::App app{"Train a facial emotion recognition model from a YAML config"};
  std::string config_path, data, out;
  std::vector<std::string> overrides;
  bool resume = false, list_keys = false, print_config = false;
  int nproc = 0;
  app.add_option("--config,-c", config_path, "YAML config (e.g. configs/paper_cnn.yaml)");
  app.add_option("--data", data, "FER-2013 CSV(.gz) or image-folder root (else data.path, $FER2013_CSV, data/fer2013.csv)");
  app.add_option("--out", out, "Run directory (default experiments/<config name>)");
  app.add_option("--set", overrides, "Override a config key: --set train.lr=3e-4 (repeatable)");
  app.add_flag("--resume", resume, "Continue the run in the output directory from its last completed epoch");
  app.add_option("--nproc", nproc,
                 "Train data-parallel on N local processes (like torchrun --standalone --nproc_per_node=N)")
      ->check(CLI::Range(1, 1024));
  app.add_flag("--list-keys", list_keys, "Print every config key with its default and meaning, then exit");
  app.add_flag("--print-config", print_config, "Print the resolved config, then exit");
  CLI11_PARSE(app, argc, argv);

  return fer_app::run_main([&] {
    if (list_keys) {
      std::fputs(fer::config_keys_markdown().c_str(), stdout);
      return 0;
    }
    if (config_path.empty()) throw std::runtime_error("--config is required (e.g. --config configs/paper_cnn.yaml)");
    fer::Config config = fer::load_config(config_path);
    for (const auto& o : overrides) fer::apply_override(config, o);
    config.data.path = fer_app::resolve_data_path(data, config.data.path);
    if (print_config) {
      std::fputs(fer::to_yaml(config).c_str(), stdout);
      return 0;
    }
    if (nproc > 0) {
      if (std::getenv("RANK")) throw std::runtime_error("--nproc: RANK is set, so a launcher already started this process");
      return fer_app::launch_local_ranks(nproc, fer_app::args_without_nproc(argc, argv));
    }
    const std::string run_dir = out.empty() ? (std::filesystem::path("experiments") / config.name).string() : out;
    const auto env = fer::DistributedEnv::from_environment();
    fer_app::configure_runtime(fer_app::threads_or_omp(config.train.threads));
    const auto summary = fer::train({config, run_dir, resume, env});
    if (env.rank != 0) return 0;
    std::printf("run directory: %s\nbest epoch %d (val loss %.4f), validation accuracy %.4f, balanced accuracy %.4f\n",
                summary.run_dir.c_str(), summary.best_epoch, summary.best_val_loss, summary.final_val_accuracy,
                summary.final_val_balanced_accuracy);
    return 0;
  });
}
