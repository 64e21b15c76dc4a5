#include "fer/engine/engine.h"

#include <torch/torch.h>

#include <chrono>
#include <cmath>

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
    begin_epoch();
    for (progress_.step = 0; progress_.step < progress_.steps_per_epoch; ++progress_.step) {
      run_step();
      call(&HookBase::after_step);
    }
    end_epoch();
    progress_.record.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
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
