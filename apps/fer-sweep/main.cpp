// fer-sweep: train every combination of a grid (and/or random trials) over a
// config, resumably, and rank the runs.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <thread>

#include "app_common.h"
#include "stop_signals.h"
#include "train_process.h"
#include "fer/report/progress.h"
#include "fer/report/train/sweep.h"

namespace {

struct SweepArgs {
  std::string config_path, data;
  std::vector<std::string> grid, random, overrides, devices;
  fer::SweepSpec spec;
  int parallel = 1;
  bool dry_run = false;
};

void add_sweep_options(CLI::App& app, SweepArgs& a) {
  app.add_option("--config,-c", a.config_path, "Base YAML config")->required();
  app.add_option("--grid", a.grid, "key=v1,v2,... : every value crossed with the other axes (repeatable)");
  app.add_option("--random", a.random, "key=lo:hi or key=lo:hi:log : drawn once per trial (repeatable)");
  app.add_option("--trials", a.spec.trials, "Random draws (each crossed with every grid point)");
  app.add_option("--seed", a.spec.seed, "Seed of the random draws (the same seed gives the same runs)");
  app.add_option("--set", a.overrides, "Override a base config key: --set train.epochs=30 (repeatable)");
  app.add_option("--data", a.data, "FER-2013 CSV(.gz) or image-folder root (else data.path, $FER2013_CSV, data/fer2013.csv)");
  app.add_option("--out", a.spec.out_dir, "Sweep folder: runs/<name>/, sweep.json, summary.csv/.md, <key>.png")->required();
  app.add_option("--metric", a.spec.metric, "Selection metric: a number of metrics.json (accuracy, balanced_accuracy, "
                                            "macro_f1, ...) or best_val_accuracy / best_val_loss")
      ->capture_default_str();
  app.add_option("--parallel", a.parallel, "Runs trained at once, each a fer-train process with cores/K threads")
      ->check(CLI::Range(1, 256));
  app.add_option("--devices", a.devices, "CUDA device ids handed out one per running process (CUDA_VISIBLE_DEVICES)")
      ->delimiter(',');
  app.add_flag("--dry-run", a.dry_run, "Print the runs and their overrides, train nothing");
}

void print_progress(const fer::SweepProgress& p) {
  std::fprintf(stderr, "sweep: %d/%d runs finished%s, ETA %s%s%s\n", p.finished, p.total,
               p.failed ? (", " + std::to_string(p.failed) + " failed").c_str() : "",
               p.eta_seconds < 0 ? "unknown" : fer::format_duration(p.eta_seconds).c_str(), p.last.empty() ? "" : "; ",
               p.last.c_str());
}

int run_sweep_app(SweepArgs& a) {
  a.spec.base = fer::load_config(a.config_path);
  for (const auto& o : a.overrides) fer::apply_override(a.spec.base, o);
  a.spec.base.data.path = fer_app::resolve_data_path(a.data, a.spec.base.data.path);
  for (const auto& g : a.grid) a.spec.grid.push_back(fer::parse_grid_axis(g));
  for (const auto& r : a.random) a.spec.random.push_back(fer::parse_random_axis(r));
  const fer::SweepPlan plan = fer::plan_sweep(a.spec);
  if (a.dry_run) {
    for (const auto& run : plan.runs) std::printf("%s\n", run.dir.c_str());
    return 0;
  }
  fer_app::install_stop_signals();
  fer::SweepCallbacks callbacks;
  callbacks.parallel = a.parallel;
  callbacks.stop_requested = fer_app::stop_requested;
  callbacks.on_progress = print_progress;
  callbacks.log = [](const std::string& m) { std::fprintf(stderr, "sweep: %s\n", m.c_str()); };
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (a.parallel > 1) {
    auto processes =
        std::make_shared<fer_app::TrainProcesses>(a.devices, std::max(1, cores / a.parallel), fer_app::stop_requested);
    callbacks.train = [processes](const fer::SweepRun& run, bool resume) { (*processes)(run, resume); };
  } else {
    fer_app::configure_runtime(a.spec.base.train.threads);
  }
  const fer::SweepResult result = fer::run_sweep(plan, callbacks);
  fer::write_sweep_summary(result);
  std::fputs(fer::read_file(a.spec.out_dir + "/summary.md").c_str(), stdout);
  if (result.interrupted) {
    std::fprintf(stderr, "sweep stopped by %s: the same command continues it (interrupted runs resume from their "
                         "last.pt) (exit %d)\n",
                 fer_app::stop_signal_name().c_str(), fer_app::kExitInterrupted);
    return fer_app::kExitInterrupted;
  }
  return result.failed ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Train a grid or random sweep over a config, resumably, and rank the runs"};
  SweepArgs args;
  add_sweep_options(app, args);
  if (const auto status = fer_app::parse_command_line(app, argc, argv)) return *status;
  return fer_app::run_main([&] { return run_sweep_app(args); });
}
