#include "fer/engine/hooks.h"

#include <torch/torch.h>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <sstream>

#include "fer/data/augment.h"
#include "fer/engine/communicator.h"

namespace fer {
namespace {

constexpr const char* kOptimizerBlob = "optimizer.pt";
constexpr const char* kStateBlob = "trainer_state.json";
constexpr const char* kHookBlobs = "hook_blobs.cbor";
constexpr const char* kPositionBlob = "position.cbor";  // only in a last.pt written at an interrupt

SupervisedTrainer& supervised(TrainerBase& trainer) {
  auto* t = dynamic_cast<SupervisedTrainer*>(&trainer);
  if (!t) throw std::logic_error("this hook needs a SupervisedTrainer");
  return *t;
}

std::string module_bytes(torch::nn::Module& module) {
  torch::serialize::OutputArchive archive;
  module.save(archive);
  std::ostringstream out;
  archive.save_to(out);
  return out.str();
}

void load_module_bytes(torch::nn::Module& module, const std::string& bytes, const torch::Device& device) {
  torch::serialize::InputArchive archive;
  std::istringstream in(bytes);
  archive.load_from(in, device);
  module.load(archive);
}

nlohmann::json finite_or_null(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }
double null_as(const nlohmann::json& j, double fallback) { return j.is_null() ? fallback : j.get<double>(); }

}  // namespace

// --- LrScheduleHook ---

LrScheduleHook::LrScheduleHook(ScheduleOptions options, LogFn log)
    : options_(options), plateau_(options), lr_(options.lr), log_(std::move(log)) {}

void LrScheduleHook::before_epoch(TrainerBase& trainer) {
  auto& t = supervised(trainer);
  if (options_.kind != Schedule::plateau) lr_ = scheduled_lr(options_, t.progress().epoch - 1);
  set_optimizer_lr(t.optimizer(), lr_);
}

void LrScheduleHook::after_epoch(TrainerBase& trainer) {
  if (options_.kind != Schedule::plateau) return;
  const double used = lr_;
  lr_ = plateau_.step(trainer.progress().record.val_accuracy, lr_);
  if (lr_ < used)
    log_(fmt::format("validation accuracy flat for {} epochs: learning rate {:.3g} -> {:.3g}",
                     options_.plateau_patience + 1, used, lr_));
}

HookState LrScheduleHook::state_dict() const { return {{{"lr", lr_}, {"plateau", plateau_.state_dict()}}, {}}; }

void LrScheduleHook::load_state_dict(const HookState& s) {
  lr_ = s.json.at("lr").get<double>();
  plateau_.load_state_dict(s.json.at("plateau"));
}

// --- EvalHook ---

EvalHook::EvalHook(TrainData val, int64_t batch_size, std::shared_ptr<Communicator> comm)
    : val_(std::move(val)), batch_size_(batch_size), comm_(std::move(comm)) {}

void EvalHook::after_epoch(TrainerBase& trainer) {
  const auto start = std::chrono::steady_clock::now();
  auto& t = supervised(trainer);
  const auto& o = t.options();
  auto model = t.eval_model();
  torch::NoGradGuard no_grad;
  model->eval();
  const int64_t n = val_.images.size(0);
  double loss_sum = 0;
  int64_t correct = 0;
  for (int64_t start = 0; start < n; start += batch_size_) {
    const auto idx = torch::arange(start, std::min(n, start + batch_size_),
                                   torch::TensorOptions(torch::kInt64).device(val_.images.device()));
    auto x = center_crop(normalize_input(to_model_input(val_.images, idx, t.device()), o.augment.normalize),
                         o.augment.crop_size);
    if (o.channels_last) x = x.contiguous(torch::MemoryFormat::ChannelsLast);
    const auto y = val_.labels.index_select(0, idx).to(t.device());
    torch::Tensor logits;
    {
      AutocastScope autocast(t.device(), o.precision);
      logits = model->forward(x).to(torch::kFloat32);
    }
    loss_sum += torch::nn::functional::cross_entropy(
                    logits, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                    .item<double>();
    correct += logits.argmax(1).eq(y).sum().item<int64_t>();
  }
  std::vector<at::Tensor> totals{torch::tensor({loss_sum, double(correct), double(n)}, torch::kFloat64)};
  if (comm_) comm_->all_reduce_sum(totals, fmt::format("sum of validation metrics (epoch {})", trainer.progress().epoch));
  auto& r = trainer.progress().record;
  r.val_loss = totals[0][0].item<double>() / totals[0][2].item<double>();
  r.val_accuracy = totals[0][1].item<double>() / totals[0][2].item<double>();
  r.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// --- BestModelHook ---

BestModelHook::BestModelHook(std::string monitor, int patience, LogFn log)
    : monitor_(std::move(monitor)), patience_(patience), log_(std::move(log)) {
  if (monitor_ != "val_loss" && monitor_ != "val_accuracy")
    throw std::invalid_argument("early stopping monitor must be val_loss or val_accuracy, not '" + monitor_ + "'");
  best_ = monitor_ == "val_loss" ? INFINITY : -INFINITY;
}

void BestModelHook::before_train(TrainerBase& trainer) {
  // An early-stopped run stays stopped on resume; one that ran out of epochs may be extended.
  if (early_stopped_) {
    trainer.progress().stop = true;
    trainer.progress().stop_reason = "early stopping (before the resume)";
  }
}

void BestModelHook::after_epoch(TrainerBase& trainer) {
  auto& p = trainer.progress();
  const double value = monitor_ == "val_loss" ? p.record.val_loss : p.record.val_accuracy;
  p.improved = monitor_ == "val_loss" ? value < best_ : value > best_;
  if (p.improved) {
    best_ = value;
    best_epoch_ = p.epoch;
    best_val_loss_ = p.record.val_loss;
    best_val_accuracy_ = p.record.val_accuracy;
    wait_ = 0;
    return;
  }
  if (patience_ > 0 && ++wait_ >= patience_) {
    early_stopped_ = true;
    p.stop = true;
    p.stop_reason = fmt::format("early stopping: no {} {} for {} epochs; best epoch {}",
                                monitor_ == "val_loss" ? "lower" : "higher", monitor_, wait_, best_epoch_);
  }
}

HookState BestModelHook::state_dict() const {
  return {{{"monitor", monitor_},
           {"best", finite_or_null(best_)},
           {"best_epoch", best_epoch_},
           {"best_val_loss", finite_or_null(best_val_loss_)},
           {"best_val_accuracy", best_val_accuracy_},
           {"wait", wait_},
           {"early_stopped", early_stopped_}},
          {}};
}

void BestModelHook::load_state_dict(const HookState& s) {
  const auto& j = s.json;
  if (j.at("monitor").get<std::string>() != monitor_)
    throw std::runtime_error("the run being resumed monitored " + j.at("monitor").get<std::string>() + ", not " +
                             monitor_);
  best_ = null_as(j.at("best"), monitor_ == "val_loss" ? INFINITY : -INFINITY);
  best_epoch_ = j.at("best_epoch").get<int>();
  best_val_loss_ = null_as(j.at("best_val_loss"), INFINITY);
  best_val_accuracy_ = j.at("best_val_accuracy").get<double>();
  wait_ = j.at("wait").get<int>();
  early_stopped_ = j.at("early_stopped").get<bool>();
}

// --- EmaHook ---

double ema_decay_at(double decay, std::int64_t updates) {
  return std::min(decay, (1.0 + static_cast<double>(updates)) / (10.0 + static_cast<double>(updates)));
}

void ema_update(torch::nn::Module& average, const torch::nn::Module& model, double decay) {
  torch::NoGradGuard no_grad;
  auto blend = [&](const torch::OrderedDict<std::string, torch::Tensor>& from, const std::string& key, torch::Tensor& to) {
    const torch::Tensor* source = from.find(key);
    if (!source) throw std::invalid_argument("ema_update: the model has no '" + key + "'");
    if (source->sizes() != to.sizes())
      throw std::invalid_argument("ema_update: '" + key + "' differs in shape between the model and the average");
    if (to.is_floating_point()) {
      to.mul_(decay).add_(source->detach(), 1.0 - decay);
    } else {
      to.copy_(*source);
    }
  };
  const auto params = model.named_parameters(true);
  for (auto& item : average.named_parameters(true)) blend(params, item.key(), item.value());
  const auto buffers = model.named_buffers(true);
  for (auto& item : average.named_buffers(true)) blend(buffers, item.key(), item.value());
}

EmaHook::EmaHook(double decay, Classifier average) : decay_(decay), average_(std::move(average)) {
  if (!(decay > 0 && decay < 1)) throw std::invalid_argument("EMA decay must be in (0, 1)");
  for (auto& p : average_->parameters()) p.set_requires_grad(false);
}

void EmaHook::before_train(TrainerBase& trainer) {
  auto& t = supervised(trainer);
  average_->to(t.device());
  if (!initialised_) {  // a fresh run starts the average at the initial weights
    ema_update(*average_, *t.model(), 0.0);
    initialised_ = true;
  }
  if (t.options().channels_last) use_channels_last(*average_);
  t.set_eval_model(average_);
}

void EmaHook::after_step(TrainerBase& trainer) {
  ema_update(*average_, *supervised(trainer).model(), ema_decay_at(decay_, updates_));
  ++updates_;
}

HookState EmaHook::state_dict() const {
  return {{{"decay", decay_}, {"updates", updates_}}, {{"weights", module_bytes(*average_)}}};
}

void EmaHook::load_state_dict(const HookState& s) {
  const auto it = s.blobs.find("weights");
  if (it == s.blobs.end()) throw std::runtime_error("the EMA state lacks its weights");
  const auto device = average_->parameters().empty() ? torch::Device(torch::kCPU) : average_->parameters()[0].device();
  load_module_bytes(*average_, it->second, device);
  // Runs saved before the warm-up existed resume at the full decay.
  updates_ = s.json.value("updates", std::int64_t{1} << 40);
  initialised_ = true;
}

// --- DistillationHook ---

at::Tensor distillation_loss(const at::Tensor& student_logits, const at::Tensor& teacher_logits, double temperature) {
  TORCH_CHECK(student_logits.sizes() == teacher_logits.sizes(), "distillation_loss: student logits ",
              student_logits.sizes(), " and teacher logits ", teacher_logits.sizes(), " differ in shape");
  TORCH_CHECK(temperature > 0, "distillation_loss: the temperature must be > 0, got ", temperature);
  const auto log_student = torch::log_softmax(student_logits / temperature, 1);
  const auto log_teacher = torch::log_softmax(teacher_logits / temperature, 1);
  return (log_teacher.exp() * (log_teacher - log_student)).sum(1).mean() * (temperature * temperature);
}

namespace {

// FNV-1a over the parameters' bytes on the CPU: equal for equal weights on any
// device and thread count, unlike a floating-point sum.
std::string parameter_fingerprint(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  std::uint64_t hash = 0xcbf29ce484222325ull;
  for (const auto& p : module.parameters()) {
    const auto cpu = p.detach().to(torch::kCPU).contiguous();
    const auto* bytes = static_cast<const unsigned char*>(cpu.data_ptr());
    for (std::size_t i = 0, n = cpu.numel() * cpu.element_size(); i < n; ++i) hash = (hash ^ bytes[i]) * 0x100000001b3ull;
  }
  return fmt::format("{:016x}", hash);
}

}  // namespace

DistillationHook::DistillationHook(Classifier teacher, int64_t teacher_input_size, DistillOptions options,
                                   std::string source)
    : teacher_(std::move(teacher)),
      teacher_input_size_(teacher_input_size),
      options_(options),
      source_(std::move(source)),
      fingerprint_(parameter_fingerprint(*teacher_)) {
  if (!(options_.alpha >= 0 && options_.alpha <= 1))
    throw std::invalid_argument(fmt::format("distillation weight alpha must be in [0, 1], got {}", options_.alpha));
  if (!(options_.temperature > 0))
    throw std::invalid_argument(fmt::format("distillation temperature must be > 0, got {}", options_.temperature));
}

void DistillationHook::before_train(TrainerBase& trainer) {
  auto& t = supervised(trainer);
  // The teacher sees the student's batches, normalised the student's way.
  if (teacher_->input_normalization() != t.options().augment.normalize)
    throw std::invalid_argument(fmt::format(
        "the teacher {} was trained on inputs normalised '{}' but the student's are '{}' (data.normalize); "
        "distil from a teacher with the same normalisation",
        source_, input_normalization_name(teacher_->input_normalization()),
        input_normalization_name(t.options().augment.normalize)));
  teacher_->to(t.device());
  if (t.options().channels_last) use_channels_last(*teacher_);
  teacher_->eval();
}

void DistillationHook::before_backward(TrainerBase& trainer) {
  auto& t = supervised(trainer);
  auto& p = trainer.progress();
  if (p.inputs.size(-1) < teacher_input_size_)
    throw std::invalid_argument(fmt::format("the teacher {} takes {}-px inputs, larger than the student's {}", source_,
                                            teacher_input_size_, p.inputs.size(-1)));
  at::Tensor teacher_logits;
  {
    torch::NoGradGuard no_grad;
    AutocastScope autocast(t.device(), t.options().precision);
    teacher_logits = teacher_->forward(center_crop(p.inputs, teacher_input_size_)).to(torch::kFloat32);
  }
  const double a = options_.alpha;
  p.loss = p.loss * (1 - a) + distillation_loss(p.logits, teacher_logits, options_.temperature) * a;
}

HookState DistillationHook::state_dict() const {
  return {{{"teacher", source_}, {"fingerprint", fingerprint_}}, {}};
}

void DistillationHook::load_state_dict(const HookState& state) {
  const auto saved = state.json.value("fingerprint", std::string());
  if (saved != fingerprint_)
    throw std::runtime_error(fmt::format(
        "last.pt was distilled from {} (weights {}); the teacher given now, {}, has other weights ({}): resume with "
        "the same teacher or start a new run folder",
        state.json.value("teacher", std::string("?")), saved, source_, fingerprint_));
}

// --- HistoryHook ---

void HistoryHook::after_epoch(TrainerBase& trainer) {
  history_.push_back(trainer.progress().record);
  write_history_csv(history_, path_);
}

HookState HistoryHook::state_dict() const { return {history_to_json(history_), {}}; }

void HistoryHook::load_state_dict(const HookState& s) { history_ = history_from_json(s.json); }

// --- checkpoints ---

std::vector<std::string> training_state_blob_names() { return {kOptimizerBlob, kStateBlob, kHookBlobs, kPositionBlob}; }

Blobs training_state_blobs(SupervisedTrainer& t) {
  torch::serialize::OutputArchive archive;
  t.optimizer().save(archive);
  std::ostringstream optimizer_bytes;
  archive.save_to(optimizer_bytes);

  const auto& p = t.progress();
  // At an interrupt the running epoch is not completed: its position says where it stands.
  nlohmann::json state = {{"epoch", p.interrupt ? p.epoch - 1 : p.epoch},
                          {"world_size", t.options().world_size},
                          {"train_seconds", p.train_seconds},
                          {"scaler", t.scaler().state_dict()},
                          {"hooks", nlohmann::json::object()}};
  nlohmann::json blobs = nlohmann::json::object();
  for (const auto& [name, hook_state] : t.hook_states()) {
    state["hooks"][name] = hook_state.json;
    for (const auto& [key, bytes] : hook_state.blobs)
      blobs[name][key] = nlohmann::json::binary(std::vector<std::uint8_t>(bytes.begin(), bytes.end()));
  }
  const auto cbor = nlohmann::json::to_cbor(blobs);
  Blobs result{{kOptimizerBlob, optimizer_bytes.str()},
               {kStateBlob, state.dump()},
               {kHookBlobs, std::string(cbor.begin(), cbor.end())}};
  if (p.interrupt) {  // one entry per rank
    auto positions = t.rank_positions();
    if (positions.empty()) positions.push_back(t.position());
    nlohmann::json list = nlohmann::json::array();
    for (const auto& position : positions) {
      const auto bytes = position.to_bytes();
      list.push_back(nlohmann::json::binary(std::vector<std::uint8_t>(bytes.begin(), bytes.end())));
    }
    const auto encoded = nlohmann::json::to_cbor(list);
    result[kPositionBlob] = std::string(encoded.begin(), encoded.end());
  }
  return result;
}

std::optional<EpochPosition> interrupted_position(const Blobs& blobs, int rank) {
  const auto it = blobs.find(kPositionBlob);
  if (it == blobs.end()) return std::nullopt;
  const auto list = nlohmann::json::from_cbor(std::vector<std::uint8_t>(it->second.begin(), it->second.end()));
  if (!list.is_array() || rank < 0 || rank >= static_cast<int>(list.size()))
    throw std::runtime_error(fmt::format("the checkpoint's interrupted epoch has no position for rank {}", rank));
  const auto& bytes = list.at(static_cast<std::size_t>(rank)).get_binary();
  return EpochPosition::from_bytes(std::string(bytes.begin(), bytes.end()));
}

void restore_training_state(SupervisedTrainer& t, const Blobs& blobs) {
  for (const char* name : {kOptimizerBlob, kStateBlob})
    if (!blobs.count(name)) throw std::runtime_error(std::string("the checkpoint lacks ") + name + "; cannot resume");
  const auto state = nlohmann::json::parse(blobs.at(kStateBlob));
  // Each rank's shard, dropout and augmentation streams follow from the world size.
  const int saved_world = state.value("world_size", 1), world = t.options().world_size;
  if (saved_world != world)
    throw std::runtime_error(fmt::format(
        "the run was trained by {} rank{} and this one has {}; resume it with the same world size "
        "(torchrun --nproc_per_node={} or fer-train --nproc {}), or start a new run",
        saved_world, saved_world == 1 ? "" : "s", world, saved_world, saved_world));
  torch::serialize::InputArchive archive;
  std::istringstream optimizer_bytes(blobs.at(kOptimizerBlob));
  archive.load_from(optimizer_bytes, t.device());
  t.optimizer().load(archive);

  if (!state.contains("hooks"))
    throw std::runtime_error("the checkpoint's training state predates the hook engine; start a new run");
  nlohmann::json hook_blobs = nlohmann::json::object();
  if (blobs.count(kHookBlobs)) {
    const auto& bytes = blobs.at(kHookBlobs);
    hook_blobs = nlohmann::json::from_cbor(std::vector<std::uint8_t>(bytes.begin(), bytes.end()));
  }
  std::map<std::string, HookState> states;
  for (const auto& [name, json] : state.at("hooks").items()) {
    states[name].json = json;
    if (hook_blobs.contains(name))
      for (const auto& [key, bin] : hook_blobs[name].items()) {
        const auto& b = bin.get_binary();
        states[name].blobs[key] = std::string(b.begin(), b.end());
      }
  }
  for (const auto& hook : t.hooks())
    if (!hook->name().empty() && !states.count(hook->name()))
      throw std::runtime_error("the checkpoint has no state for the '" + hook->name() +
                               "' hook; it was written by a run with other hooks");
  t.load_hook_states(states);
  t.scaler().load_state_dict(state.at("scaler"));
  t.progress().epoch = state.at("epoch").get<int>();
  t.progress().train_seconds = state.at("train_seconds").get<double>();
  if (auto position = interrupted_position(blobs, t.options().rank)) t.resume_at(std::move(*position));
}

CheckpointHook::CheckpointHook(std::string run_dir, CheckpointMeta meta)
    : run_dir_(std::move(run_dir)), meta_(std::move(meta)) {}

void CheckpointHook::after_epoch(TrainerBase& trainer) {
  auto& t = supervised(trainer);
  const auto& r = t.progress().record;
  meta_.info["epoch"] = r.epoch;
  meta_.info["val_loss"] = r.val_loss;
  meta_.info["val_accuracy"] = r.val_accuracy;
  namespace fs = std::filesystem;
  if (t.progress().improved) save_checkpoint((fs::path(run_dir_) / "best.pt").string(), *t.eval_model(), meta_);
  // last.pt is the resume point: written after best.pt so a kill between the two
  // resumes this epoch's state with best.pt already up to date.
  t.progress().train_seconds += r.seconds;
  save_checkpoint((fs::path(run_dir_) / "last.pt").string(), *t.model(), meta_, training_state_blobs(t));
}

void CheckpointHook::on_interrupt(TrainerBase& trainer) {
  auto& t = supervised(trainer);
  save_checkpoint((std::filesystem::path(run_dir_) / "last.pt").string(), *t.model(), meta_, training_state_blobs(t));
}

// --- InterruptHook ---

InterruptHook::InterruptHook(std::function<bool()> requested, std::shared_ptr<Communicator> comm)
    : requested_(std::move(requested)), comm_(std::move(comm)) {
  if (!requested_) throw std::invalid_argument("InterruptHook needs a request function");
}

void InterruptHook::after_step(TrainerBase& trainer) {
  const bool asked = requested_();
  if (!comm_ || comm_->world_size() == 1) {
    trainer.progress().interrupt = trainer.progress().interrupt || asked;
    return;
  }
  std::vector<at::Tensor> flag{torch::full({1}, asked ? 1.0f : 0.0f, torch::TensorOptions().device(
                                                                          supervised(trainer).device()))};
  comm_->all_reduce_sum(flag, "the stop request");
  if (flag.front().item<float>() > 0) trainer.progress().interrupt = true;
}

namespace {

// Every rank's bytes on every rank: each fills its row of a zero matrix and
// the rows are summed (bytes as float32 are exact, and so is adding zeros).
std::vector<std::string> all_gather_bytes(Communicator& comm, const std::string& mine, const torch::Device& device) {
  const int64_t world = comm.world_size(), rank = comm.rank();
  const auto on_device = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  std::vector<at::Tensor> sizes{torch::zeros({world}, on_device)};
  sizes[0][rank] = static_cast<double>(mine.size());
  comm.all_reduce_sum(sizes, "the sizes of the ranks' positions");
  const auto size_of = sizes[0].to(torch::kCPU).to(torch::kInt64);
  const int64_t longest = size_of.max().item<int64_t>();
  auto row = torch::empty({static_cast<int64_t>(mine.size())}, torch::kUInt8);
  std::memcpy(row.data_ptr(), mine.data(), mine.size());
  std::vector<at::Tensor> rows{torch::zeros({world, longest}, on_device)};
  rows[0][rank].narrow(0, 0, row.size(0)).copy_(row.to(torch::kFloat32));
  comm.all_reduce_sum(rows, "the ranks' positions");
  const auto all = rows[0].to(torch::kCPU).to(torch::kUInt8).contiguous();
  std::vector<std::string> gathered;
  for (int64_t r = 0; r < world; ++r)
    gathered.emplace_back(static_cast<const char*>(all[r].data_ptr()), static_cast<std::size_t>(size_of[r].item<int64_t>()));
  return gathered;
}

}  // namespace

void InterruptHook::on_interrupt(TrainerBase& trainer) {
  if (!comm_ || comm_->world_size() == 1) return;
  auto& t = supervised(trainer);
  std::vector<EpochPosition> positions;
  for (const auto& bytes : all_gather_bytes(*comm_, t.position().to_bytes(), t.device()))
    positions.push_back(EpochPosition::from_bytes(bytes));
  t.set_rank_positions(std::move(positions));
}

// --- LoggingHook ---

void LoggingHook::before_epoch(TrainerBase&) {
  bar_.reset();  // steps_per_epoch is known from the first step on
}

void LoggingHook::after_step(TrainerBase& trainer) {
  const auto& p = trainer.progress();
  if (!progress_) return;
  if (!bar_) {
    bar_ = progress_(p.steps_per_epoch, fmt::format("epoch {:3d}/{}", p.epoch, p.max_epochs));
    if (p.step > 0) bar_->advance(p.step, 0, "");  // a resumed epoch starts where it stopped
  }
  bar_->advance(1, p.images_in_step, p.step % 20 == 0 ? fmt::format("loss {:.4f}", p.loss.item<double>()) : "");
}

void LoggingHook::on_interrupt(TrainerBase& trainer) {
  const auto& p = trainer.progress();
  if (bar_) bar_->finish();
  bar_.reset();
  log_(fmt::format("interrupted after batch {}/{} of epoch {}: last.pt holds the position and --resume continues there",
                   p.step, p.steps_per_epoch, p.epoch));
}

void LoggingHook::after_epoch(TrainerBase& trainer) {
  const auto& p = trainer.progress();
  const auto& r = p.record;
  if (bar_) bar_->finish();
  bar_.reset();
  log_(fmt::format("epoch {:3d}  lr {:.2g}  train loss {:.4f} acc {:.4f}  val loss {:.4f} acc {:.4f}{}  {:.0f}s "
                   "({:.0f} img/s)",
                   r.epoch, r.lr, r.train_loss, r.train_accuracy, r.val_loss, r.val_accuracy, p.improved ? " *" : "",
                   r.seconds, r.seconds > 0 ? p.images_in_epoch / r.seconds : 0.0));
  if (p.stop && !p.stop_reason.empty()) log_(p.stop_reason);
}

// --- DivergenceGuard ---

void DivergenceGuard::after_backward(TrainerBase& trainer) {
  auto& t = supervised(trainer);
  const auto& p = t.progress();
  std::string what;
  const double loss = p.loss.item<double>();
  if (!std::isfinite(loss) || loss > max_loss_)
    what = fmt::format("the loss is {:.4g}{}", loss, std::isfinite(loss) ? fmt::format(" (above {:.0e})", max_loss_) : "");
  else if (!t.scaler().enabled() && !gradients_finite(t.model()->parameters()))
    what = "a gradient is not finite";
  if (what.empty()) return;
  const std::string kept =
      p.epoch > 1 ? fmt::format("last.pt (epoch {}) and best.pt are the last good state and --resume continues from them",
                                p.epoch - 1)
                  : std::string("no checkpoint had been written yet");
  throw DivergenceError(fmt::format("training diverged at epoch {}, batch {}/{} (lr {:.3g}): {}. Nothing of epoch {} "
                                    "was saved: {}. A lower train.lr (or a warm-up) avoids it",
                                    p.epoch, p.step + 1, p.steps_per_epoch, optimizer_lr(t.optimizer()), what, p.epoch,
                                    kept));
}

}  // namespace fer
