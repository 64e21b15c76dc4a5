// Training: resume semantics, kill -9 recovery, and a smoke run that learns.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <fstream>
#include <functional>
#include <memory>
#include <thread>

#include <sys/wait.h>
#include <unistd.h>

#include "fer/config/config.h"
#include "fer/engine/hooks.h"
#include "fer/models/checkpoint.h"
#include "fer/report/plot.h"
#include "fer/report/train/train.h"
#include "test_util.h"

namespace {

fer::Config training_config(const std::string& csv) { return fer_test::tiny_config(csv, 3); }
using fer_test::SyntheticData;
using fer_test::expect_same_history;

}  // namespace

TEST(Training, ResumeContinuesAtTheNextEpochAndMatchesAnUninterruptedRun) {
  SyntheticData data;
  fer_test::TempDir runs;
  auto config = training_config(data.csv);

  config.train.epochs = 2;
  const auto first = fer::train({config, runs / "resumed", false});
  EXPECT_EQ(first.epochs_completed, 2);
  config.train.epochs = 3;
  const auto data_path = config.data.path;
  const auto at = data_path.find_last_of('/');
  config.data.path = data_path.substr(0, at) + "/./" + data_path.substr(at + 1);  // the same file, another name
  const auto resumed = fer::train({config, runs / "resumed", true});
  EXPECT_EQ(resumed.epochs_completed, 3);
  config.data.path = data_path;

  const auto straight = fer::train({config, runs / "straight", false});
  const auto h_resumed = fer::read_history_csv(runs / "resumed/history.csv");
  const auto h_straight = fer::read_history_csv(runs / "straight/history.csv");
  ASSERT_EQ(h_resumed.size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(h_resumed[i].epoch, i + 1);
  expect_same_history(h_resumed, h_straight);  // optimizer, scheduler and RNG state all carried over

  for (const char* f : {"config.yaml", "environment.json", "history.csv", "best.pt", "last.pt", "metrics.json",
                        "predictions.csv", "train.log", "test/metrics.json"})
    EXPECT_TRUE(fer_test::fs::exists(runs / (std::string("resumed/") + f))) << f;
  // The best checkpoint rebuilds the model with no config at hand.
  const auto best = fer::load_checkpoint(runs / "resumed/best.pt", torch::kCPU);
  EXPECT_EQ(best.meta.model.filters, (std::vector<int64_t>{8, 16, 32}));
}

// model.weights: a new run starts from a checkpoint's weights (at a vanishing
// learning rate they come out unchanged) and records its own normalisation; a
// checkpoint of other sizes is refused by the key's name.
TEST(Training, ModelWeightsStartARunFromACheckpointUnderItsOwnNormalisation) {
  SyntheticData data;
  fer_test::TempDir runs;
  auto config = training_config(data.csv);
  config.train.epochs = 1;
  fer::train({config, runs / "source", false});
  auto tuned = config;
  tuned.model.weights = runs / "source/best.pt";
  tuned.data.normalize = "equalize";
  tuned.train.lr = 1e-12;
  fer::train({tuned, runs / "tuned", false});
  const auto source = fer::load_checkpoint(runs / "source/best.pt", torch::kCPU);
  const auto started = fer::load_checkpoint(runs / "tuned/best.pt", torch::kCPU);
  EXPECT_EQ(source.meta.model.normalize, "none");
  EXPECT_EQ(started.meta.model.normalize, "equalize");
  EXPECT_EQ(started.model->input_normalization(), fer::InputNormalization::equalize);
  const auto a = source.model->named_parameters(), b = started.model->named_parameters();
  ASSERT_EQ(a.size(), b.size());
  for (const auto& p : a) EXPECT_TRUE(torch::allclose(p.value(), b[p.key()], 0, 1e-6)) << p.key();

  auto other = tuned;
  other.model.dense_units = 32;
  const auto other_size = fer_test::error_of([&] { fer::train({other, runs / "other", false}); });
  EXPECT_NE(other_size.find("model.weights"), std::string::npos) << other_size;
  EXPECT_NE(other_size.find("dense_units"), std::string::npos) << other_size;
#if FER_WITH_OPENCV  // resizing the CSV's 48x48 faces takes OpenCV
  auto larger = tuned;  // weights of 48x48 faces for 56x56 ones
  larger.data.image_size = larger.augment.crop_size = 56;
  const auto other_face = fer_test::error_of<fer::ConfigError>([&] { fer::train({larger, runs / "larger", false}); });
  EXPECT_NE(other_face.find("model.weights"), std::string::npos) << other_face;
  EXPECT_NE(other_face.find("\"image_size\":56"), std::string::npos) << other_face;
#endif
  auto cropped = config;  // a crop larger than the faces: refused before anything is written
  cropped.augment.crop_size = 56;
  const auto crop = fer_test::error_of<fer::ConfigError>([&] { fer::train({cropped, runs / "cropped", false}); });
  EXPECT_NE(crop.find("augment.crop_size 56 exceeds data.image_size 48"), std::string::npos) << crop;
  EXPECT_FALSE(fer_test::fs::exists(runs / "cropped"));
}

TEST(Training, ResumeRefusesADifferentConfigAndFreshRunsRefuseToOverwrite) {
  SyntheticData data;
  fer_test::TempDir runs;
  auto config = training_config(data.csv);
  config.train.epochs = 1;
  fer::train({config, runs / "r", false});
  EXPECT_THROW(fer::train({config, runs / "r", false}), std::runtime_error);  // would overwrite
  fer_test::SyntheticData other;
  auto other_data = config;
  other_data.data.path = other.csv;
  EXPECT_THROW(fer::train({other_data, runs / "r", true}), fer::ConfigError);  // another file is other data
  config.train.lr = 0.01;
  const auto changed = fer_test::error_of<fer::ConfigError>([&] { fer::train({config, runs / "r", true}); });
  EXPECT_NE(changed.find("train.lr: 0.001 -> 0.01"), std::string::npos) << changed;
  EXPECT_NE(changed.find(fer::resume_rule()), std::string::npos) << changed;
}

TEST(Training, TheResumeRuleIsOneListStatedAlikeByTheCodeAndTheDocs) {
  EXPECT_TRUE(fer::may_change_on_resume("train.epochs"));
  EXPECT_TRUE(fer::may_change_on_resume("faces.margin"));  // a whole section
  EXPECT_FALSE(fer::may_change_on_resume("train.lr"));
  EXPECT_FALSE(fer::may_change_on_resume("train.epochs_extra"));  // a key, not a prefix
  EXPECT_FALSE(fer::may_change_on_resume("distill.teacher"));
  for (const auto& key : fer::keys_a_resumed_run_may_change())
    EXPECT_NE(fer::resume_rule().find(key), std::string::npos) << key;
  // docs/training.md quotes the rule (Markdown escapes the section wildcards).
  auto doc = fer_test::read_text(std::string(fer_test::source_dir()) + "/docs/training.md");
  for (std::size_t at; (at = doc.find("\\*")) != std::string::npos;) doc.replace(at, 2, "*");
  EXPECT_NE(doc.find(fer::resume_rule()), std::string::npos) << "docs/training.md does not quote fer::resume_rule()";
}

TEST(Config, DifferencesNameEachChangedKeyWithBothValues) {
  fer::Config a, b;
  b.train.lr = 0.5;
  b.model.filters = {8, 16, 32};
  EXPECT_EQ(fer::config_differences(a, b),
            (std::vector<std::string>{"model.filters: [32, 64, 128] -> [8, 16, 32]", "train.lr: 0.001 -> 0.5"}));
  EXPECT_TRUE(fer::config_differences(a, a).empty());
}

// Killed with every stateful hook on (SGD momentum, step schedule after a warm-up
// (its rates do not depend on train.epochs, which the resume shortens), EMA, crop,
// erasing and mix streams): the resumed epochs are the ones an uninterrupted run has.
TEST(Training, KilledProcessResumesFromItsLastCompletedEpoch) {
  SyntheticData data;
  fer_test::TempDir runs;
  const std::string bin = std::string(fer_test::bin_dir()) + "/fer-train";
  ASSERT_TRUE(fer_test::fs::exists(bin)) << bin;
  const std::string config_path = runs / "kill.yaml";
  fer_test::write_file(config_path,
                       "name: kill\nmodel: {filters: [8, 16, 32], dense_units: 64}\n"
                       "data: {max_train: 0}\ntrain: {epochs: 40, batch_size: 16, threads: 2, seed: 9,\n"
                       "  optimizer: sgd, lr: 0.02, nesterov: true, schedule: step, step_size: 2, warmup_epochs: 1,\n"
                       "  label_smoothing: 0.1, ema_decay: 0.9, early_stopping_monitor: val_accuracy}\n"
                       "augment: {crop_size: 40, crop_padding: 2, erase_prob: 0.5, mixup_alpha: 0.4, cutmix_alpha: 1.0}\n");
  const std::string out = runs / "run";
  const std::string cmd = bin + " --config " + config_path + " --data " + data.csv + " --out " + out +
                          " > " + (runs / "log1") + " 2>&1 & echo $!";
  FILE* p = popen(cmd.c_str(), "r");
  int pid = 0;
  ASSERT_EQ(fscanf(p, "%d", &pid), 1);
  pclose(p);
  // Wait for at least two finished epochs, then kill -9 mid-epoch.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(3);
  std::size_t rows = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    if (fer_test::fs::exists(out + "/history.csv")) rows = fer::read_history_csv(out + "/history.csv").size();
    if (rows >= 2) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_GE(rows, 2u) << "training did not get through two epochs";
  // A second run into the folder is refused while the first one writes there.
  const std::string second = bin + " --config " + config_path + " --data " + data.csv + " --out " + out +
                             " --resume > " + (runs / "log_second") + " 2>&1";
  const int second_status = std::system(second.c_str());
  EXPECT_TRUE(WIFEXITED(second_status) && WEXITSTATUS(second_status) == 1) << "status " << second_status;
  const auto refusal = fer_test::read_text(runs / "log_second");
  EXPECT_NE(refusal.find(out + " is in use by another run (pid " + std::to_string(pid) + ","), std::string::npos)
      << refusal;
  kill(pid, SIGKILL);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const auto before = fer::read_history_csv(out + "/history.csv");
  ASSERT_LT(before.size(), 40u) << "the run finished before it could be killed";

  // Resume with fewer total epochs than planned so the test stays short.
  const int target = static_cast<int>(before.size()) + 2;
  const std::string resume = bin + " --config " + config_path + " --data " + data.csv + " --out " + out +
                             " --resume --set train.epochs=" + std::to_string(target) + " > " + (runs / "log2") +
                             " 2>&1";
  ASSERT_EQ(std::system(resume.c_str()), 0) << "resume failed; see " << runs / "log2";
  const auto after = fer::read_history_csv(out + "/history.csv");
  ASSERT_EQ(after.size(), static_cast<std::size_t>(target));
  for (std::size_t i = 0; i < after.size(); ++i) EXPECT_EQ(after[i].epoch, static_cast<int>(i + 1));
  for (std::size_t i = 0; i < before.size(); ++i) EXPECT_DOUBLE_EQ(after[i].val_loss, before[i].val_loss);
  // The same epochs trained without interruption.
  const std::string straight = bin + " --config " + config_path + " --data " + data.csv + " --out " +
                               (runs / "straight") + " --set train.epochs=" + std::to_string(target) + " > " +
                               (runs / "log3") + " 2>&1";
  ASSERT_EQ(std::system(straight.c_str()), 0) << "see " << runs / "log3";
  const auto reference = fer::read_history_csv(runs / "straight/history.csv");
  ASSERT_EQ(reference.size(), after.size());
  for (std::size_t i = 0; i < after.size(); ++i) {
    EXPECT_NEAR(after[i].train_loss, reference[i].train_loss, 1e-5) << "epoch " << i + 1;
    EXPECT_NEAR(after[i].val_loss, reference[i].val_loss, 1e-5) << "epoch " << i + 1;
  }
  for (const auto& e : fer_test::fs::directory_iterator(out))
    EXPECT_NE(e.path().extension(), ".tmp") << "leftover temporary file " << e.path();
}

namespace {

// Every parameter and buffer of two checkpoints' models is bit for bit the same.
void expect_same_weights(const std::string& a, const std::string& b) {
  const auto x = fer::load_checkpoint(a, torch::kCPU), y = fer::load_checkpoint(b, torch::kCPU);
  const auto xs = x.model->named_parameters(), ys = y.model->named_parameters();
  ASSERT_EQ(xs.size(), ys.size());
  for (const auto& p : xs) EXPECT_TRUE(torch::equal(p.value(), ys[p.key()])) << a << " and " << b << " differ in " << p.key();
  const auto xb = x.model->named_buffers(), yb = y.model->named_buffers();
  for (const auto& p : xb) EXPECT_TRUE(torch::equal(p.value(), yb[p.key()])) << a << " and " << b << " differ in " << p.key();
}

// A stop request after the `n`th batch of this process's training.
std::function<bool()> stop_after(int n) {
  auto batches = std::make_shared<int>(0);
  return [batches, n] { return ++*batches >= n; };
}

}  // namespace

// Interrupted twice, inside the first epoch and inside the second, with every
// random stream in use (dropout, crop, erasing, mixup/cutmix) and stateful hooks
// (SGD momentum, EMA): the resumed run ends bit for bit where one never
// interrupted does, and nothing is evaluated before the last epoch.
TEST(Training, AStopRequestSavesThePositionInTheEpochAndResumingIsBitIdentical) {
  SyntheticData data;
  fer_test::TempDir runs;
  auto config = training_config(data.csv);
  config.train.epochs = 3;
  config.train.batch_size = 16;
  config.train.optimizer = "sgd";
  config.train.nesterov = true;
  config.train.lr = 0.02;
  config.train.ema_decay = 0.9;
  config.augment.crop_size = 44;
  config.augment.crop_padding = 2;
  config.augment.erase_prob = 0.5;
  config.augment.mixup_alpha = 0.4;
  config.augment.cutmix_alpha = 1.0;
  const std::string run = runs / "interrupted";

  fer::TrainRequest first{config, run, false, {}, stop_after(3)};
  const auto stopped = fer::train(first);
  ASSERT_TRUE(stopped.interrupted);
  EXPECT_EQ(stopped.epochs_completed, 0);
  EXPECT_EQ(stopped.interrupted_after_batch, 3);
  ASSERT_GT(stopped.batches_per_epoch, 5);
  EXPECT_FALSE(fer_test::fs::exists(run + "/history.csv"));
  EXPECT_FALSE(fer_test::fs::exists(run + "/metrics.json"));
  const auto saved = fer::load_checkpoint(run + "/last.pt", torch::kCPU, fer::training_state_blob_names());
  const auto position = fer::interrupted_position(saved.blobs);
  ASSERT_TRUE(position.has_value());
  EXPECT_EQ(position->epoch, 1);
  EXPECT_EQ(position->step, 3);

  // Resumed, it stops again in the second epoch: 3 batches into it.
  const auto again = fer::train({config, run, true, {}, stop_after(static_cast<int>(stopped.batches_per_epoch))});
  ASSERT_TRUE(again.interrupted);
  EXPECT_EQ(again.epochs_completed, 1);
  EXPECT_EQ(again.interrupted_after_batch, 3);
  EXPECT_EQ(fer::read_history_csv(run + "/history.csv").size(), 1u);
  EXPECT_NE(fer_test::read_text(run + "/train.log").find("resuming after epoch 0, at batch 4 of epoch 1"),
            std::string::npos);

  const auto finished = fer::train({config, run, true, {}, [] { return false; }});
  EXPECT_FALSE(finished.interrupted);
  EXPECT_EQ(finished.epochs_completed, 3);
  EXPECT_TRUE(fer_test::fs::exists(run + "/metrics.json"));
  const auto straight = fer::train({config, runs / "straight", false});
  const auto h_resumed = fer::read_history_csv(run + "/history.csv");
  const auto h_straight = fer::read_history_csv(runs / "straight/history.csv");
  ASSERT_EQ(h_resumed.size(), h_straight.size());
  for (std::size_t i = 0; i < h_resumed.size(); ++i) {
    EXPECT_EQ(h_resumed[i].train_loss, h_straight[i].train_loss) << "epoch " << i + 1;
    EXPECT_EQ(h_resumed[i].train_accuracy, h_straight[i].train_accuracy) << "epoch " << i + 1;
    EXPECT_EQ(h_resumed[i].val_loss, h_straight[i].val_loss) << "epoch " << i + 1;
  }
  expect_same_weights(run + "/last.pt", runs / "straight/last.pt");
  expect_same_weights(run + "/best.pt", runs / "straight/best.pt");
}

// fer-train on SIGTERM: the batch finishes, last.pt records the position, the
// message says how to go on, exit 3; --resume then ends where an uninterrupted run does.
TEST(Training, SigtermStopsFerTrainAfterItsBatchWithExit3AndResumeContinuesThere) {
  SyntheticData data;
  fer_test::TempDir runs;
  const std::string bin = std::string(fer_test::bin_dir()) + "/fer-train";
  const std::string config_path = runs / "term.yaml";
  fer_test::write_file(config_path,
                       "name: term\nmodel: {filters: [8, 16, 32], dense_units: 64}\n"
                       "train: {epochs: 40, batch_size: 8, threads: 2, seed: 5, background_k: 0}\n"
                       "augment: {crop_size: 44, crop_padding: 2, erase_prob: 0.5}\n");
  const std::string out = runs / "run";
  const pid_t pid = fork();
  if (pid == 0) {
    if (!freopen((runs / "log1").c_str(), "w", stdout) || !freopen((runs / "log1").c_str(), "a", stderr)) _exit(126);
    execl(bin.c_str(), bin.c_str(), "--config", config_path.c_str(), "--data", data.csv.c_str(), "--out", out.c_str(),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  ASSERT_GT(pid, 0);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(3);
  std::size_t rows = 0;
  while (rows < 1 && std::chrono::steady_clock::now() < deadline) {
    if (fer_test::fs::exists(out + "/history.csv")) rows = fer::read_history_csv(out + "/history.csv").size();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_GE(rows, 1u) << "training did not get through an epoch";
  kill(pid, SIGTERM);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "fer-train died of signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 3);
  const auto log = fer_test::read_text(runs / "log1");
  EXPECT_NE(log.find("stopped by SIGTERM after batch "), std::string::npos) << log;
  EXPECT_NE(log.find("with --resume continues there (exit 3)"), std::string::npos) << log;
  const auto saved = fer::load_checkpoint(out + "/last.pt", torch::kCPU, fer::training_state_blob_names());
  const auto position = fer::interrupted_position(saved.blobs);
  ASSERT_TRUE(position.has_value()) << "last.pt holds no position";
  const int epochs = position->epoch + 1;

  const std::string resume = bin + " --config " + config_path + " --data " + data.csv + " --out " + out +
                             " --resume --set train.epochs=" + std::to_string(epochs) + " > " + (runs / "log2") + " 2>&1";
  ASSERT_EQ(std::system(resume.c_str()), 0) << fer_test::read_text(runs / "log2");
  const std::string straight = bin + " --config " + config_path + " --data " + data.csv + " --out " +
                               (runs / "straight") + " --set train.epochs=" + std::to_string(epochs) + " > " +
                               (runs / "log3") + " 2>&1";
  ASSERT_EQ(std::system(straight.c_str()), 0) << fer_test::read_text(runs / "log3");
  EXPECT_EQ(fer::read_history_csv(out + "/history.csv").size(), static_cast<std::size_t>(epochs));
  expect_same_weights(out + "/last.pt", runs / "straight/last.pt");
}

TEST(Training, SmokeRunOnFer2013LearnsBeyondChance) {
  std::string csv = fer_test::real_fer2013();
  fer_test::TempDir dir;
  double min_accuracy = 0.25;  // the majority class (happy) is 25% of FER-2013
  if (csv.empty()) {
    std::fprintf(stderr, "note: ../shared/data/fer2013/fer2013.csv.gz not found; smoke run on generated data\n");
    csv = dir / "synthetic.csv";
    fer_test::write_file(csv, fer_test::synthetic_csv(60, 10, 0, 2));
    min_accuracy = 0.5;
  }
  auto config = fer::load_config(std::string(fer_test::source_dir()) + "/configs/smoke.yaml");
  config.data.path = csv;
  const auto summary = fer::train({config, dir / "smoke", false});
  const auto history = fer::read_history_csv(dir / "smoke/history.csv");
  ASSERT_EQ(history.size(), static_cast<std::size_t>(config.train.epochs));
  // Properties of any correct run, not of one random stream: the training loss
  // falls from the first epoch to the last, some epoch's model beats always
  // answering the majority class, and the selected model beats chance. (The
  // validation loss of a 3-epoch run with BatchNorm can rise: not asserted.)
  EXPECT_LT(history.back().train_loss, history.front().train_loss);
  double best_val_accuracy = 0;
  for (const auto& epoch : history) best_val_accuracy = std::max(best_val_accuracy, epoch.val_accuracy);
  EXPECT_GT(best_val_accuracy, min_accuracy);
  EXPECT_GT(summary.final_val_accuracy, 1.0 / 7.0);
}
