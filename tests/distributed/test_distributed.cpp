// Data-parallel training: the launch environment, sharding, SyncBatchNorm against
// BatchNorm, collectives over Gloo on 127.0.0.1 (two threads), and fer-train
// runs of two ranks (processes) against one.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "fer/common/emotions.h"
#include "fer/common/io.h"
#include "fer/data/sampler.h"
#include "fer/distributed/distributed.h"
#include "fer/engine/history.h"
#include "fer/engine/hooks.h"
#include "fer/engine/optim.h"
#include "fer/models/checkpoint.h"
#include "fer/report/evaluate/shards.h"
#include "test_util.h"

namespace {

using Vars = std::map<std::string, std::string>;

fer::DistributedEnv env_from(const Vars& vars) {
  return fer::DistributedEnv::from_environment([&](const char* name) -> const char* {
    const auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  });
}

std::string env_error(const Vars& vars) {
  try {
    env_from(vars);
  } catch (const fer::DistributedError& e) {
    return e.what();
  }
  return "";
}

// Runs body(rank, communicator) on two threads that form a Gloo group over
// 127.0.0.1. Returns whether both ranks finished without an exception.
bool with_two_ranks(const std::function<void(int, fer::Communicator&)>& body) {
  const int port = fer::free_local_port();
  std::vector<std::string> errors(2);
  std::vector<std::thread> ranks;
  for (int r = 0; r < 2; ++r)
    ranks.emplace_back([&, r] {
      try {
        fer::DistributedEnv env;
        env.rank = r;
        env.world_size = 2;
        env.master_port = port;
        auto comm = fer::connect_process_group(env, torch::kCPU, std::chrono::seconds(60));
        body(r, *comm);
      } catch (const std::exception& e) {
        errors[r] = e.what();
      }
    });
  for (auto& t : ranks) t.join();
  EXPECT_EQ(errors[0], "");
  EXPECT_EQ(errors[1], "");
  return errors[0].empty() && errors[1].empty();
}

// A one-layer sequential classifier, so use_sync_batchnorm can swap its step.
struct BatchNormNet : fer::SequentialClassifierImpl {
  BatchNormNet() { add("bn", torch::nn::BatchNorm2d(4)); }
  torch::nn::BatchNorm2dImpl& bn() { return *std::dynamic_pointer_cast<torch::nn::BatchNorm2dImpl>(sequential_layers()[0]); }
};

struct BatchNormResult {
  torch::Tensor y, x_grad, weight_grad, bias_grad, running_mean, running_var;
};

// Forward and backward of `loss = sum(y * probe)` in training mode.
BatchNormResult run_batch_norm(BatchNormNet& net, const torch::Tensor& input, const torch::Tensor& probe) {
  net.train();
  auto x = input.clone().requires_grad_(true);
  auto y = net.forward(x);
  (y * probe).sum().backward();
  return {y.detach(), x.grad(), net.bn().weight.grad(), net.bn().bias.grad(), net.bn().running_mean.clone(),
          net.bn().running_var.clone()};
}

// Inputs with a large mean and a small spread: where E[x^2] - E[x]^2 would lose digits.
torch::Tensor offset_input() {
  torch::manual_seed(3);
  return torch::randn({8, 4, 5, 5}) * 0.1 + 30;
}

}  // namespace

TEST(DistributedEnv, ReadsTorchrunVariables) {
  const auto e = env_from({{"RANK", "3"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "1"}, {"MASTER_ADDR", "10.0.0.7"},
                           {"MASTER_PORT", "29600"}, {"TORCHELASTIC_USE_AGENT_STORE", "True"},
                           {"TORCHELASTIC_RESTART_COUNT", "2"}});
  EXPECT_EQ(e.rank, 3);
  EXPECT_EQ(e.world_size, 4);
  EXPECT_EQ(e.local_rank, 1);
  EXPECT_EQ(e.master_addr, "10.0.0.7");
  EXPECT_EQ(e.master_port, 29600);
  EXPECT_TRUE(e.agent_store);
  EXPECT_EQ(e.restart_count, 2);
  EXPECT_TRUE(e.distributed());
}

TEST(DistributedEnv, MapsSlurmTasksWhenTheScriptExportsTheMaster) {
  const auto e = env_from({{"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "8"}, {"SLURM_LOCALID", "1"},
                           {"MASTER_ADDR", "node01"}, {"MASTER_PORT", "29500"}});
  EXPECT_EQ(e.rank, 5);
  EXPECT_EQ(e.world_size, 8);
  EXPECT_EQ(e.local_rank, 1);
  EXPECT_EQ(e.master_addr, "node01");
  // A batch script outside srun has SLURM_PROCID but no MASTER_ADDR: one process.
  EXPECT_FALSE(env_from({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "8"}}).distributed());
  EXPECT_FALSE(env_from({}).distributed());
}

TEST(DistributedEnv, NamesTheVariableThatIsWrong) {
  EXPECT_NE(env_error({{"RANK", "x1"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}}).find("RANK='x1'"), std::string::npos);
  EXPECT_NE(env_error({{"RANK", "0"}}).find("WORLD_SIZE is not set"), std::string::npos);
  EXPECT_NE(env_error({{"RANK", "2"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}}).find("RANK=2 is outside 0..1"),
            std::string::npos);
  EXPECT_NE(env_error({{"RANK", "0"}, {"WORLD_SIZE", "2"}}).find("MASTER_ADDR is not set"), std::string::npos);
  EXPECT_NE(env_error({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "70000"}})
                .find("MASTER_PORT=70000"),
            std::string::npos);
}

TEST(Sharding, ShardRangesAreContiguousDisjointAndCoverAll) {
  for (int world : {1, 2, 3, 7})
    for (int64_t n : {0, 1, 5, 10, 101}) {
      int64_t next = 0;
      for (int r = 0; r < world; ++r) {
        const auto [begin, end] = fer::shard_range(n, r, world);
        EXPECT_EQ(begin, next);
        EXPECT_LE(end - begin, n / world + 1);
        EXPECT_GE(end - begin, n / world);
        next = end;
      }
      EXPECT_EQ(next, n);
    }
  EXPECT_THROW(fer::shard_range(10, 2, 2), std::invalid_argument);
}

// The check both merges (fer-eval, fer-explain) run over their shards' extents.
TEST(Sharding, ShardSequenceMustBeEachShardOnceAndContiguous) {
  using Extents = std::vector<fer::ShardExtent>;
  const auto error = [](const Extents& shards, int count, std::size_t total) -> std::string {
    try {
      fer::check_shard_sequence(shards, count, total, "rows");
    } catch (const std::runtime_error& e) {
      return e.what();
    }
    return "";
  };
  const Extents whole = {{"a", 0, 0, 4}, {"b", 1, 4, 7}, {"c", 2, 7, 10}};
  EXPECT_EQ(error(whole, 3, 10), "");
  EXPECT_EQ(error({whole[0], whole[2]}, 3, 10), "shard 1 of 3 is missing");
  EXPECT_EQ(error({whole[0], whole[1]}, 3, 10), "shard 2 of 3 is missing");
  EXPECT_EQ(error({whole[0], whole[0], whole[1]}, 3, 10), "shard 0 is given twice: a and a");
  EXPECT_EQ(error({whole[0], {"b", 1, 5, 7}, whole[2]}, 3, 10), "b: its rows do not follow the previous shard's");
  EXPECT_EQ(error(whole, 3, 12), "the shards cover 10 rows of 12");
}

TEST(Sharding, SamplerMatchesPyTorchsDistributedSampler) {
  // torch.utils.data.DistributedSampler(range(5), num_replicas=2, shuffle=False):
  // padded to [0,1,2,3,4,0]; rank 0 [0,2,4], rank 1 [1,3,0].
  const auto perm = torch::arange(5, torch::kInt64);
  EXPECT_TRUE(torch::equal(fer::distributed_sampler_indices(perm, 0, 2), torch::tensor({0, 2, 4}, torch::kInt64)));
  EXPECT_TRUE(torch::equal(fer::distributed_sampler_indices(perm, 1, 2), torch::tensor({1, 3, 0}, torch::kInt64)));
  // Fewer items than ranks: the head repeats. range(2) over 5 ranks: [0,1,0,1,0].
  const auto tiny = torch::arange(2, torch::kInt64);
  for (int r = 0; r < 5; ++r)
    EXPECT_EQ(fer::distributed_sampler_indices(tiny, r, 5).item<int64_t>(), r % 2) << "rank " << r;
  // Any permutation: equal shares that together hold every index.
  const auto shuffled = torch::randperm(103, torch::kInt64);
  std::vector<int> seen(103, 0);
  for (int r = 0; r < 4; ++r) {
    const auto part = fer::distributed_sampler_indices(shuffled, r, 4);
    EXPECT_EQ(part.size(0), 26);
    for (int64_t i = 0; i < part.size(0); ++i) ++seen[part[i].item<int64_t>()];
  }
  for (int count : seen) EXPECT_GE(count, 1);
}

TEST(SyncBatchNorm, OneRankEqualsBatchNorm) {
  const auto x = offset_input();
  const auto probe = torch::randn({8, 4, 5, 5});
  BatchNormNet plain, synced;
  fer::use_sync_batchnorm(synced, fer::local_communicator());
  const auto a = run_batch_norm(plain, x, probe), b = run_batch_norm(synced, x, probe);
  EXPECT_TRUE(torch::allclose(a.y, b.y, 1e-4, 1e-4));
  EXPECT_TRUE(torch::allclose(a.x_grad, b.x_grad, 1e-3, 1e-3)) << (a.x_grad - b.x_grad).abs().max();
  EXPECT_TRUE(torch::allclose(a.weight_grad, b.weight_grad, 1e-4, 1e-4));
  EXPECT_TRUE(torch::allclose(a.bias_grad, b.bias_grad, 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(a.running_mean, b.running_mean, 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(a.running_var, b.running_var, 1e-5, 1e-6));
  // Evaluation uses the running statistics, as BatchNorm does.
  plain.eval();
  synced.eval();
  EXPECT_TRUE(torch::allclose(plain.forward(x), synced.forward(x), 1e-4, 1e-4));
}

TEST(SyncBatchNorm, TwoRanksEqualBatchNormOverTheWholeBatch) {
  if (!fer::distributed_supported()) GTEST_SKIP() << "built without c10d Gloo (libgloo-dev)";
  torch::manual_seed(4);
  const auto x = torch::randn({8, 4, 5, 5}) * 2 + 1, probe = torch::randn({8, 4, 5, 5});
  BatchNormNet reference;
  const auto whole = run_batch_norm(reference, x, probe);
  std::vector<BatchNormResult> parts(2);
  std::vector<std::shared_ptr<BatchNormNet>> nets{std::make_shared<BatchNormNet>(), std::make_shared<BatchNormNet>()};
  ASSERT_TRUE(with_two_ranks([&](int rank, fer::Communicator& comm) {
    std::shared_ptr<fer::Communicator> shared(&comm, [](fer::Communicator*) {});
    fer::use_sync_batchnorm(*nets[rank], shared);
    parts[rank] = run_batch_norm(*nets[rank], x.slice(0, 4 * rank, 4 * rank + 4), probe.slice(0, 4 * rank, 4 * rank + 4));
  }));
  for (int r = 0; r < 2; ++r) {
    EXPECT_TRUE(torch::allclose(parts[r].y, whole.y.slice(0, 4 * r, 4 * r + 4), 1e-5, 1e-5)) << "rank " << r;
    // Each rank's loss is its half of the sum: its input gradient is the whole batch's, sliced.
    EXPECT_TRUE(torch::allclose(parts[r].x_grad, whole.x_grad.slice(0, 4 * r, 4 * r + 4), 1e-4, 1e-5)) << "rank " << r;
    EXPECT_TRUE(torch::allclose(parts[r].running_mean, whole.running_mean, 1e-6, 1e-6));
    EXPECT_TRUE(torch::allclose(parts[r].running_var, whole.running_var, 1e-6, 1e-6));
  }
  // The affine gradients are sums over the batch: the ranks' parts add up.
  EXPECT_TRUE(torch::allclose(parts[0].weight_grad + parts[1].weight_grad, whole.weight_grad, 1e-4, 1e-5));
  EXPECT_TRUE(torch::allclose(parts[0].bias_grad + parts[1].bias_grad, whole.bias_grad, 1e-4, 1e-5));
}

namespace {

// A uint8 training set with a learnable pattern: class c brightens rows 7c..7c+6.
fer::TrainData pattern_data(int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  auto labels = torch::randint(0, 7, {n}, torch::kInt64);
  auto images = torch::randint(20, 80, {n, 48, 48}, torch::kInt64);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = labels[i].item<int64_t>();
    images[i].slice(0, 7 * c, 7 * c + 7) += 100;
  }
  return {images.to(torch::kUInt8), labels};
}

fer::ModelOptions small_model(double dropout) {
  fer::ModelOptions o;
  o.filters = {8, 16, 32};
  o.dense_units = 64;
  o.conv_dropout = o.dense_dropout = dropout;
  return o;
}

// Copies every parameter and buffer after each epoch.
struct SnapshotHook : fer::HookBase {
  std::vector<std::vector<torch::Tensor>> epochs;
  void after_epoch(fer::TrainerBase& trainer) override {
    auto& t = dynamic_cast<fer::SupervisedTrainer&>(trainer);
    std::vector<torch::Tensor> copy;
    for (const auto& p : t.model()->parameters()) copy.push_back(p.detach().clone());
    for (const auto& b : t.model()->buffers()) copy.push_back(b.clone());
    epochs.push_back(copy);
  }
};

struct RankRun {
  fer::Classifier model;
  fer::TrainData data;
  fer::StepOptions step;
  int epochs = 2;
  bool sync_batchnorm = false;
  double lr = 0.01;
  std::shared_ptr<SnapshotHook> snapshots = std::make_shared<SnapshotHook>();
};

// Trains `run` as one rank of `comm`'s world (DataParallelHook when it has peers).
void train_rank(RankRun& run, const std::shared_ptr<fer::Communicator>& comm) {
  if (run.sync_batchnorm) fer::use_sync_batchnorm(*run.model, comm);
  fer::OptimizerOptions o;
  o.name = "sgd";
  o.lr = run.lr;
  run.step.rank = comm->rank();
  run.step.world_size = comm->world_size();
  fer::SupervisedTrainer trainer(run.model, fer::make_optimizer(run.model->parameters(), o), run.data, run.step,
                                 torch::kCPU);
  if (comm->world_size() > 1) trainer.register_hook(std::make_shared<fer::DataParallelHook>(comm));
  trainer.register_hook(run.snapshots);
  trainer.progress().max_epochs = run.epochs;
  trainer.train();
}

double max_difference(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    worst = std::max(worst, (a[i].to(torch::kFloat64) - b[i].to(torch::kFloat64)).abs().max().item<double>());
  return worst;
}

std::shared_ptr<fer::Communicator> borrowed(fer::Communicator& comm) { return {&comm, [](fer::Communicator*) {}}; }

}  // namespace

// Dropout, augmentation and each rank's own BatchNorm statistics on: the ranks
// still hold one model, epoch after epoch (weights from rank 0, averaged gradients).
TEST(DataParallel, TwoRanksHoldTheSameModelAfterEveryEpoch) {
  if (!fer::distributed_supported()) GTEST_SKIP() << "built without c10d Gloo (libgloo-dev)";
  std::vector<RankRun> runs(2);
  for (int r = 0; r < 2; ++r) {
    torch::manual_seed(100 + r);  // different initialisations: the broadcast must make them one
    runs[r].model = fer::make_model(small_model(0.3));
    runs[r].data = pattern_data(90, 7);
    runs[r].step.batch_size = 8;
    runs[r].epochs = 3;
  }
  ASSERT_TRUE(with_two_ranks([&](int rank, fer::Communicator& comm) { train_rank(runs[rank], borrowed(comm)); }));
  ASSERT_EQ(runs[0].snapshots->epochs.size(), 3u);
  ASSERT_EQ(runs[1].snapshots->epochs.size(), 3u);
  for (int e = 0; e < 3; ++e)
    EXPECT_EQ(max_difference(runs[0].snapshots->epochs[e], runs[1].snapshots->epochs[e]), 0.0) << "epoch " << e + 1;
}

// A small CNN without BatchNorm: each image's gradient depends on that image
// alone, so the split of a batch over ranks cannot change a step.
struct NoNormNet : fer::SequentialClassifierImpl {
  NoNormNet() {
    namespace nn = torch::nn;
    add("conv1", nn::Conv2d(nn::Conv2dOptions(1, 8, 3).padding(1)));
    add("relu1", nn::ReLU());
    add("pool1", nn::MaxPool2d(2));
    add("conv2", nn::Conv2d(nn::Conv2dOptions(8, 16, 3).padding(1)));
    add("relu2", nn::ReLU());
    add("pool2", nn::MaxPool2d(2));
    add("flatten", nn::Flatten());
    add("fc", nn::Linear(16 * 12 * 12, 7));
  }
};

// Without BatchNorm, dropout or augmentation, two ranks of batch B take the
// steps one process takes with batch 2B (the union of their slices).
TEST(DataParallel, TwoRanksOfBatchBMatchOneRankOfBatch2B) {
  if (!fer::distributed_supported()) GTEST_SKIP() << "built without c10d Gloo (libgloo-dev)";
  torch::manual_seed(11);
  const auto initial = std::make_shared<NoNormNet>();
  std::vector<RankRun> runs(3);
  for (auto& run : runs) {
    run.model = std::make_shared<NoNormNet>();
    fer::ema_update(*run.model, *initial, 0.0);  // the same start everywhere
    run.data = pattern_data(64, 8);
    run.step.augment = fer::AugmentOptions::from_config([] { fer::AugmentConfig c; c.enabled = false; return c; }());
    run.step.batch_size = 8;
    run.lr = 0.01;
    run.epochs = 3;  // 4 steps an epoch
  }
  runs[2].step.batch_size = 16;
  train_rank(runs[2], fer::local_communicator());
  ASSERT_TRUE(with_two_ranks([&](int rank, fer::Communicator& comm) { train_rank(runs[rank], borrowed(comm)); }));
  ASSERT_EQ(runs[0].snapshots->epochs.size(), 3u);
  for (int e = 0; e < 3; ++e) {
    const double gap = max_difference(runs[0].snapshots->epochs[e], runs[2].snapshots->epochs[e]);
    EXPECT_LT(gap, 1e-5) << "epoch " << e + 1;
    RecordProperty("max_difference_epoch_" + std::to_string(e + 1), std::to_string(gap));
    // and the run moved: the comparison is not between two untouched models
    EXPECT_GT(max_difference(runs[0].snapshots->epochs[e], [&] {
                std::vector<torch::Tensor> v;
                for (const auto& p : initial->parameters()) v.push_back(p.detach());
                return v;
              }()), 1e-3);
  }
}

TEST(DataParallel, RanksThatDriftApartAreAnError) {
  if (!fer::distributed_supported()) GTEST_SKIP() << "built without c10d Gloo (libgloo-dev)";
  std::vector<RankRun> runs(2);
  std::vector<std::string> errors(2);
  for (auto& run : runs) {
    run.model = fer::make_model(small_model(0.0));
    run.data = pattern_data(16, 3);
    run.step.batch_size = 8;
  }
  ASSERT_TRUE(with_two_ranks([&](int rank, fer::Communicator& comm) {
    fer::OptimizerOptions o;
    auto& run = runs[rank];
    run.step.rank = rank;
    run.step.world_size = 2;
    fer::SupervisedTrainer trainer(run.model, fer::make_optimizer(run.model->parameters(), o), run.data, run.step,
                                   torch::kCPU);
    fer::DataParallelHook hook(borrowed(comm));
    hook.before_train(trainer);
    if (rank == 1) {
      torch::NoGradGuard no_grad;
      run.model->parameters()[0].add_(1e-3);
    }
    trainer.progress().images_in_epoch = 8;
    try {
      hook.after_epoch(trainer);
    } catch (const fer::DistributedError& e) {
      errors[rank] = e.what();
    }
  }));
  EXPECT_EQ(errors[0], "");
  EXPECT_NE(errors[1].find("rank 1: after epoch 0 its parameters differ from rank 0's"), std::string::npos) << errors[1];
}

namespace {

// A fer-train rank as a child process with the launcher's variables; output to `log`.
pid_t spawn_rank(const std::vector<std::string>& args, int rank, int world, int port, const std::string& log) {
  const pid_t pid = fork();
  if (pid != 0) return pid;
  setenv("RANK", std::to_string(rank).c_str(), 1);
  setenv("LOCAL_RANK", std::to_string(rank).c_str(), 1);
  setenv("WORLD_SIZE", std::to_string(world).c_str(), 1);
  setenv("MASTER_ADDR", "127.0.0.1", 1);
  setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
  if (!freopen(log.c_str(), "w", stdout) || !freopen(log.c_str(), "a", stderr)) _exit(126);
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  execv(argv[0], argv.data());
  _exit(127);
}

// The exit code of `pid`, or -1 if it is still running after `seconds` (then it is killed).
int wait_exit(pid_t pid, double seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  return -1;
}

std::size_t history_rows(const std::string& run) {
  const auto path = run + "/history.csv";
  return fer_test::fs::exists(path) ? fer::read_history_csv(path).size() : 0;
}

struct DistributedRun {
  fer_test::SyntheticData data{16, 2};
  fer_test::TempDir dir;
  std::string bin = std::string(fer_test::bin_dir()) + "/fer-train";
  std::string config = dir / "dp.yaml";
  explicit DistributedRun(int epochs, int timeout_s = 60) {
    fer_test::write_file(config, "name: dp\nmodel: {filters: [8, 16, 32], dense_units: 64}\n"
                                 "train: {epochs: " + std::to_string(epochs) + ", batch_size: 8, threads: 1, "
                                 "background_k: 0, early_stopping_patience: 0, distributed_timeout_s: " +
                                 std::to_string(timeout_s) + "}\n");
  }
  std::vector<std::string> args(const std::string& out, const std::vector<std::string>& extra = {}) const {
    std::vector<std::string> a{bin, "--config", config, "--data", data.csv, "--out", out};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }
  std::string command(const std::string& out, const std::string& extra, const std::string& log) const {
    return bin + " --config " + config + " --data " + data.csv + " --out " + out + " " + extra + " > " + log + " 2>&1";
  }
};

// Starts two ranks (logs rank0.log, rank1.log) and waits for their first finished epoch.
std::pair<pid_t, pid_t> two_ranks_one_epoch_in(const DistributedRun& run, const std::string& out) {
  const int port = fer::free_local_port();
  const pid_t rank0 = spawn_rank(run.args(out), 0, 2, port, run.dir / "rank0.log");
  const pid_t rank1 = spawn_rank(run.args(out), 1, 2, port, run.dir / "rank1.log");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(2);
  while (history_rows(out) < 1 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_GE(history_rows(out), 1u) << fer_test::read_text(run.dir / "rank0.log");
  return {rank0, rank1};
}

// Sends `signal` to rank 1 after the first epoch. Returns rank 0's exit code
// and how long it took to exit after the signal.
std::pair<int, double> disturb_rank_1(const DistributedRun& run, const std::string& out, int signal, double wait_s) {
  const auto [rank0, rank1] = two_ranks_one_epoch_in(run, out);
  kill(rank1, signal);
  const auto start = std::chrono::steady_clock::now();
  const int code = wait_exit(rank0, wait_s);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  kill(rank1, SIGKILL);
  waitpid(rank1, nullptr, 0);
  return {code, took};
}

}  // namespace

TEST(DistributedTraining, NprocLaunchesRanksThatTrainAndRankZeroWrites) {
  if (!fer::distributed_supported()) GTEST_SKIP() << "built without c10d Gloo (libgloo-dev)";
  DistributedRun run(2);
  const std::string out = run.dir / "run";
  ASSERT_EQ(std::system(run.command(out, "--nproc 2", run.dir / "log").c_str()), 0) << fer_test::read_text(run.dir / "log");
  EXPECT_EQ(history_rows(out), 2u);
  const std::string log = fer_test::read_text(out + "/train.log");
  EXPECT_NE(log.find("data parallel: 2 ranks over gloo"), std::string::npos) << log;
  EXPECT_NE(log.find("effective batch 16"), std::string::npos) << log;
  for (const char* file : {"best.pt", "last.pt", "metrics.json", "config.yaml"})
    EXPECT_TRUE(fer_test::fs::exists(out + "/" + file)) << file;
  // The console shows rank 0's lines once, not once per rank.
  const std::string console = fer_test::read_text(run.dir / "log");
  EXPECT_EQ(console.find("training done"), console.rfind("training done")) << console;
}

TEST(DistributedTraining, AKilledRankMakesTheOtherFailNamingIt) {
  if (!fer::distributed_supported()) GTEST_SKIP() << "built without c10d Gloo (libgloo-dev)";
  DistributedRun run(200, 20);
  const auto [code, took] = disturb_rank_1(run, run.dir / "run", SIGKILL, 40);
  EXPECT_GT(code, 0) << "rank 0 must fail (-1: still running after 40 s)";
  EXPECT_LT(took, 30.0);
  const std::string log = fer_test::read_text(run.dir / "rank0.log");
  EXPECT_NE(log.find("rank 1 stopped answering"), std::string::npos) << log;
}

TEST(DistributedTraining, AHungRankMakesTheOtherFailWithinTheTimeout) {
  if (!fer::distributed_supported()) GTEST_SKIP() << "built without c10d Gloo (libgloo-dev)";
  DistributedRun run(200, 5);
  const auto [code, took] = disturb_rank_1(run, run.dir / "run", SIGSTOP, 40);
  EXPECT_GT(code, 0) << "rank 0 must fail (-1: still running after 40 s)";
  EXPECT_LT(took, 5 + 10.0);  // the timeout, the failure report, and an epoch's end
  const std::string log = fer_test::read_text(run.dir / "rank0.log");
  EXPECT_NE(log.find("rank 1 stopped answering"), std::string::npos) << log;
}

TEST(DistributedTraining, ResumesWithTheSameWorldSizeAndRefusesAnother) {
  if (!fer::distributed_supported()) GTEST_SKIP() << "built without c10d Gloo (libgloo-dev)";
  DistributedRun run(2);
  const std::string out = run.dir / "run", straight = run.dir / "straight";
  ASSERT_EQ(std::system(run.command(out, "--nproc 2", run.dir / "log1").c_str()), 0) << fer_test::read_text(run.dir / "log1");
  ASSERT_EQ(std::system(run.command(out, "--nproc 2 --resume --set train.epochs=3", run.dir / "log2").c_str()), 0)
      << fer_test::read_text(run.dir / "log2");
  ASSERT_EQ(std::system(run.command(straight, "--nproc 2 --set train.epochs=3", run.dir / "log3").c_str()), 0)
      << fer_test::read_text(run.dir / "log3");
  fer_test::expect_same_history(fer::read_history_csv(out + "/history.csv"),
                                fer::read_history_csv(straight + "/history.csv"));
  EXPECT_NE(std::system(run.command(out, "--resume --set train.epochs=4", run.dir / "log4").c_str()), 0);
  EXPECT_NE(fer_test::read_text(run.dir / "log4").find("trained by 2 ranks and this one has 1"), std::string::npos)
      << fer_test::read_text(run.dir / "log4");
  EXPECT_EQ(history_rows(out), 3u);
}

// SIGTERM to one rank: both stop after the same batch (exit 3), rank 0's last.pt
// holds both ranks' positions, and the resumed job ends as an uninterrupted one.
TEST(DistributedTraining, ASignalToOneRankStopsEveryRankAfterTheSameBatch) {
  if (!fer::distributed_supported()) GTEST_SKIP() << "built without c10d Gloo (libgloo-dev)";
  DistributedRun run(200);
  const std::string out = run.dir / "run", straight = run.dir / "straight";
  const auto [rank0, rank1] = two_ranks_one_epoch_in(run, out);
  kill(rank1, SIGTERM);
  EXPECT_EQ(wait_exit(rank1, 60), 3) << fer_test::read_text(run.dir / "rank1.log");
  EXPECT_EQ(wait_exit(rank0, 60), 3) << fer_test::read_text(run.dir / "rank0.log");
  const std::string log0 = fer_test::read_text(run.dir / "rank0.log");
  EXPECT_NE(log0.find("stopped by a signal to another rank after batch"), std::string::npos) << log0;
  const auto saved = fer::load_checkpoint(out + "/last.pt", torch::kCPU, fer::training_state_blob_names());
  const auto position0 = fer::interrupted_position(saved.blobs, 0), position1 = fer::interrupted_position(saved.blobs, 1);
  ASSERT_TRUE(position0 && position1);
  EXPECT_EQ(position0->step, position1->step);
  EXPECT_NE(position0->generator_state, position1->generator_state);  // each rank's own augmentation stream
  const std::string epochs = "--set train.epochs=" + std::to_string(position0->epoch + 1);
  ASSERT_EQ(std::system(run.command(out, "--nproc 2 --resume " + epochs, run.dir / "log2").c_str()), 0)
      << fer_test::read_text(run.dir / "log2");
  ASSERT_EQ(std::system(run.command(straight, "--nproc 2 " + epochs, run.dir / "log3").c_str()), 0)
      << fer_test::read_text(run.dir / "log3");
  fer_test::expect_same_history(fer::read_history_csv(out + "/history.csv"),
                                fer::read_history_csv(straight + "/history.csv"));
  const auto a = fer::load_checkpoint(out + "/last.pt", torch::kCPU), b = fer::load_checkpoint(straight + "/last.pt", torch::kCPU);
  for (const auto& p : a.model->named_parameters())
    EXPECT_TRUE(torch::equal(p.value(), b.model->named_parameters()[p.key()])) << p.key();
}

namespace {

// A paper_cnn with random weights and BatchNorm statistics, saved as a checkpoint.
std::string random_checkpoint(const fer_test::TempDir& dir) {
  torch::manual_seed(21);
  fer::ModelOptions o;
  auto model = fer::make_model(o);
  model->train();
  {
    torch::NoGradGuard no_grad;
    model->forward(torch::rand({32, 1, 48, 48}));  // BatchNorm statistics of some images
  }
  model->eval();
  fer::save_checkpoint(dir / "m.pt", *model, {o, fer::emotion_names(), {}});
  return dir / "m.pt";
}

std::vector<std::vector<std::string>> csv_rows(const std::string& path) {
  fer::CsvReader reader(path);
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> row;
  while (reader.next(row)) rows.push_back(row);
  return rows;
}

}  // namespace

TEST(ShardedEvaluation, TwoShardsMergeToTheUnshardedEvaluation) {
  fer_test::SyntheticData data(9, 2);  // 63 Training, 42 PublicTest and 14 PrivateTest rows
  fer_test::TempDir dir;
  const std::string model = random_checkpoint(dir), bin = std::string(fer_test::bin_dir()) + "/fer-eval";
  const std::string common = bin + " --model " + model + " --data " + data.csv + " --split all --no-charts --threads 1";
  for (const char* shard : {"0/2", "1/2"})
    ASSERT_EQ(std::system((common + " --shard " + shard + " --out " + (dir / "sharded") + " > /dev/null 2>&1").c_str()), 0);
  const std::string merge = bin + " --merge " + (dir / "sharded/shard-1-of-2") + " " + (dir / "sharded/shard-0-of-2") +
                            " --out " + (dir / "merged") + " --no-charts > /dev/null 2>&1";
  ASSERT_EQ(std::system(merge.c_str()), 0);
  ASSERT_EQ(std::system((common + " --out " + (dir / "whole") + " > /dev/null 2>&1").c_str()), 0);

  const auto merged = csv_rows(dir / "merged/predictions.csv"), whole = csv_rows(dir / "whole/predictions.csv");
  ASSERT_EQ(merged.size(), whole.size());
  ASSERT_EQ(whole.size(), 1u + 63 + 42 + 14);
  for (std::size_t i = 0; i < whole.size(); ++i) {
    ASSERT_EQ(merged[i].size(), whole[i].size());
    for (std::size_t c = 0; c < 3; ++c) EXPECT_EQ(merged[i][c], whole[i][c]) << "row " << i;  // index, true, predicted
    for (std::size_t c = 3; i > 0 && c < whole[i].size(); ++c)
      EXPECT_NEAR(std::stod(merged[i][c]), std::stod(whole[i][c]), 1.01e-6) << "row " << i << " column " << c;
  }
  const auto a = nlohmann::json::parse(fer_test::read_text(dir / "merged/metrics.json"));
  const auto b = nlohmann::json::parse(fer_test::read_text(dir / "whole/metrics.json"));
  for (const char* key : {"accuracy", "balanced_accuracy", "macro_f1", "weighted_f1"})
    EXPECT_NEAR(a.at(key).get<double>(), b.at(key).get<double>(), 1e-6) << key;
  EXPECT_NEAR(a["roc_auc"]["macro"].get<double>(), b["roc_auc"]["macro"].get<double>(), 1e-6);
  EXPECT_EQ(a.at("confusion_matrix"), b.at("confusion_matrix"));
  EXPECT_EQ(a.at("n"), b.at("n"));
  EXPECT_EQ(a.at("checkpoint"), b.at("checkpoint"));
}

TEST(ShardedEvaluation, MergeNamesAMissingOrRepeatedShard) {
  fer_test::SyntheticData data(3, 1);
  fer_test::TempDir dir;
  const std::string model = random_checkpoint(dir), bin = std::string(fer_test::bin_dir()) + "/fer-eval";
  const std::string common = bin + " --model " + model + " --data " + data.csv + " --split all --no-charts --threads 1 --out " +
                             (dir / "s");
  for (const char* shard : {"0/3", "2/3"})
    ASSERT_EQ(std::system((common + " --shard " + shard + " > /dev/null 2>&1").c_str()), 0);
  const auto merge_error = [&](const std::string& dirs) {
    const std::string log = dir / "merge.log";
    EXPECT_NE(std::system((bin + " --merge " + dirs + " --out " + (dir / "m") + " > " + log + " 2>&1").c_str()), 0);
    return fer_test::read_text(log);
  };
  EXPECT_NE(merge_error(dir / "s/shard-0-of-3 " + dir / "s/shard-2-of-3").find("shard 1 of 3 is missing"), std::string::npos);
  EXPECT_NE(merge_error(dir / "s/shard-0-of-3 " + dir / "s/shard-0-of-3").find("shard 0 is given twice"), std::string::npos);
  EXPECT_NE(merge_error(dir / "nothing").find("is not an evaluation shard"), std::string::npos);
}

// PyTorch's own launcher, where it runs: fer-train must work under it
// unchanged, as a client of the store torchrun's agent hosts
// (TORCHELASTIC_USE_AGENT_STORE). Debian 13's python3-torch 2.6 is built
// without libuv, yet its torchrun asks for a libuv TCPStore; the shim asks for
// the plain one. Debian 12's torchrun 1.13 fails on Python 3.11 before
// starting anything: skipped there.
TEST(DistributedTraining, TorchrunLaunchesFerTrainUnchanged) {
  if (!fer::distributed_supported()) GTEST_SKIP() << "built without c10d Gloo (libgloo-dev)";
  DistributedRun run(2);
  const std::string shim = run.dir / "torchrun.py";
  fer_test::write_file(shim,
                       "import sys, functools, torch, torch.distributed as dist\n"
                       "if tuple(int(v) for v in torch.__version__.split('.')[:2]) >= (2, 4):\n"
                       "    dist.TCPStore = functools.partial(dist.TCPStore, use_libuv=False)\n"
                       "from torch.distributed.run import main\n"
                       "sys.exit(main())\n");
  const std::string torchrun = "/usr/bin/python3 " + shim + " --rdzv_backend static --master_addr 127.0.0.1 --nnodes 1 " +
                               "--node_rank 0 --no_python --master_port ";
  if (std::system((torchrun + std::to_string(fer::free_local_port()) + " --nproc_per_node=1 true > /dev/null 2>&1").c_str()) != 0)
    GTEST_SKIP() << "torchrun does not run on this machine (`" << torchrun << "PORT --nproc_per_node=1 true` fails)";
  const std::string out = run.dir / "run";
  const std::string command = torchrun + std::to_string(fer::free_local_port()) + " --nproc_per_node=2 " + run.bin + " --config " +
                              run.config + " --data " + run.data.csv + " --out " + out + " > " + (run.dir / "log") + " 2>&1";
  ASSERT_EQ(std::system(command.c_str()), 0) << fer_test::read_text(run.dir / "log");
  EXPECT_EQ(history_rows(out), 2u);
  EXPECT_NE(fer_test::read_text(out + "/train.log").find("data parallel: 2 ranks over gloo"), std::string::npos);
}
