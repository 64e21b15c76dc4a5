// Sweeps (fer/report/train/sweep.h) and run comparison (fer/report/train/compare.h):
// planning and its errors, seeded random draws, resume after an interruption,
// failures recorded, ranking and the summary files; the comparison's best
// epoch and config differences against hand-written run folders.
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "fer/common/io.h"
#include "fer/report/plot.h"
#include "fer/report/train/compare.h"
#include "fer/report/train/sweep.h"
#include "fer/models/checkpoint.h"
#include "fer/engine/hooks.h"
#include "fer/report/train/train.h"
#include "test_util.h"

namespace {

fer::SweepSpec grid_spec(const fer::Config& base, const std::string& out) {
  fer::SweepSpec spec;
  spec.base = base;
  spec.out_dir = out;
  spec.grid = {fer::parse_grid_axis("train.lr=1e-3,3e-4"), fer::parse_grid_axis("augment.erase_prob=0,0.25,0.5")};
  return spec;
}

std::string error_of(const fer::SweepSpec& spec) {
  try {
    fer::plan_sweep(spec);
  } catch (const fer::ConfigError& e) {
    return e.what();
  }
  return "";
}

// A run folder as fer-train leaves it, written by hand.
void write_run(const std::string& dir, const std::string& config_yaml, const std::string& history_rows,
               const std::string& metrics_json) {
  fer_test::fs::create_directories(dir);
  fer_test::write_file(dir + "/config.yaml", config_yaml);
  fer_test::write_file(dir + "/history.csv", "epoch,lr,train_loss,train_accuracy,val_loss,val_accuracy,seconds\n" + history_rows);
  if (!metrics_json.empty()) fer_test::write_file(dir + "/metrics.json", metrics_json);
}

}  // namespace

TEST(Sweep, PlanCrossesTheGridFirstAxisSlowestAndNamesRunsByTheirOverrides) {
  fer_test::TempDir out;
  const auto plan = fer::plan_sweep(grid_spec(fer::Config{}, out / "s"));
  ASSERT_EQ(plan.runs.size(), 6u);
  EXPECT_EQ(plan.runs[0].name, "train.lr=1e-3,augment.erase_prob=0");
  EXPECT_EQ(plan.runs[5].name, "train.lr=3e-4,augment.erase_prob=0.5");
  std::set<std::string> names;
  for (const auto& run : plan.runs) {
    names.insert(run.name);
    EXPECT_EQ(run.dir, out / ("s/runs/" + run.name));
  }
  EXPECT_EQ(names.size(), 6u);
  EXPECT_DOUBLE_EQ(plan.runs[4].config.train.lr, 3e-4);
  EXPECT_DOUBLE_EQ(plan.runs[4].config.augment.erase_prob, 0.25);
  EXPECT_DOUBLE_EQ(plan.runs[0].config.train.weight_decay, fer::Config{}.train.weight_decay);  // the rest is the base

  // List values keep their commas inside brackets.
  auto spec = grid_spec(fer::Config{}, out / "s");
  spec.grid = {fer::parse_grid_axis("model.filters=[16,32,64],[8,16,32]")};
  const auto lists = fer::plan_sweep(spec);
  ASSERT_EQ(lists.runs.size(), 2u);
  EXPECT_EQ(lists.runs[1].config.model.filters, (std::vector<int>{8, 16, 32}));
  EXPECT_EQ(lists.runs[1].name, "model.filters=8-16-32");
}

TEST(Sweep, BadAxesAreErrorsNamingTheKeyBeforeAnythingRuns) {
  fer_test::TempDir out;
  auto spec = grid_spec(fer::Config{}, out / "s");
  const auto with_grid = [&](const std::string& axis) {
    auto s = spec;
    s.grid.push_back(fer::parse_grid_axis(axis));
    return error_of(s);
  };
  EXPECT_NE(with_grid("train.lrr=1").find("'train.lrr'"), std::string::npos);
  EXPECT_NE(with_grid("train.epochs=ten").find("'train.epochs'"), std::string::npos);       // wrong type
  EXPECT_NE(with_grid("train.optimizer=adam,rmsprop").find("'train.optimizer'"), std::string::npos);  // out of range
  EXPECT_NE(with_grid("train.lr=0.1").find("'train.lr' is swept twice"), std::string::npos);
  EXPECT_THROW(fer::parse_grid_axis("train.lr="), fer::ConfigError);
  EXPECT_THROW(fer::parse_grid_axis("train.lr=1e-3,,1e-4"), fer::ConfigError);
  EXPECT_THROW(fer::parse_random_axis("train.lr=1e-2:1e-4"), fer::ConfigError);    // lo >= hi
  EXPECT_THROW(fer::parse_random_axis("train.lr=0:1e-2:log"), fer::ConfigError);   // log needs lo > 0
  EXPECT_THROW(fer::parse_random_axis("train.lr=a:b"), fer::ConfigError);
  auto random = spec;
  random.random = {fer::parse_random_axis("train.optimizer=0:1")};
  random.trials = 2;
  EXPECT_NE(error_of(random).find("'train.optimizer' is string"), std::string::npos);
  random.random = {fer::parse_random_axis("train.weight_decay=0:1")};
  random.trials = 0;
  EXPECT_NE(error_of(random).find("--trials"), std::string::npos);
  EXPECT_FALSE(fer_test::fs::exists(out / "s"));  // planning writes nothing
}

TEST(Sweep, RandomTrialsStayInRangeAreLogUniformAndRepeatWithTheirSeed) {
  fer::SweepSpec spec;
  spec.out_dir = "unused";
  spec.random = {fer::parse_random_axis("train.lr=1e-4:1e-2:log"), fer::parse_random_axis("train.epochs=2:5")};
  spec.trials = 400;
  spec.seed = 11;
  const auto plan = fer::plan_sweep(spec);
  ASSERT_EQ(plan.runs.size(), 400u);
  int below_geometric_mean = 0;
  std::set<int> epochs;
  for (const auto& run : plan.runs) {
    EXPECT_GE(run.config.train.lr, 1e-4 * 0.9999);
    EXPECT_LE(run.config.train.lr, 1e-2 * 1.0001);
    below_geometric_mean += run.config.train.lr < 1e-3;
    epochs.insert(run.config.train.epochs);
  }
  // Log-uniform: half the draws below sqrt(lo * hi) (400 draws: 0.5 +- 0.025 sd).
  EXPECT_GT(below_geometric_mean, 400 * 0.4);
  EXPECT_LT(below_geometric_mean, 400 * 0.6);
  EXPECT_EQ(epochs, (std::set<int>{2, 3, 4, 5}));  // ints rounded, both ends reached
  EXPECT_EQ(fer::plan_sweep(spec).runs[7].name, plan.runs[7].name);
  spec.seed = 12;
  EXPECT_NE(fer::plan_sweep(spec).runs[7].name, plan.runs[7].name);
  EXPECT_EQ(plan.runs[0].name.rfind("trial000,train.lr=", 0), 0u);
}

namespace {

// Three runs of two epochs over train.lr, on synthetic data, into out/sweep.
fer::SweepPlan three_learning_rates(const fer_test::SyntheticData& data, const fer_test::TempDir& out) {
  auto base = fer_test::tiny_config(data.csv, 3);
  base.train.epochs = 2;
  base.train.tensorboard = false;
  fer::SweepSpec spec;
  spec.base = base;
  spec.out_dir = out / "sweep";
  spec.grid = {fer::parse_grid_axis("train.lr=1e-3,1e-2,3e-2")};
  return fer::plan_sweep(spec);
}

}  // namespace

// A stop request (fer-sweep: SIGTERM) during the second run: that run stops after
// its batch with its position saved, is neither failed nor finished, no other
// run starts; the next invocation resumes it where it stopped.
TEST(Sweep, AStopRequestStopsTheRunningRunAfterItsBatchAndStartsNoOther) {
  fer_test::SyntheticData data;
  fer_test::TempDir out;
  const auto plan = three_learning_rates(data, out);

  int asked = 0, batches_of_first_run = -1;
  fer::SweepCallbacks first;
  first.log = [&](const std::string& m) {
    if (m.rfind(plan.runs[0].name + ":", 0) == 0) batches_of_first_run = asked;  // the first run finished
  };
  first.stop_requested = [&] {  // asked before each run and after every batch: stop 3 batches into the second run
    ++asked;
    return batches_of_first_run >= 0 && asked > batches_of_first_run + 3;
  };
  const auto stopped = fer::run_sweep(plan, first);
  EXPECT_TRUE(stopped.interrupted);
  EXPECT_EQ(stopped.failed, 0);
  EXPECT_EQ(stopped.not_run, 2);
  EXPECT_EQ(fer::sweep_run_state(plan.runs[0]), fer::SweepRunState::finished);
  EXPECT_EQ(fer::sweep_run_state(plan.runs[1]), fer::SweepRunState::interrupted);
  EXPECT_EQ(fer::sweep_run_state(plan.runs[2]), fer::SweepRunState::pending);
  const auto saved = fer::load_checkpoint(plan.runs[1].dir + "/last.pt", torch::kCPU, fer::training_state_blob_names());
  const auto position = fer::interrupted_position(saved.blobs);
  ASSERT_TRUE(position.has_value());
  EXPECT_EQ(position->epoch, 1);

  const auto result = fer::run_sweep(plan, fer::SweepCallbacks{});
  EXPECT_FALSE(result.interrupted);
  EXPECT_EQ(result.failed + result.not_run, 0);
  EXPECT_EQ(fer::read_history_csv(plan.runs[1].dir + "/history.csv").size(), 2u);
}

TEST(Sweep, AnInterruptedSweepSkipsFinishedRunsAndResumesTheInterruptedOne) {
  fer_test::SyntheticData data;
  fer_test::TempDir out;
  const auto plan = three_learning_rates(data, out);

  // First invocation: stopped after one run (as by Ctrl-C between runs).
  std::vector<std::string> trained;
  fer::SweepCallbacks first;
  first.train = [&](const fer::SweepRun& run, bool resume) {
    trained.push_back(run.name + (resume ? " resumed" : ""));
    fer::train({run.config, run.dir, resume, {}});
  };
  first.should_abort = [&] { return !trained.empty(); };
  const auto partial = fer::run_sweep(plan, first);
  EXPECT_EQ(partial.not_run, 2);
  EXPECT_TRUE(partial.ranked.front().ok);
  fer::write_sweep_summary(partial);
  const std::string table = fer::read_file(out / "sweep/summary.md");
  EXPECT_NE(table.find("| not run |"), std::string::npos) << table;
  EXPECT_EQ(table.find("failed:"), std::string::npos) << table;  // no run is called failed
  // The second run killed after its first epoch: last.pt, no sweep_result.json.
  auto one_epoch = plan.runs[1].config;
  one_epoch.train.epochs = 1;
  fer::train({one_epoch, plan.runs[1].dir, false, {}});
  EXPECT_EQ(fer::sweep_run_state(plan.runs[1]), fer::SweepRunState::interrupted);

  trained.clear();
  std::vector<fer::SweepProgress> progress;
  fer::SweepCallbacks second = first;
  second.should_abort = nullptr;
  second.on_progress = [&](const fer::SweepProgress& p) { progress.push_back(p); };
  const auto result = fer::run_sweep(plan, second);
  EXPECT_EQ(trained, (std::vector<std::string>{plan.runs[1].name + " resumed", plan.runs[2].name}));
  ASSERT_EQ(result.ranked.size(), 3u);
  EXPECT_EQ(result.failed + result.not_run, 0);
  for (std::size_t i = 0; i + 1 < result.ranked.size(); ++i) EXPECT_GE(result.ranked[i].metric, result.ranked[i + 1].metric);
  const auto resumed = fer::read_history_csv(plan.runs[1].dir + "/history.csv");
  ASSERT_EQ(resumed.size(), 2u);
  EXPECT_EQ(resumed[1].epoch, 2);
  ASSERT_EQ(progress.size(), 3u);  // at start (1 done before), then after each run
  EXPECT_EQ(progress.front().finished, 1);
  EXPECT_EQ(progress.back().finished, 3);
  EXPECT_LT(progress.front().eta_seconds, 0);
  EXPECT_GT(progress[1].eta_seconds, 0);  // one run left after the second
  EXPECT_EQ(progress.back().eta_seconds, 0);

  fer::write_sweep_summary(result);
  const std::string csv = fer::read_file(out / "sweep/summary.csv");
  EXPECT_EQ(csv.substr(0, csv.find('\n')),
            "rank,run,train.lr,accuracy,balanced_accuracy,best_epoch,epochs,train_seconds,status");
  EXPECT_NE(csv.find("\n1,"), std::string::npos);
  EXPECT_NE(fer::read_file(out / "sweep/summary.md").find("| 3 | train.lr="), std::string::npos);
  if (fer::gnuplot_available()) EXPECT_GT(fer_test::fs::file_size(out / "sweep/train.lr.png"), 1000u);
  EXPECT_TRUE(fer_test::fs::exists(out / "sweep/sweep.json"));
}

TEST(Sweep, AFailingRunIsRecordedAndTheOthersStillRun) {
  fer_test::SyntheticData data;
  fer_test::TempDir out;
  auto base = fer_test::tiny_config(data.csv, 3);
  base.train.epochs = 1;
  base.train.tensorboard = false;
  fer::SweepSpec spec;
  spec.base = base;
  spec.out_dir = out / "sweep";
  spec.grid = {fer::parse_grid_axis("train.seed=1,2")};
  const auto plan = fer::plan_sweep(spec);
  fer::SweepCallbacks callbacks;
  callbacks.train = [&](const fer::SweepRun& run, bool resume) {
    if (run.config.train.seed == 1) throw std::runtime_error("loss is NaN");
    fer::train({run.config, run.dir, resume, {}});
  };
  const auto result = fer::run_sweep(plan, callbacks);
  EXPECT_EQ(result.failed, 1);
  EXPECT_TRUE(result.ranked[0].ok);
  EXPECT_EQ(result.ranked[1].error, "loss is NaN");
  fer::write_sweep_summary(result);
  EXPECT_NE(fer::read_file(out / "sweep/summary.md").find("failed: loss is NaN"), std::string::npos);
  EXPECT_EQ(fer::sweep_run_state(plan.runs[0]), fer::SweepRunState::pending);  // tried again next time
}

TEST(Compare, BestEpochFollowsTheMonitorAndTheTableShowsOnlyDifferingKeys) {
  fer_test::TempDir out;
  const std::string rows = "1,0.001,1.9,0.3,1.50,0.40,10\n2,0.001,1.7,0.4,1.30,0.55,12\n"
                           "3,0.001,1.6,0.5,1.35,0.55,11\n4,0.001,1.5,0.6,1.20,0.50,13\n";
  write_run(out / "a", "train: {lr: 0.001, early_stopping_monitor: val_accuracy}\n", rows, R"({"accuracy": 0.55, "n": 10})");
  write_run(out / "b", "train: {lr: 0.0003}\n", rows, "");
  const auto runs = fer::read_runs({out / "a", out / "b"});
  EXPECT_EQ(runs[0].best_epoch, 2);  // the first of the tied best accuracies, as best.pt
  EXPECT_EQ(runs[1].best_epoch, 4);  // val_loss (the default monitor): the lowest
  EXPECT_DOUBLE_EQ(runs[0].train_seconds, 46);
  EXPECT_DOUBLE_EQ(fer::run_metric(runs[0], "accuracy"), 0.55);
  EXPECT_DOUBLE_EQ(fer::run_metric(runs[1], "best_val_loss"), 1.20);
  try {
    fer::run_metric(runs[1], "accuracy");
    ADD_FAILURE() << "no metrics.json: no accuracy";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("best_val_accuracy"), std::string::npos) << e.what();
  }
  const auto comparison = fer::compare_runs(runs);
  EXPECT_EQ(comparison.differing_keys, (std::vector<std::string>{"train.lr", "train.early_stopping_monitor"}));
  EXPECT_EQ(comparison.values[0], (std::vector<std::string>{"0.001", "0.0003"}));
  const auto table = fer::comparison_markdown(comparison);
  EXPECT_NE(table.find("| a | 0.5500 |"), std::string::npos) << table;
  EXPECT_NE(table.find("| `train.lr` | 0.001 | 0.0003 |"), std::string::npos) << table;
  EXPECT_EQ(table.find("plurality"), std::string::npos) << table;  // no votes, no vote columns

  // A run on voted data (FER+) brings the annotator agreement: columns, and metrics to sort by.
  write_run(out / "c", "train: {lr: 0.001}\n", rows,
            R"({"accuracy": 0.8, "n": 10, "votes": {"n": 12, "cross_entropy": 0.61, "plurality_accuracy": 0.83}})");
  const auto voted = fer::read_runs({out / "a", out / "c"});
  EXPECT_DOUBLE_EQ(fer::run_metric(voted[1], "votes.plurality_accuracy"), 0.83);
  EXPECT_TRUE(fer::lower_is_better("votes.cross_entropy"));
  const auto voted_table = fer::comparison_markdown(fer::compare_runs(voted));
  EXPECT_NE(voted_table.find("| c | 0.8000 | – | – | 0.6100 | 0.8300 |"), std::string::npos) << voted_table;
  EXPECT_NE(voted_table.find("| a | 0.5500 | – | – | – | – |"), std::string::npos) << voted_table;
  if (!fer::gnuplot_available()) GTEST_SKIP() << "no gnuplot";
  fer::plot_run_curves(runs, "a vs b", out / "curves.png");
  EXPECT_GT(fer_test::fs::file_size(out / "curves.png"), 1000u);
}
