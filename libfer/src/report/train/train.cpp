#include "fer/report/train/train.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <chrono>
#include <filesystem>
#include <optional>

#include "fer/common/io.h"
#include "fer/data/sampler.h"
#include "fer/engine/hooks.h"
#include "fer/explain/background.h"
#include "fer/inference/inference.h"
#include "fer/report/environment.h"
#include "fer/report/run_lock.h"
#include "fer/report/evaluate/evaluate.h"
#include "fer/models/model_store.h"
#include "fer/report/progress.h"
#include "fer/report/train/tensorboard.h"

namespace fer {
namespace fs = std::filesystem;

const std::vector<std::string>& keys_a_resumed_run_may_change() {
  // They extend the run or move it to other hardware; faces, live and alert play no part in training.
  static const std::vector<std::string> keys{"train.epochs",         "train.threads",
                                             "train.device",         "train.background_k",
                                             "train.distributed_timeout_s", "train.distributed_bucket_mb",
                                             "faces.",               "live.",
                                             "alert."};
  return keys;
}

bool may_change_on_resume(const std::string& key) {
  for (const auto& k : keys_a_resumed_run_may_change())
    if (k.back() == '.' ? key.rfind(k, 0) == 0 : key == k) return true;
  return false;
}

std::string resume_rule() {
  std::string keys;
  for (const auto& k : keys_a_resumed_run_may_change())
    keys += (keys.empty() ? "" : ", ") + (k.back() == '.' ? k + "*" : k);
  return "a resumed run continues after its last completed epoch (or at the batch where a stop signal interrupted it) with the config of its config.yaml; only these keys "
         "may differ: " + keys;
}

namespace {

// Rank 0 logs to the console and train.log; the other ranks print only
// warnings and errors, tagged with their rank.
std::shared_ptr<spdlog::logger> make_run_logger(const std::string& log_path, int rank) {
  if (rank != 0) {
    auto log = std::make_shared<spdlog::logger>("fer-train", std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
    log->set_pattern(fmt::format("[%Y-%m-%d %H:%M:%S] [rank {}] [%^%l%$] %v", rank));
    log->set_level(spdlog::level::warn);
    return log;
  }
  auto log = std::make_shared<spdlog::logger>(
      "fer-train", spdlog::sinks_init_list{std::make_shared<spdlog::sinks::stderr_color_sink_mt>(),
                                           std::make_shared<spdlog::sinks::basic_file_sink_mt>(log_path)});
  log->set_pattern("[%Y-%m-%d %H:%M:%S] [%^%l%$] %v");
  log->flush_on(spdlog::level::info);
  return log;
}

// The same file under another name (../shared vs /work/shared) is the same data.
void same_files_same_names(Config& previous, const Config& now) {
  const auto same_file = [](const std::string& a, const std::string& b) {
    std::error_code ec;
    return !a.empty() && !b.empty() && fs::equivalent(a, b, ec) && !ec;
  };
  if (same_file(previous.data.path, now.data.path)) previous.data.path = now.data.path;
  if (same_file(previous.data.votes, now.data.votes)) previous.data.votes = now.data.votes;
}

// A resumed run must continue the experiment it started, not a different one.
// Writes config.yaml and removes the *.tmp a killed write leaves (rank 0 only:
// every rank checks alike, so all refuse a wrong request together). Returns
// whether a run is resumed.
bool prepare_run_dir(const TrainRequest& request) {
  const auto path = [&](const char* name) { return (fs::path(request.run_dir) / name).string(); };
  if (request.distributed.rank == 0) fs::create_directories(request.run_dir);
  const bool have_last = fs::exists(path("last.pt"));
  if (request.resume && have_last) {
    Config previous = request.config;  // keys the saved file lacks (added since) keep today's values
    apply_yaml(previous, read_file(path("config.yaml")), path("config.yaml"));
    same_files_same_names(previous, request.config);
    std::string changed;
    for (const auto& difference : config_differences(previous, request.config))
      if (!may_change_on_resume(difference.substr(0, difference.find(':')))) changed += "\n  " + difference;
    if (!changed.empty())
      throw ConfigError("cannot resume: the config differs from " + path("config.yaml") + " of the run being resumed in:" +
                        changed + "\n(" + resume_rule() + "); resume with the same config or start a new run directory");
  } else if (have_last) {
    throw std::runtime_error(request.run_dir + " already holds a run (last.pt); resume it (fer-train --resume) or "
                                               "choose another run directory");
  }
  if (request.distributed.rank == 0) {
    write_text_atomic(path("config.yaml"), to_yaml(request.config));
    for (const auto& entry : fs::directory_iterator(request.run_dir))
      if (entry.path().extension() == ".tmp") fs::remove(entry.path());
  }
  return request.resume && have_last;
}

// The network's input is a crop of the faces: it cannot be larger than they are.
void check_crop_fits(const Config& c) {
  if (c.augment.crop_size > c.data.image_size)
    throw ConfigError("augment.crop_size " + std::to_string(c.augment.crop_size) + " exceeds data.image_size " +
                      std::to_string(c.data.image_size) + ": crops are taken from the faces (set augment.crop_size <= " +
                      std::to_string(c.data.image_size) + "; equal = no crop)");
}

ModelOptions model_options(const Config& c, int num_classes) {
  ModelOptions o;
  o.architecture = c.model.architecture;
  o.num_classes = num_classes;
  o.image_size = c.data.image_size;
  o.input_size = c.augment.crop_size;
  o.filters.assign(c.model.filters.begin(), c.model.filters.end());
  o.dense_units = c.model.dense_units;
  o.conv_dropout = c.model.conv_dropout;
  o.dense_dropout = c.model.dense_dropout;
  o.normalize = c.data.normalize;
  return o;
}

StepOptions step_options(const Config& cfg, const Dataset& train_split, const torch::Device& device,
                         spdlog::logger& log) {
  StepOptions o;
  o.batch_size = cfg.train.batch_size;
  o.augment = AugmentOptions::from_config(cfg.augment);
  o.augment.normalize = parse_input_normalization(cfg.data.normalize);
  o.mix = MixOptions::from_config(cfg.augment);
  o.label_smoothing = cfg.train.label_smoothing;
  o.target = parse_train_target(cfg.train.target);
  o.precision = parse_precision(cfg.train.precision);
  o.channels_last = cfg.train.channels_last;
  o.seed = cfg.train.seed;
  if (cfg.train.class_weighted) {
    const auto w = inverse_frequency_weights(train_split);
    o.class_weights = torch::tensor(w, torch::kFloat32).to(device);
    log.info("class-weighted loss: {}", fmt::join(w, ", "));
  }
  return o;
}

TrainData to_device(const Dataset& split, const torch::Device& device) {
  // The whole split lives on the training device as uint8: batches are gathered there.
  TrainData data(images_tensor(split).to(device), labels_tensor(split).to(device));
  if (split.has_votes())
    data.votes = torch::from_blob(const_cast<float*>(split.votes.data()),
                                  {static_cast<int64_t>(split.size()), static_cast<int64_t>(split.num_classes())},
                                  torch::kFloat32)
                     .to(device, /*non_blocking=*/false, /*copy=*/true);
  return data;
}

// This rank's contiguous share of the validation split (sharded validation).
TrainData val_shard(const Dataset& val, const Communicator& comm, const torch::Device& device) {
  const auto [begin, end] = shard_range(static_cast<int64_t>(val.size()), comm.rank(), comm.world_size());
  // Sliced on the host: only this rank's share goes to its device.
  return {images_tensor(val).slice(0, begin, end).to(device), labels_tensor(val).slice(0, begin, end).to(device)};
}

// A new run's model: random, or model.weights' (same architecture, sizes and
// classes) set to take the run's input normalisation.
Classifier initial_model(const Config& cfg, const CheckpointMeta& meta, const torch::Device& device, const LogFn& log) {
  if (cfg.model.weights.empty()) return make_model(meta.model);
  std::vector<std::string> paths;
  try {
    paths = resolve_models(cfg.model.weights);
  } catch (const std::runtime_error& e) {
    throw ConfigError(std::string("model.weights: ") + e.what());
  }
  if (paths.size() != 1)
    throw ConfigError(fmt::format("model.weights: {} is an ensemble of {} networks; give one", cfg.model.weights, paths.size()));
  auto source = load_checkpoint(paths.front(), device);
  auto theirs = source.meta.model.to_json(), ours = meta.model.to_json();
  theirs.erase("normalize"), ours.erase("normalize");
  if (theirs != ours)
    throw ConfigError(fmt::format("model.weights: {} is {}, the config asks for {}", cfg.model.weights, theirs.dump(), ours.dump()));
  if (source.meta.class_names != meta.class_names)
    throw ConfigError(fmt::format("model.weights: {} has the classes [{}], the data [{}]", cfg.model.weights,
                                  fmt::join(source.meta.class_names, ", "), fmt::join(meta.class_names, ", ")));
  source.model->set_input_normalization(parse_input_normalization(meta.model.normalize));
  source.model->train();
  log(fmt::format("model weights from {} ({}; its inputs normalised '{}', this run's '{}')", cfg.model.weights, paths.front(),
                  source.meta.model.normalize, meta.model.normalize));
  return source.model;
}

// distill.teacher's hook, the teacher loaded on the training device.
std::shared_ptr<DistillationHook> make_distillation_hook(const DistillConfig& d, int image_size,
                                                         const torch::Device& device, const LogFn& log) {
  std::vector<std::string> checkpoints;
  try {
    checkpoints = resolve_models(d.teacher);
  } catch (const std::runtime_error& e) {
    throw ConfigError(std::string("distill.teacher: ") + e.what());
  }
  if (checkpoints.size() != 1)
    throw ConfigError(fmt::format("distill.teacher: {} is an ensemble of {} networks; the teacher must be one network",
                                  d.teacher, checkpoints.size()));
  const auto teacher = load_checkpoint(checkpoints.front(), device);
  const auto& m = teacher.meta.model;
  if (m.image_size != image_size)
    throw ConfigError(fmt::format("distill.teacher: {} takes {}x{} faces, data.image_size is {}", d.teacher,
                                  m.image_size, m.image_size, image_size));
  log(fmt::format("distilling from {} ({}: {}, {} parameters, input {}): alpha {:g}, temperature {:g}", d.teacher,
                  checkpoints.front(), m.architecture, count_parameters(*teacher.model), m.input_size, d.alpha,
                  d.temperature));
  return std::make_shared<DistillationHook>(teacher.model, m.input_size, DistillOptions{d.alpha, d.temperature},
                                            d.teacher);
}

// The hooks of a run, in the order they run after each epoch: average across
// ranks, evaluate, then everything that reads the validation metrics, then (rank
// 0 only) save and log.
// The hooks train() keeps to read after training (tensorboard: null when off).
struct RunHooks {
  std::shared_ptr<BestModelHook> best;
  std::shared_ptr<HistoryHook> history;
  std::shared_ptr<TensorBoardHook> tensorboard;
};

void register_hooks(SupervisedTrainer& trainer, const Config& cfg, TrainData val, const std::string& run_dir,
                    const CheckpointMeta& meta, const LogFn& log, const RunHooks& kept,
                    const std::shared_ptr<Communicator>& comm, const std::function<bool()>& stop_requested) {
  if (stop_requested) trainer.register_hook(std::make_shared<InterruptHook>(stop_requested, comm));
  if (comm->world_size() > 1)
    trainer.register_hook(std::make_shared<DataParallelHook>(
        comm, static_cast<int64_t>(cfg.train.distributed_bucket_mb * (1 << 20))));
  if (!cfg.distill.teacher.empty()) trainer.register_hook(make_distillation_hook(cfg.distill, cfg.data.image_size, trainer.device(), log));
  trainer.register_hook(std::make_shared<DivergenceGuard>());
  if (cfg.train.ema_decay > 0) trainer.register_hook(std::make_shared<EmaHook>(cfg.train.ema_decay, make_model(meta.model)));
  trainer.register_hook(std::make_shared<EvalHook>(std::move(val), cfg.train.eval_batch_size, comm));
  trainer.register_hook(std::make_shared<LrScheduleHook>(ScheduleOptions::from_config(cfg.train), log));
  trainer.register_hook(kept.best);
  if (comm->rank() != 0) return;
  trainer.register_hook(kept.history);
  if (kept.tensorboard) trainer.register_hook(kept.tensorboard);  // before last.pt, which records its length
  trainer.register_hook(std::make_shared<CheckpointHook>(run_dir, meta));
  trainer.register_hook(std::make_shared<LoggingHook>(log, progress_bars()));
}

// Joins the data-parallel job (a world of one without one) and says how the
// batch and the rate relate.
std::shared_ptr<Communicator> join_job(const TrainRequest& request, const torch::Device& device, spdlog::logger& log) {
  const auto& env = request.distributed;
  if (!env.distributed()) return local_communicator();
  auto comm = connect_process_group(env, device, std::chrono::seconds(request.config.train.distributed_timeout_s));
  const int batch = request.config.train.batch_size;
  log.info("data parallel: {} ranks over {} ({}:{}), {} images per rank per step, effective batch {}; train.lr {:g} "
           "is used as set (linear scaling rule: multiply the single-process rate by {} for the same per-image step)",
           env.world_size, comm->backend(), env.master_addr, env.master_port, batch, batch * env.world_size,
           request.config.train.lr, env.world_size);
  return comm;
}

// Each rank's own GPU under a launcher: cuda:LOCAL_RANK.
torch::Device rank_device(const Config& cfg, const DistributedEnv& env) {
  auto device = resolve_device(cfg.train.device);
  if (env.distributed() && device.is_cuda() && cfg.train.device.find(':') == std::string::npos)
    device = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(env.local_rank));
  return device;
}

void evaluate_run(const Config& cfg, const DatasetSplits& splits, const std::string& run_dir, spdlog::logger& log,
                  TrainSummary& summary) {
  EvaluationOptions eval;
  eval.tta = parse_tta(cfg.eval.tta);
  eval.precision = parse_precision(cfg.eval.precision);
  eval.batch_size = cfg.train.eval_batch_size;
  eval.device = cfg.train.device;
  eval.history_csv = (fs::path(run_dir) / "history.csv").string();
  eval.split = "val";
  eval.data_source = cfg.data.path;
  const auto val_report = evaluate_checkpoint(summary.best_checkpoint, splits.val, run_dir, eval);
  summary.final_val_accuracy = val_report.metrics.accuracy;
  summary.final_val_balanced_accuracy = val_report.metrics.balanced_accuracy;
  log.info("validation: accuracy {:.4f}  balanced accuracy {:.4f}  macro F1 {:.4f}  macro AUC {:.4f}",
           val_report.metrics.accuracy, val_report.metrics.balanced_accuracy, val_report.metrics.macro_f1,
           val_report.metrics.macro_auc.value_or(NAN));
  if (splits.test.size() == 0) return;
  eval.split = "test";
  eval.history_csv.clear();
  const auto test_report = evaluate_checkpoint(summary.best_checkpoint, splits.test, (fs::path(run_dir) / "test").string(), eval);
  log.info("test: accuracy {:.4f}  balanced accuracy {:.4f}  (reported only; never used for selection)",
           test_report.metrics.accuracy, test_report.metrics.balanced_accuracy);
}

// The evaluation's confusion matrices (when charts were drawn) as image
// summaries at the best epoch's step.
void add_charts_to_tensorboard(TensorBoardHook& tensorboard, const std::string& run_dir, int best_epoch) {
  for (const char* chart : {"confusion_matrix", "confusion_matrix_normalized"}) {
    const auto png = fs::path(run_dir) / (std::string(chart) + ".png");
    if (fs::exists(png)) tensorboard.add_image(std::string("val/") + chart, png.string(), best_epoch);
  }
}

}  // namespace

// Checks train.target against the data, and applies the majority rule to the
// training faces (those without a majority label are left out, as Barsoum et al. do).
void select_for_target(const Config& c, Dataset& train) {
  const auto target = parse_train_target(c.train.target);
  if (target != TrainTarget::majority && !train.has_votes())
    throw ConfigError("train.target: " + c.train.target + " trains on annotator votes, and " + c.data.path +
                      " has one label per face (FER+ data has votes); use majority");
  if (target == TrainTarget::multi_target && c.train.label_smoothing > 0)
    throw ConfigError("train.label_smoothing: does not apply to train.target multi_target (its loss has no target "
                      "distribution to smooth); set it to 0");
  if (target == TrainTarget::majority && train.has_votes()) {
    const auto before = static_cast<std::int64_t>(train.size());
    train.keep_if([&](std::size_t i) { return train.majority[i] >= 0; });
    const auto left_out = before - static_cast<std::int64_t>(train.size());
    if (left_out > 0) train.dropped.push_back({"without a majority label (train.target majority)", left_out});
  }
}

DatasetSplits load_configured_splits(const Config& c) {
  DatasetSplits splits = load_dataset(c.data);
  select_for_target(c, splits.train);
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

// The DeepSHAP background that travels with the model: k-means centroids of the training faces.
void store_background(const Config& cfg, const Dataset& train, const std::string& checkpoint, spdlog::logger& log) {
  if (cfg.train.background_k == 0) return;
  KmeansOptions options;
  options.k = cfg.train.background_k;
  options.seed = static_cast<std::uint64_t>(cfg.train.seed);
  options.normalize = parse_input_normalization(cfg.data.normalize);
  if (static_cast<int>(train.size()) < options.min_cluster_faces) {
    log.info("no SHAP background stored: {} training faces are too few", train.size());
    return;
  }
  const auto started = std::chrono::steady_clock::now();
  const auto summary = kmeans_background(images_tensor(train), options);
  add_background_to_checkpoint(checkpoint, summary);
  log.info("SHAP background: {} k-means centroids of {} training faces stored in {} ({:.1f} s)", summary.centroids.size(0),
           summary.faces, checkpoint,
           std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
}

TrainSummary train(const TrainRequest& request) {
  const Config& cfg = request.config;
  check_crop_fits(cfg);
  const std::string& run_dir = request.run_dir;
  const auto path = [&](const char* name) { return (fs::path(run_dir) / name).string(); };
  std::optional<RunFolderLock> lock;  // rank 0's: a distributed run is one run
  if (request.distributed.rank == 0) lock.emplace(run_dir);
  const bool resuming = prepare_run_dir(request);
  const int rank = request.distributed.rank, world = request.distributed.world_size;
  auto log = make_run_logger(path("train.log"), rank);
  const LogFn log_line = [log](const std::string& m) { log->info("{}", m); };

  const int threads = torch::get_num_threads();  // train.threads: fer-train applies it at start
  const auto device = rank_device(cfg, request.distributed);
  configure_determinism(cfg.train.deterministic);
  check_precision_supported(parse_precision(cfg.train.precision), device);
  const auto comm = join_job(request, device, *log);
  if (rank == 0)
    write_text_atomic(path("environment.json"),
                      environment_json(device, threads, {{"seed", cfg.train.seed}, {"world_size", world}}).dump(2) + "\n");
  log->info("run directory {}; device {}; {} threads{}; LibTorch {}; precision {}", run_dir, device.str(), threads,
            world > 1 ? " per rank" : "", TORCH_VERSION, cfg.train.precision);

  const auto splits = load_configured_splits(cfg);
  log->info("data {} ({} split)", cfg.data.path, cfg.data.split);
  log->info("train {}", class_summary(splits.train));
  log->info("val   {}", class_summary(splits.val));
  if (splits.test.size()) log->info("test  {}", class_summary(splits.test));

  torch::manual_seed(static_cast<uint64_t>(cfg.train.seed));
  CheckpointMeta meta;
  meta.model = model_options(cfg, splits.train.num_classes());
  meta.class_names = splits.train.class_names;
  meta.info = {{"config_name", cfg.name}};
  LoadedCheckpoint last;
  if (resuming) last = load_checkpoint(path("last.pt"), device, training_state_blob_names());
  Classifier model = resuming ? last.model : initial_model(cfg, meta, device, log_line);
  model->to(device);
  if (cfg.train.channels_last) use_channels_last(*model);
  if (cfg.train.sync_batchnorm) use_sync_batchnorm(*model, comm);
  if (meta.model.input_size == meta.model.image_size)
    log->info("model {}: {} parameters, input {}x{}", cfg.model.architecture, count_parameters(*model),
              meta.model.input_size, meta.model.input_size);
  else
    log->info("model {}: {} parameters, input {}x{}: crops of {}x{} faces", cfg.model.architecture,
              count_parameters(*model), meta.model.input_size, meta.model.input_size, meta.model.image_size,
              meta.model.image_size);

  auto steps = step_options(cfg, splits.train, device, *log);
  steps.rank = rank;
  steps.world_size = world;
  SupervisedTrainer trainer(model, make_optimizer(model->parameters(), OptimizerOptions::from_config(cfg.train)),
                            to_device(splits.train, device), steps, device);
  trainer.progress().max_epochs = cfg.train.epochs;
  RunHooks kept{std::make_shared<BestModelHook>(cfg.train.early_stopping_monitor, cfg.train.early_stopping_patience,
                                                log_line),
                std::make_shared<HistoryHook>(path("history.csv")), nullptr};
  if (cfg.train.tensorboard && rank == 0)
    kept.tensorboard = std::make_shared<TensorBoardHook>(path("tb"), to_yaml(cfg), static_cast<int64_t>(splits.train.size()));
  const auto& best = kept.best;
  register_hooks(trainer, cfg, val_shard(majority_faces(splits.val), *comm, device), run_dir, meta, log_line, kept, comm,
                 request.stop_requested);
  if (resuming) {
    restore_training_state(trainer, last.blobs);
    const auto position = interrupted_position(last.blobs, rank);
    log->info("resuming after epoch {}{} (best {} epoch {})", trainer.progress().epoch,
              position ? fmt::format(", at batch {} of epoch {}", position->step + 1, position->epoch) : "",
              cfg.train.early_stopping_monitor, best->best_epoch());
  }
  trainer.train();

  TrainSummary summary;
  summary.run_dir = run_dir;
  const auto& progress = trainer.progress();
  summary.interrupted = progress.interrupt;
  summary.epochs_completed = progress.interrupt ? progress.epoch - 1 : progress.epoch;
  summary.interrupted_after_batch = progress.interrupt ? progress.step : 0;
  summary.batches_per_epoch = progress.steps_per_epoch;
  summary.best_epoch = best->best_epoch();
  summary.best_val_loss = best->best_val_loss();
  summary.best_val_accuracy = best->best_val_accuracy();
  summary.early_stopped = best->early_stopped();
  summary.best_checkpoint = path("best.pt");
  if (rank != 0 || summary.interrupted) return summary;  // rank 0 evaluates and writes, after the last epoch
  log->info("training done: {} epochs in {}; evaluating best.pt (epoch {})", summary.epochs_completed,
            format_duration(trainer.progress().train_seconds), summary.best_epoch);
  store_background(cfg, splits.train, summary.best_checkpoint, *log);
  evaluate_run(cfg, splits, run_dir, *log, summary);
  if (kept.tensorboard) add_charts_to_tensorboard(*kept.tensorboard, run_dir, summary.best_epoch);
  return summary;
}

}  // namespace fer
