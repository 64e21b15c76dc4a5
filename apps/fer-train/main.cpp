// fer-train: train a model from a YAML config.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>

#include "app_common.h"
#include "launcher.h"
#include "stop_signals.h"
#include "fer/config/config.h"
#include "fer/report/runtime.h"
#include "fer/report/train/train.h"

namespace {

struct TrainArgs {
  std::string config_path, data, out;
  std::vector<std::string> overrides;
  bool resume = false, list_keys = false, print_config = false;
  int nproc = 0;
};

void add_train_options(CLI::App& app, TrainArgs& a) {
  app.add_option("--config,-c", a.config_path, "YAML config (e.g. configs/paper_cnn.yaml)");
  app.add_option("--data", a.data, "FER-2013 CSV(.gz) or image-folder root (else data.path, $FER2013_CSV, data/fer2013.csv)");
  app.add_option("--out", a.out, "Run directory (default runs/<config name>)");
  app.add_option("--set", a.overrides, "Override a config key: --set train.lr=3e-4 (repeatable)");
  app.add_flag("--resume", a.resume, "Continue the run in the output directory from its last completed epoch");
  app.add_option("--nproc", a.nproc,
                 "Train data-parallel on N local processes (like torchrun --standalone --nproc_per_node=N)")
      ->check(CLI::Range(1, 1024));
  app.add_flag("--list-keys", a.list_keys, "Print every config key with its default and meaning, then exit");
  app.add_flag("--print-config", a.print_config, "Print the resolved config, then exit");
}

int run_train(const TrainArgs& a, int argc, char** argv) {
  if (a.list_keys) {
    std::fputs(fer::config_keys_markdown().c_str(), stdout);
    return 0;
  }
  if (a.config_path.empty()) throw std::runtime_error("--config is required (e.g. --config configs/paper_cnn.yaml)");
  fer::Config config = fer::load_config(a.config_path);
  for (const auto& o : a.overrides) fer::apply_override(config, o);
  config.data.path = fer_app::resolve_data_path(a.data, config.data.path);
  if (a.print_config) {
    std::fputs(fer::to_yaml(config).c_str(), stdout);
    return 0;
  }
  if (a.nproc > 0) {
    if (std::getenv("RANK")) throw std::runtime_error("--nproc: RANK is set, so a launcher already started this process");
    return fer_app::launch_local_ranks(a.nproc, fer_app::args_without_nproc(argc, argv));
  }
  const std::string run_dir = a.out.empty() ? (std::filesystem::path("runs") / config.name).string() : a.out;
  const auto env = fer::DistributedEnv::from_environment();
  fer_app::configure_runtime(config.train.threads);
  fer_app::install_stop_signals();
  const auto summary = fer::train({config, run_dir, a.resume, env, fer_app::stop_requested});
  if (summary.interrupted) {
    const std::string stopped_by =
        fer_app::stop_requested() ? fer_app::stop_signal_name() : "a signal to another rank";
    if (env.rank == 0)
      std::fprintf(stderr,
                   "stopped by %s after batch %lld/%lld of epoch %d: %s/last.pt holds the position; the same command "
                   "with --resume continues there (exit %d)\n",
                   stopped_by.c_str(), static_cast<long long>(summary.interrupted_after_batch),
                   static_cast<long long>(summary.batches_per_epoch), summary.epochs_completed + 1, run_dir.c_str(),
                   fer_app::kExitInterrupted);
    return fer_app::kExitInterrupted;
  }
  if (env.rank != 0) return 0;
  std::printf("run directory: %s\nbest epoch %d (val loss %.4f), validation accuracy %.4f, balanced accuracy %.4f\n",
              summary.run_dir.c_str(), summary.best_epoch, summary.best_val_loss, summary.final_val_accuracy,
              summary.final_val_balanced_accuracy);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Train a facial emotion recognition model from a YAML config"};
  TrainArgs args;
  add_train_options(app, args);
  if (const auto status = fer_app::parse_command_line(app, argc, argv)) return *status;
  return fer_app::run_main([&] { return run_train(args, argc, argv); });
}
