// Hyper-parameter sweeps over a base config, the way Hydra's multirun works:
// a grid (every combination) and/or random trials, one run folder per
// combination named by its overrides, resumable after a kill, ranked by a
// selection metric.
//
//   fer::SweepSpec spec;
//   spec.base = fer::load_config("configs/paper_cnn.yaml");
//   spec.grid = {fer::parse_grid_axis("train.lr=1e-3,3e-4")};
//   spec.out_dir = "sweeps/lr";
//   const fer::SweepPlan plan = fer::plan_sweep(spec);   // every run validated first
//   const fer::SweepResult result = fer::run_sweep(plan, {});
//   fer::write_sweep_summary(result);                    // summary.csv/.md, charts
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "fer/common/callbacks.h"
#include "fer/config/config.h"
#include "fer/report/train/compare.h"

namespace fer {

// `--grid key=v1,v2,...`: values are YAML, split at commas outside brackets
// (model.filters=[16,32,64],[32,64,128]).
struct GridAxis {
  std::string key;
  std::vector<std::string> values;
};
// `--random key=lo:hi` or `key=lo:hi:log` (log-uniform); int keys are rounded.
struct RandomAxis {
  std::string key;
  double lo = 0, hi = 0;
  bool log_scale = false;
};
// Throw ConfigError naming the axis text for a missing '=', an empty list or
// an empty value, a bad range (lo >= hi, log with lo <= 0).
GridAxis parse_grid_axis(const std::string& text);
RandomAxis parse_random_axis(const std::string& text);

struct SweepSpec {
  Config base;                   // the config every run starts from (file + --set)
  std::vector<GridAxis> grid;
  std::vector<RandomAxis> random;
  int trials = 0;                // random draws, each crossed with every grid point
  std::uint64_t seed = 0;        // of the random draws: the same seed names the same runs
  std::string out_dir;
  std::string metric = "accuracy";  // run_metric() name; PublicTest accuracy of best.pt by default
};

struct SweepRun {
  std::string name, dir;  // dir = out_dir/runs/<name>
  std::vector<std::pair<std::string, std::string>> overrides;  // key, YAML value
  Config config;
};

struct SweepPlan {
  SweepSpec spec;
  std::vector<SweepRun> runs;
};

// Every run's config, built and checked before anything trains. Requires a
// non-empty out_dir and at least one axis (trials > 0 when random axes are
// given, and random axes when trials > 0). Throws ConfigError naming the key
// for an unknown key, a value of the wrong type or out of range, a key swept
// twice, a random axis over a key that is not int or float.
SweepPlan plan_sweep(const SweepSpec& spec);

// Where a run stands: sweep_result.json is written when its training and
// evaluation returned; last.pt without it means it was interrupted.
enum class SweepRunState { pending, interrupted, finished };
SweepRunState sweep_run_state(const SweepRun& run);

struct SweepProgress {
  int finished = 0, total = 0;  // finished includes runs skipped as already done
  int failed = 0;
  double eta_seconds = -1;      // from this invocation's finished runs; -1 until one finished
  std::string last;             // the run that just ended, with its metric or error
};

struct SweepCallbacks {
  // Trains one run (resume: continue it from last.pt). Default: fer::train in
  // this process. With parallel > 1 it is called from that many threads at
  // once, so it must start processes (fer-sweep's does) rather than train here.
  std::function<void(const SweepRun& run, bool resume)> train;
  std::function<void(const SweepProgress&)> on_progress;
  LogFn log;
  std::function<bool()> should_abort;  // checked before each run starts
  // Asked before each run starts and after every batch of a run trained in
  // this process: true stops the running runs after their batch (last.pt holds
  // the position; the next run_sweep resumes them) and starts no other.
  std::function<bool()> stop_requested;
  int parallel = 1;
};

// Thrown by SweepCallbacks::train when its run stopped on a stop request, its
// position saved: the run is neither failed nor finished.
class RunInterrupted : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct SweepRunResult {
  SweepRun run;
  bool ok = false;
  std::string error;     // why it failed
  RunRecord record;      // when ok
  double metric = 0;     // plan.spec.metric of the record
};

struct SweepResult {
  SweepPlan plan;
  std::vector<SweepRunResult> ranked;  // finished runs best first, then failed or not run
  int failed = 0, not_run = 0;
  bool interrupted = false;  // a stop request ended the sweep before its last run
};

// Trains the plan's runs not finished yet (interrupted ones resumed), a
// failing run recorded and the others still run. Writes out_dir/sweep.json
// (the plan) first and each run's sweep_result.json when it ends.
SweepResult run_sweep(const SweepPlan& plan, const SweepCallbacks& callbacks);

// The ranked runs of the plan as they stand on disk (no training).
SweepResult collect_sweep(const SweepPlan& plan);

// out_dir/summary.csv and summary.md (rank, run, each swept key, the metric,
// accuracy, balanced accuracy, best epoch, epochs, train seconds) and, when
// gnuplot is there, out_dir/<key>.png: the metric against each swept key.
void write_sweep_summary(const SweepResult& result);

}  // namespace fer
