// Data-parallel training on PyTorch's distributed engine (c10d): a process per
// rank, rendezvous through c10d's TCPStore, Gloo between CPUs and NCCL between
// GPUs, launched the way PyTorch launches (torchrun, srun, or fer-train --nproc).
//
//   auto env = fer::DistributedEnv::from_environment();        // RANK, WORLD_SIZE, ... (or SLURM_*)
//   auto comm = fer::connect_process_group(env, device, std::chrono::seconds(1800));
//   trainer.register_hook(std::make_shared<fer::DataParallelHook>(comm));  // first
//
// With one rank, local_communicator() stands in: every collective is the identity.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "fer/engine/communicator.h"
#include "fer/engine/engine.h"

namespace fer {

// A collective failed or timed out, or the launch environment is wrong. The
// message names this rank and, where it can tell, the rank that died or hung.
class DistributedError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Where this process sits in the job, from the launcher's environment.
struct DistributedEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;              // the GPU index on this node
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  bool agent_store = false;        // torchrun's agent hosts the TCPStore: every rank is a client
  int restart_count = 0;           // torchrun's restarts: the store keys of each attempt are kept apart

  bool distributed() const { return world_size > 1; }

  // torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
  // MASTER_PORT, TORCHELASTIC_USE_AGENT_STORE, TORCHELASTIC_RESTART_COUNT);
  // without RANK, SLURM's (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, with
  // MASTER_ADDR and MASTER_PORT exported by the batch script); with neither, one
  // rank. `lookup` reads a variable (nullptr when unset); std::getenv by default.
  // Throws DistributedError naming a variable that is malformed or missing.
  static DistributedEnv from_environment(const std::function<const char*(const char*)>& lookup = nullptr);
};

// True when this build has c10d's Gloo process group (libgloo-dev's headers at build time).
bool distributed_supported();

// Joins the job described by `env`: TCPStore rendezvous at master_addr:master_port
// (hosted by rank 0 unless agent_store), then a Gloo process group (NCCL when
// `device` is CUDA and LibTorch has it). `timeout` bounds the rendezvous and
// every collective: a rank that died or hangs makes the others throw
// DistributedError within it. Requires env.world_size >= 1 and a supported build.
std::shared_ptr<Communicator> connect_process_group(const DistributedEnv& env, const c10::Device& device,
                                                    std::chrono::milliseconds timeout);

// Averages gradients across ranks after each backward pass, in buckets of about
// `bucket_bytes` (one all-reduce per bucket), so every rank takes the same
// optimizer step. Before training it copies rank 0's weights and buffers to
// every rank; the step's loss and image count become the global batch's; after
// each epoch it sums the training loss, accuracy and image count over the
// ranks, averages the BatchNorm statistics, and checks that every rank holds
// the same parameters (DistributedError otherwise). Register it first, so the
// other hooks see averaged gradients.
class DataParallelHook : public HookBase {
 public:
  explicit DataParallelHook(std::shared_ptr<Communicator> comm, int64_t bucket_bytes = 25 << 20);
  void before_train(TrainerBase& trainer) override;
  void after_backward(TrainerBase& trainer) override;
  void after_epoch(TrainerBase& trainer) override;

 private:
  std::shared_ptr<Communicator> comm_;
  int64_t bucket_bytes_;
};

// SyncBatchNorm: every BatchNorm layer of `model` normalises training batches
// with the mean and variance of the whole global batch (all ranks), and its
// gradient flows back through those statistics; evaluation is unchanged, and so
// are the parameter names (checkpoints load into a plain model). Requires a
// sequential architecture (fer/models/model.h); throws std::invalid_argument otherwise.
void use_sync_batchnorm(ClassifierImpl& model, std::shared_ptr<Communicator> comm);

// A TCP port free on 127.0.0.1 now (the kernel's pick), for a one-machine
// rendezvous. Throws std::runtime_error when no socket can be bound.
int free_local_port();

}  // namespace fer
