// Data parallelism over a Communicator: the launch environment, sharding,
// gradient averaging and SyncBatchNorm. The c10d process group itself is in
// process_group.cpp.
#include <fmt/format.h>
#include <torch/torch.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>

#include "fer/distributed/distributed.h"

namespace fer {
namespace {

SupervisedTrainer& data_parallel_trainer(TrainerBase& trainer) {
  auto* t = dynamic_cast<SupervisedTrainer*>(&trainer);
  if (!t) throw std::logic_error("DataParallelHook needs a SupervisedTrainer");
  return *t;
}

// Reads launcher variables, naming the one that is malformed.
class EnvReader {
 public:
  explicit EnvReader(std::function<const char*(const char*)> lookup) : lookup_(std::move(lookup)) {}
  const char* raw(const char* name) const {
    const char* v = lookup_(name);
    return v && *v ? v : nullptr;
  }
  int integer(const char* name, int fallback) const {
    const char* v = raw(name);
    if (!v) return fallback;
    char* end = nullptr;
    const long value = std::strtol(v, &end, 10);
    if (*end != '\0' || value < INT32_MIN || value > INT32_MAX)
      throw DistributedError(fmt::format("{}='{}' is not an integer", name, v));
    return static_cast<int>(value);
  }
  int required(const char* name, const char* hint) const {
    if (!raw(name)) throw DistributedError(fmt::format("{} is not set ({})", name, hint));
    return integer(name, 0);
  }

 private:
  std::function<const char*(const char*)> lookup_;
};

void check_env(const DistributedEnv& e) {
  if (e.world_size < 1) throw DistributedError(fmt::format("WORLD_SIZE={} must be at least 1", e.world_size));
  if (e.rank < 0 || e.rank >= e.world_size)
    throw DistributedError(fmt::format("RANK={} is outside 0..{} (WORLD_SIZE={})", e.rank, e.world_size - 1, e.world_size));
  if (e.local_rank < 0) throw DistributedError(fmt::format("LOCAL_RANK={} must not be negative", e.local_rank));
  if (e.master_port < 1 || e.master_port > 65535)
    throw DistributedError(fmt::format("MASTER_PORT={} is not a TCP port", e.master_port));
}

}  // namespace

DistributedEnv DistributedEnv::from_environment(const std::function<const char*(const char*)>& lookup) {
  const EnvReader env(lookup ? lookup : [](const char* name) -> const char* { return std::getenv(name); });
  DistributedEnv e;
  const char* master_hint = "torchrun sets it; under SLURM the batch script exports it, see docs/distributed.md";
  if (env.raw("RANK")) {
    e.rank = env.integer("RANK", 0);
    e.world_size = env.required("WORLD_SIZE", "RANK is set, so WORLD_SIZE must be too");
    e.local_rank = env.integer("LOCAL_RANK", 0);
  } else if (env.raw("SLURM_PROCID") && env.raw("MASTER_ADDR")) {
    // Inside srun: one task per rank. MASTER_ADDR marks a distributed job (a
    // batch script outside srun also carries SLURM_PROCID).
    e.rank = env.integer("SLURM_PROCID", 0);
    e.world_size = env.required("SLURM_NTASKS", "srun sets it with SLURM_PROCID");
    e.local_rank = env.integer("SLURM_LOCALID", 0);
  } else {
    return e;
  }
  if (e.world_size > 1) {
    if (!env.raw("MASTER_ADDR")) throw DistributedError(fmt::format("MASTER_ADDR is not set ({})", master_hint));
    e.master_addr = env.raw("MASTER_ADDR");
    e.master_port = env.integer("MASTER_PORT", e.master_port);
  }
  const char* agent = env.raw("TORCHELASTIC_USE_AGENT_STORE");
  e.agent_store = agent && std::strcmp(agent, "True") == 0;
  e.restart_count = env.integer("TORCHELASTIC_RESTART_COUNT", 0);
  check_env(e);
  return e;
}

// --- DataParallelHook ---

DataParallelHook::DataParallelHook(std::shared_ptr<Communicator> comm, int64_t bucket_bytes)
    : comm_(std::move(comm)), bucket_bytes_(bucket_bytes) {
  if (!comm_) throw std::invalid_argument("DataParallelHook needs a communicator");
  if (bucket_bytes_ <= 0) throw std::invalid_argument("DataParallelHook: bucket_bytes must be positive");
}

namespace {

std::vector<at::Tensor> weights_and_buffers(torch::nn::Module& model) {
  std::vector<at::Tensor> all;
  for (const auto& p : model.parameters()) all.push_back(p.detach());
  for (const auto& b : model.buffers()) all.push_back(b);
  return all;
}

// Runs `collective` on flat copies of `tensors`, one per run of equal dtype
// (c10d wants one tensor per call for one device), and copies the results back.
void flat_collective(const std::vector<at::Tensor>& tensors, const std::function<void(at::Tensor&)>& collective) {
  for (std::size_t begin = 0; begin < tensors.size();) {
    std::size_t end = begin + 1;
    while (end < tensors.size() && tensors[end].scalar_type() == tensors[begin].scalar_type()) ++end;
    std::vector<at::Tensor> pieces;
    for (std::size_t i = begin; i < end; ++i) pieces.push_back(tensors[i].reshape({-1}));
    at::Tensor flat = torch::cat(pieces);
    collective(flat);
    int64_t offset = 0;
    for (std::size_t i = begin; i < end; ++i) {
      tensors[i].copy_(flat.slice(0, offset, offset + tensors[i].numel()).view_as(tensors[i]));
      offset += tensors[i].numel();
    }
    begin = end;
  }
}

// Sums `tensors` across ranks and scales the sums by `scale`.
void all_reduce_flat(Communicator& comm, const std::vector<at::Tensor>& tensors, double scale, const std::string& what) {
  flat_collective(tensors, [&](at::Tensor& flat) {
    std::vector<at::Tensor> v{flat};
    comm.all_reduce_sum(v, what);
    flat.mul_(scale);
  });
}

// Two float64 sums over every parameter and buffer: equal on two ranks exactly
// when (up to rounding of the sums) they hold the same model.
at::Tensor model_fingerprint(torch::nn::Module& model) {
  auto sum = torch::zeros({2}, torch::kFloat64);
  for (const auto& t : weights_and_buffers(model)) {
    const auto v = t.to(torch::kCPU, torch::kFloat64);
    sum[0] += v.sum();
    sum[1] += v.square().sum();
  }
  return sum;
}

void average_float_buffers(Communicator& comm, torch::nn::Module& model) {
  std::vector<at::Tensor> stats;
  for (const auto& b : model.buffers())
    if (b.is_floating_point()) stats.push_back(b);
  if (!stats.empty()) all_reduce_flat(comm, stats, 1.0 / comm.world_size(), "average of BatchNorm statistics");
}

}  // namespace

void DataParallelHook::before_train(TrainerBase& trainer) {
  auto& t = data_parallel_trainer(trainer);
  torch::NoGradGuard no_grad;
  flat_collective(weights_and_buffers(*t.model()), [&](at::Tensor& flat) {
    std::vector<at::Tensor> v{flat};
    comm_->broadcast(v, 0, "broadcast of rank 0's weights");
  });
}

void DataParallelHook::after_backward(TrainerBase& trainer) {
  auto& t = data_parallel_trainer(trainer);
  auto& p = trainer.progress();
  torch::NoGradGuard no_grad;
  std::vector<at::Tensor> bucket;
  int64_t bytes = 0;
  const auto flush = [&] {
    all_reduce_flat(*comm_, bucket, 1.0 / comm_->world_size(),
                    fmt::format("all-reduce of gradients (epoch {}, step {})", p.epoch, p.step + 1));
    bucket.clear();
    bytes = 0;
  };
  for (auto& param : t.model()->parameters()) {
    if (!param.grad().defined()) param.mutable_grad() = torch::zeros_like(param);  // unused here, maybe used elsewhere
    bucket.push_back(param.grad());
    bytes += param.numel() * static_cast<int64_t>(param.element_size());
    if (bytes >= bucket_bytes_) flush();
  }
  // The loss rides in the last bucket: every rank judges divergence by the global batch's mean.
  at::Tensor loss = p.loss.detach().reshape({1}).to(torch::kFloat32).clone();
  bucket.push_back(loss);
  flush();
  p.loss = loss.reshape({});
  p.images_in_step *= comm_->world_size();  // the log and the progress bar count the global batch
  t.scaler().recheck(t.optimizer());
}

void DataParallelHook::after_epoch(TrainerBase& trainer) {
  auto& t = data_parallel_trainer(trainer);
  auto& p = trainer.progress();
  auto& r = p.record;
  torch::NoGradGuard no_grad;
  const double n = static_cast<double>(p.images_in_epoch);
  std::vector<at::Tensor> totals{torch::tensor({r.train_loss * n, r.train_accuracy * n, n}, torch::kFloat64)};
  comm_->all_reduce_sum(totals, fmt::format("sum of training metrics (epoch {})", p.epoch));
  r.train_loss = totals[0][0].item<double>() / totals[0][2].item<double>();
  r.train_accuracy = totals[0][1].item<double>() / totals[0][2].item<double>();
  p.images_in_epoch = static_cast<std::int64_t>(totals[0][2].item<double>());

  // BatchNorm statistics saw only this rank's batches: average them, so every
  // rank validates and saves the same model.
  average_float_buffers(*comm_, *t.model());
  if (t.eval_model() != t.model()) average_float_buffers(*comm_, *t.eval_model());  // EMA

  std::vector<at::Tensor> ours{model_fingerprint(*t.model())}, rank0{ours[0].clone()};
  comm_->broadcast(rank0, 0, "broadcast of rank 0's parameter fingerprint");
  const double tolerance = 1e-9 * std::max(1.0, std::abs(rank0[0][1].item<double>()));
  if ((ours[0] - rank0[0]).abs().max().item<double>() > tolerance)
    throw DistributedError(fmt::format("rank {}: after epoch {} its parameters differ from rank 0's (sums {:.12g}, {:.12g} "
                                       "against {:.12g}, {:.12g}); the ranks no longer train the same model",
                                       comm_->rank(), p.epoch, ours[0][0].item<double>(), ours[0][1].item<double>(),
                                       rank0[0][0].item<double>(), rank0[0][1].item<double>()));
}

// --- SyncBatchNorm ---

namespace {

// Sum across ranks whose gradient is the sum of the ranks' gradients: what makes
// the statistics of the global batch differentiable on every rank.
struct AllReduceSum : public torch::autograd::Function<AllReduceSum> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, at::Tensor x, Communicator* comm) {
    ctx->saved_data["comm"] = reinterpret_cast<int64_t>(comm);
    std::vector<at::Tensor> v{x.clone()};
    comm->all_reduce_sum(v, "all-reduce of BatchNorm statistics");
    return v[0];
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto* comm = reinterpret_cast<Communicator*>(ctx->saved_data["comm"].toInt());
    std::vector<at::Tensor> v{grads[0].contiguous().clone()};
    comm->all_reduce_sum(v, "all-reduce of BatchNorm gradients");
    return {v[0], at::Tensor()};
  }
};

template <typename BatchNormImpl>
at::Tensor sync_batch_norm(const at::Tensor& x, BatchNormImpl& bn, Communicator& comm) {
  const auto& o = bn.options;
  if (!bn.is_training() && o.track_running_stats()) return bn.forward(x);
  const int64_t channels = x.size(1);
  std::vector<int64_t> dims{0}, shape(x.dim(), 1);
  for (int64_t d = 2; d < x.dim(); ++d) dims.push_back(d);
  shape[1] = channels;
  // Chan et al.'s parallel variance: each rank's mean and centred sum of
  // squares, combined in float64, so no E[x^2] - E[x]^2 cancellation.
  const auto xf = x.to(torch::kFloat32);
  const double local_n = double(x.numel() / channels);
  const auto local_mean = xf.mean(dims).to(torch::kFloat64);
  const auto local_m2 = (xf - local_mean.to(torch::kFloat32).view(shape)).square().sum(dims).to(torch::kFloat64);
  const auto local = torch::cat({local_mean * local_n, local_m2, local_mean.square() * local_n,
                                 torch::full({1}, local_n, local_mean.options())});
  const auto global = AllReduceSum::apply(local, &comm);
  const auto n = global.slice(0, 3 * channels);
  const auto mean64 = global.slice(0, 0, channels) / n;
  const auto var64 = ((global.slice(0, channels, 2 * channels) + global.slice(0, 2 * channels, 3 * channels)) / n -
                      mean64.square()).clamp_min(0);
  const auto mean = mean64.to(torch::kFloat32), var = var64.to(torch::kFloat32);
  auto y = (xf - mean.view(shape)) * torch::rsqrt(var + o.eps()).view(shape);
  if (o.affine()) y = y * bn.weight.view(shape) + bn.bias.view(shape);
  if (o.track_running_stats()) {
    torch::NoGradGuard no_grad;
    bn.num_batches_tracked += 1;
    const double m = o.momentum() ? *o.momentum() : 1.0 / bn.num_batches_tracked.template item<double>();
    const auto unbiased = var64 * n / (n - 1).clamp_min(1);  // as BatchNorm keeps it
    bn.running_mean.mul_(1 - m).add_(mean.detach() * m);
    bn.running_var.mul_(1 - m).add_(unbiased.detach().to(torch::kFloat32) * m);
  }
  return y.to(x.scalar_type());
}

}  // namespace

void use_sync_batchnorm(ClassifierImpl& model, std::shared_ptr<Communicator> comm) {
  auto* sequential = dynamic_cast<SequentialClassifierImpl*>(&model);
  if (!sequential) throw std::invalid_argument("train.sync_batchnorm needs a sequential architecture (paper_cnn, vgg_fer)");
  const auto layers = sequential->sequential_layers();
  for (std::size_t i = 0; i < layers.size(); ++i) {
    if (auto bn = std::dynamic_pointer_cast<torch::nn::BatchNorm2dImpl>(layers[i]))
      sequential->set_step(i, [bn, comm](at::Tensor x) { return sync_batch_norm(x, *bn, *comm); });
    else if (auto bn1 = std::dynamic_pointer_cast<torch::nn::BatchNorm1dImpl>(layers[i]))
      sequential->set_step(i, [bn1, comm](at::Tensor x) { return sync_batch_norm(x, *bn1, *comm); });
  }
}

int free_local_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error("cannot open a socket to find a free port");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
                  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0;
  close(fd);
  if (!ok) throw std::runtime_error("cannot bind a port on 127.0.0.1");
  return ntohs(address.sin_port);
}

}  // namespace fer
