#include "fer/train.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <ATen/CPUGeneratorImpl.h>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <opencv2/core/version.hpp>
#include <sstream>
#include <thread>
#include <unistd.h>

#include "fer/augment.h"
#include "fer/checkpoint.h"
#include "fer/evaluate.h"
#include "fer/inference.h"
#include "fer/plot.h"
#include "fer/progress.h"
#include "fer/run_record.h"

namespace fer {
namespace fs = std::filesystem;

namespace {

constexpr const char* kOptimizerBlob = "optimizer.pt";
constexpr const char* kStateBlob = "trainer_state.json";

// Everything besides weights and optimizer that a resumed run must restore.
struct TrainerState {
  int epoch = 0;  // last completed epoch (1-based)
  double lr = 0;
  double plateau_best = -1;  // best validation accuracy seen by ReduceLROnPlateau
  int plateau_wait = 0;
  double best_val_loss = INFINITY;
  double best_val_accuracy = 0;
  int best_epoch = 0;
  int stop_wait = 0;
  bool finished = false;
  bool early_stopped = false;
  double train_seconds = 0;
  std::vector<EpochRecord> history;

  nlohmann::json to_json() const {
    nlohmann::json h = nlohmann::json::array();
    for (const auto& r : history)
      h.push_back({r.epoch, r.lr, r.train_loss, r.train_accuracy, r.val_loss, r.val_accuracy, r.seconds});
    return {{"epoch", epoch},
            {"lr", lr},
            {"plateau_best", plateau_best},
            {"plateau_wait", plateau_wait},
            {"best_val_loss", std::isfinite(best_val_loss) ? nlohmann::json(best_val_loss) : nlohmann::json(nullptr)},
            {"best_val_accuracy", best_val_accuracy},
            {"best_epoch", best_epoch},
            {"stop_wait", stop_wait},
            {"finished", finished},
            {"early_stopped", early_stopped},
            {"train_seconds", train_seconds},
            {"history", h}};
  }
  static TrainerState from_json(const nlohmann::json& j) {
    TrainerState s;
    s.epoch = j.at("epoch");
    s.lr = j.at("lr");
    s.plateau_best = j.at("plateau_best");
    s.plateau_wait = j.at("plateau_wait");
    s.best_val_loss = j.at("best_val_loss").is_null() ? INFINITY : j.at("best_val_loss").get<double>();
    s.best_val_accuracy = j.at("best_val_accuracy");
    s.best_epoch = j.at("best_epoch");
    s.stop_wait = j.at("stop_wait");
    s.finished = j.at("finished");
    s.early_stopped = j.at("early_stopped");
    s.train_seconds = j.at("train_seconds");
    for (const auto& r : j.at("history"))
      s.history.push_back({r[0].get<int>(), r[1], r[2], r[3], r[4], r[5], r[6]});
    return s;
  }
};

ModelOptions model_options(const Config& c) {
  ModelOptions o;
  o.architecture = c.model.architecture;
  o.filters.assign(c.model.filters.begin(), c.model.filters.end());
  o.dense_units = c.model.dense_units;
  o.conv_dropout = c.model.conv_dropout;
  o.dense_dropout = c.model.dense_dropout;
  return o;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void set_lr(torch::optim::Adam& optimizer, double lr) {
  for (auto& group : optimizer.param_groups()) static_cast<torch::optim::AdamOptions&>(group.options()).lr(lr);
}

// Per-epoch seeds: a resumed run draws exactly what an uninterrupted one would.
uint64_t epoch_seed(int seed, int epoch, uint64_t stream) {
  uint64_t x = (static_cast<uint64_t>(static_cast<uint32_t>(seed)) << 32) ^ (uint64_t(epoch) * 0x9E3779B97F4A7C15ull) ^
               (stream * 0xBF58476D1CE4E5B9ull);
  x ^= x >> 31;
  x *= 0x94D049BB133111EBull;
  return x ^ (x >> 29);
}

struct ValResult {
  double loss = 0, accuracy = 0;
};

ValResult validate(ClassifierImpl& model, const torch::Tensor& images, const torch::Tensor& labels,
                   const torch::Device& device, int64_t batch_size) {
  torch::NoGradGuard no_grad;
  model.eval();
  const int64_t n = images.size(0);
  double loss_sum = 0;
  int64_t correct = 0;
  for (int64_t start = 0; start < n; start += batch_size) {
    const auto idx = torch::arange(start, std::min(n, start + batch_size), torch::TensorOptions(torch::kInt64).device(images.device()));
    const auto x = to_model_input(images, idx, device);
    const auto y = labels.index_select(0, idx).to(device);
    const auto logits = model.forward(x);
    loss_sum += torch::nn::functional::cross_entropy(
                    logits, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                    .item<double>();
    correct += logits.argmax(1).eq(y).sum().item<int64_t>();
  }
  return {loss_sum / n, double(correct) / n};
}

}  // namespace

DatasetSplits load_configured_splits(const Config& c) {
  DatasetSplits splits = load_dataset(c.data.path);
  if (c.data.split == "stratified")
    splits = stratified_split(splits, c.data.val_fraction, c.data.test_fraction, static_cast<uint64_t>(c.data.split_seed));
  splits.train.truncate(static_cast<std::size_t>(c.data.max_train));
  splits.val.truncate(static_cast<std::size_t>(c.data.max_val));
  if (splits.train.size() == 0) throw DataError(c.data.path + ": the train split is empty");
  if (splits.val.size() == 0)
    throw DataError(c.data.path + ": the validation split is empty (CSV: no PublicTest rows; folders: no val/ or "
                                  "validation/ folder); set data.split: stratified to carve one out of all rows");
  return splits;
}

TrainSummary train(const TrainRequest& request) {
  const Config& cfg = request.config;
  const std::string run_dir = request.run_dir;
  fs::create_directories(run_dir);
  const auto path = [&](const std::string& name) { return (fs::path(run_dir) / name).string(); };

  auto log = std::make_shared<spdlog::logger>(
      "fer-train", spdlog::sinks_init_list{std::make_shared<spdlog::sinks::stderr_color_sink_mt>(),
                                           std::make_shared<spdlog::sinks::basic_file_sink_mt>(path("train.log"))});
  log->set_pattern("[%Y-%m-%d %H:%M:%S] [%^%l%$] %v");
  log->flush_on(spdlog::level::info);

  // A resumed run must continue the experiment it started, not a different one.
  const std::string resolved = to_yaml(cfg);
  const bool have_last = fs::exists(path("last.pt"));
  if (request.resume && have_last) {
    // Only train.epochs may change on resume (to extend a finished run).
    Config previous = cfg;
    apply_yaml(previous, read_text(path("config.yaml")), path("config.yaml"));
    Config same_epochs = cfg;
    same_epochs.train.epochs = previous.train.epochs;
    if (to_yaml(previous) != to_yaml(same_epochs))
      throw ConfigError("--resume: the config differs from " + path("config.yaml") +
                        " of the run being resumed (only train.epochs may change); resume with the same config or "
                        "start a new --out directory");
  } else if (have_last && !request.resume) {
    throw std::runtime_error(run_dir + " already holds a run (last.pt); pass --resume to continue it or choose "
                                       "another --out directory");
  }
  write_text_atomic(path("config.yaml"), resolved);
  // A run killed mid-write leaves a *.tmp beside the file it was replacing.
  for (const auto& entry : fs::directory_iterator(run_dir))
    if (entry.path().extension() == ".tmp") fs::remove(entry.path());

  const int threads = configure_cpu_runtime(cfg.train.threads);
  const auto device = resolve_device(cfg.train.device);
  write_text_atomic(path("environment.json"), environment_json(device, threads, {{"seed", cfg.train.seed}}).dump(2) + "\n");
  log->info("run directory {}; device {}; {} threads; LibTorch {}", run_dir, device.str(), threads, TORCH_VERSION);

  const auto splits = load_configured_splits(cfg);
  log->info("data {} ({} split)", cfg.data.path, cfg.data.split);
  log->info("train {}", class_summary(splits.train));
  log->info("val   {}", class_summary(splits.val));
  if (splits.test.size()) log->info("test  {}", class_summary(splits.test));

  // The whole split lives on the training device as uint8: batches are gathered there.
  const auto train_images = images_tensor(splits.train).to(device);
  const auto train_labels = labels_tensor(splits.train).to(device);
  const auto val_images = images_tensor(splits.val).to(device);
  const auto val_labels = labels_tensor(splits.val).to(device);
  const int64_t n_train = train_images.size(0);

  torch::manual_seed(static_cast<uint64_t>(cfg.train.seed));
  CheckpointMeta meta;
  meta.model = model_options(cfg);
  meta.class_names = emotion_names();
  Classifier model = make_model(meta.model);
  LoadedCheckpoint last;  // the resume point, when resuming
  if (request.resume && have_last) {
    last = load_checkpoint(path("last.pt"), device, {kOptimizerBlob, kStateBlob});
    if (!last.blobs.count(kOptimizerBlob) || !last.blobs.count(kStateBlob))
      throw std::runtime_error(path("last.pt") + " holds no training state; cannot resume");
    model = last.model;
  }
  model->to(device);
  log->info("model {}: {} parameters", cfg.model.architecture, count_parameters(*model));

  torch::optim::Adam optimizer(model->parameters(),
                               torch::optim::AdamOptions(cfg.train.lr).weight_decay(cfg.train.weight_decay));
  TrainerState state;
  state.lr = cfg.train.lr;

  if (last.model) {
    torch::serialize::InputArchive archive;
    std::istringstream optimizer_stream(last.blobs[kOptimizerBlob]);
    archive.load_from(optimizer_stream, device);
    optimizer.load(archive);
    state = TrainerState::from_json(nlohmann::json::parse(last.blobs[kStateBlob]));
    set_lr(optimizer, state.lr);
    log->info("resuming after epoch {} (lr {:.3g}, best val loss {:.4f} at epoch {})", state.epoch, state.lr,
              state.best_val_loss, state.best_epoch);
  }

  torch::Tensor class_weights;
  if (cfg.train.class_weighted) {
    const auto w = inverse_frequency_weights(splits.train);
    class_weights = torch::tensor(w, torch::kFloat32).to(device);
    log->info("class-weighted loss: {}", fmt::join(w, ", "));
  }
  const auto augment = AugmentOptions::from_config(cfg.augment);
  const int64_t batch_size = cfg.train.batch_size;
  // A final batch of one image would break BatchNorm in training mode.
  const int64_t usable = (n_train % batch_size == 1) ? n_train - 1 : n_train;
  const int64_t batches = (usable + batch_size - 1) / batch_size;

  if (state.finished && !state.early_stopped && state.epoch < cfg.train.epochs) state.finished = false;
  while (!state.finished && state.epoch < cfg.train.epochs) {
    const int epoch = state.epoch + 1;
    const auto t0 = std::chrono::steady_clock::now();
    torch::manual_seed(epoch_seed(cfg.train.seed, epoch, 1));  // dropout
    auto gen = at::detail::createCPUGenerator(epoch_seed(cfg.train.seed, epoch, 2));
    const auto order = torch::randperm(n_train, gen, torch::kInt64).to(device);

    model->train();
    torch::Tensor loss_sum = torch::zeros({}, torch::TensorOptions(torch::kFloat64).device(device));
    torch::Tensor correct = torch::zeros({}, torch::TensorOptions(torch::kInt64).device(device));
    ProgressBar bar(batches, fmt::format("epoch {:3d}/{}", epoch, cfg.train.epochs));
    for (int64_t b = 0; b < batches; ++b) {
      const auto idx = order.slice(0, b * batch_size, std::min(usable, (b + 1) * batch_size));
      auto x = to_model_input(train_images, idx, device);
      const auto y = train_labels.index_select(0, idx);
      x = augment_batch(x, augment, gen);
      optimizer.zero_grad();
      const auto logits = model->forward(x);
      auto opts = torch::nn::functional::CrossEntropyFuncOptions();
      if (class_weights.defined()) opts = opts.weight(class_weights);
      const auto loss = torch::nn::functional::cross_entropy(logits, y, opts);
      loss.backward();
      optimizer.step();
      loss_sum += loss.detach().to(torch::kFloat64) * idx.size(0);
      correct += logits.detach().argmax(1).eq(y).sum();
      bar.advance(1, idx.size(0), b % 20 == 0 ? fmt::format("loss {:.4f}", loss.item<double>()) : "");
    }
    bar.finish();
    const double train_loss = loss_sum.item<double>() / usable;
    const double train_acc = double(correct.item<int64_t>()) / usable;
    const auto val = validate(*model, val_images, val_labels, device, cfg.train.eval_batch_size);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    state.epoch = epoch;
    state.train_seconds += seconds;
    state.history.push_back({epoch, state.lr, train_loss, train_acc, val.loss, val.accuracy, seconds});

    // Early stopping watches the validation loss; the best weights are kept in best.pt.
    bool improved = false;
    if (val.loss < state.best_val_loss) {
      state.best_val_loss = val.loss;
      state.best_val_accuracy = val.accuracy;
      state.best_epoch = epoch;
      state.stop_wait = 0;
      improved = true;
    } else {
      ++state.stop_wait;
    }
    // ReduceLROnPlateau watches the validation accuracy: an absolute min_delta, and the rate
    // drops after more than lr_patience flat epochs (PyTorch's rule; Keras uses >=).
    const double lr_used = state.lr;
    if (val.accuracy > state.plateau_best + cfg.train.lr_min_delta) {
      state.plateau_best = val.accuracy;
      state.plateau_wait = 0;
    } else if (++state.plateau_wait > cfg.train.lr_patience) {
      const double new_lr = std::max(state.lr * cfg.train.lr_factor, cfg.train.lr_min);
      if (new_lr < state.lr) {
        state.lr = new_lr;
        set_lr(optimizer, new_lr);
        log->info("validation accuracy flat for {} epochs: learning rate {:.3g} -> {:.3g}", cfg.train.lr_patience + 1,
                  lr_used, new_lr);
      }
      state.plateau_wait = 0;
    }
    if (state.stop_wait >= cfg.train.early_stopping_patience) {
      state.early_stopped = true;
      state.finished = true;
    }
    if (epoch >= cfg.train.epochs) state.finished = true;

    meta.info = {{"epoch", epoch}, {"val_loss", val.loss}, {"val_accuracy", val.accuracy}, {"config_name", cfg.name}};
    if (improved) save_checkpoint(path("best.pt"), *model, meta);
    torch::serialize::OutputArchive archive;
    optimizer.save(archive);
    std::ostringstream optimizer_stream;
    archive.save_to(optimizer_stream);
    // last.pt is the resume point: written after best.pt so a kill between the two
    // resumes this epoch's state with best.pt already up to date.
    save_checkpoint(path("last.pt"), *model, meta,
                    {{kOptimizerBlob, optimizer_stream.str()}, {kStateBlob, state.to_json().dump()}});
    write_history_csv(state.history, path("history.csv"));
    log->info("epoch {:3d}  lr {:.2g}  train loss {:.4f} acc {:.4f}  val loss {:.4f} acc {:.4f}{}  {:.0f}s "
              "({:.0f} img/s)",
              epoch, lr_used, train_loss, train_acc, val.loss, val.accuracy, improved ? " *" : "", seconds,
              usable / seconds);
    if (state.early_stopped)
      log->info("early stopping: no lower validation loss for {} epochs; best epoch {}", state.stop_wait,
                state.best_epoch);
  }

  TrainSummary summary;
  summary.run_dir = run_dir;
  summary.epochs_completed = state.epoch;
  summary.best_epoch = state.best_epoch;
  summary.best_val_loss = state.best_val_loss;
  summary.best_val_accuracy = state.best_val_accuracy;
  summary.early_stopped = state.early_stopped;
  summary.best_checkpoint = path("best.pt");
  log->info("training done: {} epochs in {}; evaluating best.pt (epoch {})", state.epoch,
            format_duration(state.train_seconds), state.best_epoch);

  EvaluationOptions eval;
  eval.tta = cfg.eval.tta;
  eval.batch_size = cfg.train.eval_batch_size;
  eval.device = cfg.train.device;
  eval.threads = cfg.train.threads;
  eval.history_csv = path("history.csv");
  eval.split = "val";
  eval.data_source = cfg.data.path;
  const auto val_report = evaluate_checkpoint(path("best.pt"), splits.val, run_dir, eval);
  summary.final_val_accuracy = val_report.metrics.accuracy;
  summary.final_val_balanced_accuracy = val_report.metrics.balanced_accuracy;
  log->info("validation: accuracy {:.4f}  balanced accuracy {:.4f}  macro F1 {:.4f}  macro AUC {:.4f}",
            val_report.metrics.accuracy, val_report.metrics.balanced_accuracy, val_report.metrics.macro_f1,
            val_report.metrics.macro_auc.value_or(NAN));
  if (splits.test.size() > 0) {
    eval.split = "test";
    eval.history_csv.clear();
    const auto test_report = evaluate_checkpoint(path("best.pt"), splits.test, path("test"), eval);
    log->info("test: accuracy {:.4f}  balanced accuracy {:.4f}  (reported only; never used for selection)",
              test_report.metrics.accuracy, test_report.metrics.balanced_accuracy);
  }
  return summary;
}

}  // namespace fer
