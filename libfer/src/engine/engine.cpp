#include "fer/engine/engine.h"

#include <torch/torch.h>

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <mutex>
#include <sstream>
#include <stdexcept>

#include "fer/data/sampler.h"
#include "fer/engine/optim.h"

namespace fer {

void TrainerBase::register_hook(std::shared_ptr<HookBase> hook) { hooks_.push_back(std::move(hook)); }

void TrainerBase::call(void (HookBase::*point)(TrainerBase&)) {
  for (auto& hook : hooks_) ((*hook).*point)(*this);
}

void TrainerBase::notify_before_backward() { call(&HookBase::before_backward); }

void TrainerBase::notify_after_backward() { call(&HookBase::after_backward); }

void TrainerBase::train() {
  call(&HookBase::before_train);
  while (!progress_.stop && progress_.epoch < progress_.max_epochs) {
    ++progress_.epoch;
    progress_.record = EpochRecord{};
    progress_.record.epoch = progress_.epoch;
    progress_.improved = false;
    call(&HookBase::before_epoch);
    const auto start = std::chrono::steady_clock::now();
    progress_.step = 0;
    begin_epoch();  // a resumed epoch: its next batch, and its seconds so far in record.seconds
    const auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
    for (; progress_.step < progress_.steps_per_epoch; ++progress_.step) {
      run_step();
      call(&HookBase::after_step);
      if (progress_.interrupt) {
        ++progress_.step;
        progress_.record.seconds += elapsed();
        call(&HookBase::on_interrupt);
        return;
      }
    }
    end_epoch();
    progress_.record.seconds += elapsed();
    call(&HookBase::after_epoch);
  }
  call(&HookBase::after_train);
}

std::map<std::string, HookState> TrainerBase::hook_states() const {
  std::map<std::string, HookState> states;
  for (const auto& hook : hooks_)
    if (!hook->name().empty()) states[hook->name()] = hook->state_dict();
  return states;
}

void TrainerBase::load_hook_states(const std::map<std::string, HookState>& states) {
  for (auto& hook : hooks_) {
    const auto it = states.find(hook->name());
    if (!hook->name().empty() && it != states.end()) hook->load_state_dict(it->second);
  }
}

torch::Tensor classification_loss(const torch::Tensor& logits, const torch::Tensor& target, double label_smoothing,
                                  const torch::Tensor& class_weights) {
  namespace F = torch::nn::functional;
  auto opts = F::CrossEntropyFuncOptions();
  if (label_smoothing > 0) opts = opts.label_smoothing(label_smoothing);
  if (class_weights.defined()) opts = opts.weight(class_weights);
  return F::cross_entropy(logits, target, opts);
}

const EnumNames<TrainTarget>& train_target_names() {
  static const EnumNames<TrainTarget> names{"train target",
                                            {{"majority", TrainTarget::majority},
                                             {"probability", TrainTarget::probability},
                                             {"crossentropy", TrainTarget::crossentropy},
                                             {"multi_target", TrainTarget::multi_target}}};
  return names;
}

TrainTarget parse_train_target(const std::string& name) { return train_target_names().parse(name); }

std::string train_target_name(TrainTarget target) { return train_target_names().name(target); }

torch::Tensor soft_target_loss(const torch::Tensor& logits, const torch::Tensor& target, double label_smoothing,
                               const torch::Tensor& class_weights) {
  TORCH_CHECK(logits.sizes() == target.sizes(), "soft_target_loss: logits ", logits.sizes(), " and target ",
              target.sizes(), " differ");
  auto t = target.to(torch::kFloat32);
  if (label_smoothing > 0) t = t * (1 - label_smoothing) + label_smoothing / static_cast<double>(logits.size(1));
  auto per_class = -t * torch::log_softmax(logits, 1);
  if (class_weights.defined()) per_class = per_class * class_weights.unsqueeze(0);
  return per_class.sum(1).mean();
}

torch::Tensor multi_target_loss(const torch::Tensor& logits, const torch::Tensor& accepted) {
  TORCH_CHECK(logits.sizes() == accepted.sizes(), "multi_target_loss: logits ", logits.sizes(), " and accepted ",
              accepted.sizes(), " differ");
  const auto allowed = accepted.ne(0);
  TORCH_CHECK(allowed.any(1).all().item<bool>(), "multi_target_loss: an image with no accepted class");
  // max_k log p_k over S, in log space (stable): log p of the others masked to -inf.
  const auto log_p = torch::log_softmax(logits, 1).masked_fill(allowed.logical_not(), -INFINITY);
  return -std::get<0>(log_p.max(1)).mean();
}

torch::Tensor draw_labels(const torch::Tensor& distribution, uint64_t seed) {
  auto generator = make_cpu_generator(seed);
  return torch::multinomial(distribution.cpu(), 1, false, generator).squeeze(1).to(distribution.device());
}

uint64_t epoch_seed(int seed, int epoch, uint64_t stream) {
  uint64_t x = (static_cast<uint64_t>(static_cast<uint32_t>(seed)) << 32) ^ (uint64_t(epoch) * 0x9E3779B97F4A7C15ull) ^
               (stream * 0xBF58476D1CE4E5B9ull);
  x ^= x >> 31;
  x *= 0x94D049BB133111EBull;
  return x ^ (x >> 29);
}

SupervisedTrainer::SupervisedTrainer(Classifier model, std::unique_ptr<torch::optim::Optimizer> optimizer,
                                     TrainData data, StepOptions options, torch::Device device)
    : model_(std::move(model)),
      optimizer_(std::move(optimizer)),
      data_(std::move(data)),
      options_(std::move(options)),
      device_(device),
      scaler_(options_.precision == Precision::fp16),
      generator_(make_cpu_generator(0)) {
  TORCH_CHECK(options_.batch_size > 0, "batch_size must be > 0");
  TORCH_CHECK(options_.world_size >= 1 && options_.rank >= 0 && options_.rank < options_.world_size,
              "rank must be in 0..world_size-1");
  if (options_.target != TrainTarget::majority) {
    TORCH_CHECK(data_.votes.defined() && data_.votes.dim() == 2 && data_.votes.size(0) == data_.images.size(0),
                "train target ", train_target_name(options_.target), " needs the images' vote counts [N,classes]");
    vote_distribution_ = data_.votes.to(torch::kFloat32) / data_.votes.sum(1, true).to(torch::kFloat32);
  }
  const int64_t w = options_.world_size, n = (data_.images.size(0) + w - 1) / w;  // this rank's share
  // A final batch of one image would break BatchNorm in training mode.
  usable_ = (n % options_.batch_size == 1) ? n - 1 : n;
}

void SupervisedTrainer::begin_epoch() {
  const int epoch = progress().epoch;
  if (resume_at_ && resume_at_->epoch != epoch)
    throw std::logic_error(fmt::format("resume_at: epoch {} was to continue, epoch {} begins", resume_at_->epoch, epoch));
  const uint64_t rank_streams = 1000 * static_cast<uint64_t>(options_.rank);  // rank 0: the single-process streams
  torch::manual_seed(epoch_seed(options_.seed, epoch, 1 + rank_streams));    // dropout
  generator_ = make_cpu_generator(epoch_seed(options_.seed, epoch, 2));
  const auto permutation = torch::randperm(data_.images.size(0), generator_, torch::kInt64);  // alike on every rank
  order_ = distributed_sampler_indices(permutation, options_.rank, options_.world_size).to(device_);
  if (options_.rank > 0) generator_ = make_cpu_generator(epoch_seed(options_.seed, epoch, 2 + rank_streams));
  if (options_.target == TrainTarget::crossentropy)  // its own stream: the other draws stay as without it
    epoch_labels_ = draw_labels(vote_distribution_, epoch_seed(options_.seed, epoch, 3));
  loss_sum_ = torch::zeros({}, torch::TensorOptions(torch::kFloat64).device(device_));
  correct_ = torch::zeros({}, torch::TensorOptions(torch::kInt64).device(device_));
  progress().steps_per_epoch = (usable_ + options_.batch_size - 1) / options_.batch_size;
  progress().images_in_epoch = usable_;
  progress().record.lr = optimizer_lr(*optimizer_);
  model_->train();
  if (resume_at_) continue_epoch(*resume_at_);
  resume_at_.reset();
}

namespace {

std::string generator_bytes(const at::Generator& generator) {
  const auto state = generator.get_state().contiguous();
  return std::string(static_cast<const char*>(state.data_ptr()), static_cast<std::size_t>(state.nbytes()));
}

void set_generator_bytes(at::Generator generator, const std::string& bytes, const char* what) {
  if (bytes.empty()) throw std::runtime_error(std::string("the interrupted epoch's position lacks the ") + what + " state");
  auto state = torch::empty({static_cast<int64_t>(bytes.size())}, torch::kUInt8);
  std::memcpy(state.data_ptr(), bytes.data(), bytes.size());
  std::lock_guard<std::mutex> lock(generator.mutex());
  generator.set_state(state);
}

// The generator dropout draws from on `device` (torch::manual_seed seeds them all).
at::Generator global_generator(const torch::Device& device) {
  return at::globalContext().defaultGenerator(device.is_cuda() ? device : torch::Device(torch::kCPU));
}

// The buffers of `model` and, when it is another module, of `eval` (EMA), as bytes.
std::string buffer_bytes(torch::nn::Module& model, torch::nn::Module* eval) {
  torch::serialize::OutputArchive archive;
  for (const auto& b : model.named_buffers()) archive.write("model." + b.key(), b.value());
  if (eval)
    for (const auto& b : eval->named_buffers()) archive.write("eval." + b.key(), b.value());
  std::ostringstream out;
  archive.save_to(out);
  return out.str();
}

void load_buffer_bytes(const std::string& bytes, torch::nn::Module& model, torch::nn::Module* eval) {
  if (bytes.empty()) throw std::runtime_error("the interrupted epoch's position lacks the model's buffers");
  torch::serialize::InputArchive archive;
  std::istringstream in(bytes);
  archive.load_from(in);
  torch::NoGradGuard no_grad;
  const auto load = [&](torch::nn::Module& module, const std::string& prefix) {
    for (auto& b : module.named_buffers()) {
      torch::Tensor saved;
      if (!archive.try_read(prefix + b.key(), saved))
        throw std::runtime_error("the interrupted epoch's position lacks the buffer " + prefix + b.key());
      b.value().copy_(saved);
    }
  };
  load(model, "model.");
  if (eval) load(*eval, "eval.");
}

}  // namespace

EpochPosition SupervisedTrainer::position() const {
  TORCH_CHECK(loss_sum_.defined(), "position: no epoch has begun");
  const auto& p = progress();
  EpochPosition at;
  at.epoch = p.epoch;
  at.step = p.step;
  at.seconds = p.record.seconds;
  at.loss_sum = loss_sum_.item<double>();
  at.correct = correct_.item<int64_t>();
  at.generator_state = generator_bytes(generator_);
  at.global_cpu_state = generator_bytes(global_generator(torch::kCPU));
  if (device_.is_cuda()) at.global_device_state = generator_bytes(global_generator(device_));
  at.buffers = buffer_bytes(*model_, eval_model_ ? eval_model_.get() : nullptr);
  return at;
}

void SupervisedTrainer::continue_epoch(const EpochPosition& at) {
  if (at.step < 0 || at.step > progress().steps_per_epoch)
    throw std::runtime_error(fmt::format("the interrupted epoch {} stopped before batch {}, and it has {} batches now",
                                         at.epoch, at.step, progress().steps_per_epoch));
  if (device_.is_cuda() != !at.global_device_state.empty())
    throw std::runtime_error(fmt::format("epoch {} was interrupted on {} and resumes on {}: resume an interrupted epoch "
                                         "on the same kind of device",
                                         at.epoch, device_.is_cuda() ? "the CPU" : "a GPU", device_.str()));
  progress().step = at.step;
  progress().record.seconds = at.seconds;
  loss_sum_.fill_(at.loss_sum);
  correct_.fill_(at.correct);
  set_generator_bytes(generator_, at.generator_state, "augmentation generator");
  set_generator_bytes(global_generator(torch::kCPU), at.global_cpu_state, "CPU generator");
  if (device_.is_cuda()) set_generator_bytes(global_generator(device_), at.global_device_state, "GPU generator");
  load_buffer_bytes(at.buffers, *model_, eval_model_ ? eval_model_.get() : nullptr);
}

std::string EpochPosition::to_bytes() const {
  const auto binary = [](const std::string& s) {
    return nlohmann::json::binary(std::vector<std::uint8_t>(s.begin(), s.end()));
  };
  const nlohmann::json j = {{"epoch", epoch},         {"step", step},
                            {"seconds", seconds},     {"loss_sum", loss_sum},
                            {"correct", correct},     {"generator", binary(generator_state)},
                            {"global_cpu", binary(global_cpu_state)}, {"global_device", binary(global_device_state)},
                            {"buffers", binary(buffers)}};
  const auto cbor = nlohmann::json::to_cbor(j);
  return std::string(cbor.begin(), cbor.end());
}

EpochPosition EpochPosition::from_bytes(const std::string& bytes) {
  const auto j = nlohmann::json::from_cbor(std::vector<std::uint8_t>(bytes.begin(), bytes.end()));
  const auto field = [&](const char* key) -> const nlohmann::json& {
    if (!j.contains(key)) throw std::runtime_error(std::string("the interrupted epoch's position lacks '") + key + "'");
    return j.at(key);
  };
  const auto text = [&](const char* key) {
    const auto& b = field(key).get_binary();
    return std::string(b.begin(), b.end());
  };
  EpochPosition at;
  at.epoch = field("epoch").get<int>();
  at.step = field("step").get<std::int64_t>();
  at.seconds = field("seconds").get<double>();
  at.loss_sum = field("loss_sum").get<double>();
  at.correct = field("correct").get<std::int64_t>();
  at.generator_state = text("generator");
  at.global_cpu_state = text("global_cpu");
  at.global_device_state = text("global_device");
  at.buffers = text("buffers");
  return at;
}

void SupervisedTrainer::run_step() {
  auto& p = progress();
  const int64_t b = p.step, bs = options_.batch_size;
  const auto idx = order_.slice(0, b * bs, std::min(usable_, (b + 1) * bs));
  auto x = augment_batch(to_model_input(data_.images, idx, device_), options_.augment, generator_);
  const auto y = data_.labels.index_select(0, idx);
  // Soft targets are mixed by row: mix_batch pairs the batch's rows, step_loss gathers their targets.
  const bool by_row = options_.target == TrainTarget::probability || options_.target == TrainTarget::multi_target;
  const auto targets = by_row ? torch::arange(idx.size(0), idx.options())
                              : options_.target == TrainTarget::crossentropy ? epoch_labels_.index_select(0, idx) : y;
  MixedBatch mixed{x, targets, targets, 1.0};
  if (options_.mix.enabled()) mixed = mix_batch(x, targets, options_.mix, generator_);
  if (options_.channels_last) mixed.x = mixed.x.contiguous(torch::MemoryFormat::ChannelsLast);

  optimizer_->zero_grad();
  torch::Tensor logits, loss;
  {
    AutocastScope autocast(device_, options_.precision);
    logits = model_->forward(mixed.x).to(torch::kFloat32);
  }
  loss = step_loss(logits, idx, mixed);
  p.loss = loss;
  p.inputs = mixed.x;
  p.logits = logits;
  p.images_in_step = idx.size(0);
  notify_before_backward();
  scaler_.scale_loss(p.loss).backward();
  scaler_.unscale(*optimizer_);
  p.loss = p.loss.detach();
  p.logits = logits.detach();
  notify_after_backward();
  scaler_.step(*optimizer_);
  scaler_.update();
  loss_sum_ += p.loss.to(torch::kFloat64) * idx.size(0);
  correct_ += logits.detach().argmax(1).eq(y).sum();
}

torch::Tensor SupervisedTrainer::step_loss(const torch::Tensor& logits, const torch::Tensor& idx,
                                           const MixedBatch& mixed) const {
  const double s = options_.label_smoothing;
  const auto one = [&](const torch::Tensor& target) {
    switch (options_.target) {
      case TrainTarget::probability:
        return soft_target_loss(logits, vote_distribution_.index_select(0, idx.index_select(0, target)), s,
                                options_.class_weights);
      case TrainTarget::multi_target:
        return multi_target_loss(logits, data_.votes.index_select(0, idx.index_select(0, target)));
      default: return classification_loss(logits, target, s, options_.class_weights);
    }
  };
  auto loss = one(mixed.target_a);
  if (mixed.lam < 1.0) loss = loss * mixed.lam + one(mixed.target_b) * (1 - mixed.lam);
  return loss;
}

void SupervisedTrainer::end_epoch() {
  auto& r = progress().record;
  r.train_loss = loss_sum_.item<double>() / usable_;
  r.train_accuracy = double(correct_.item<int64_t>()) / usable_;
}

}  // namespace fer
