// c10d's process groups behind fer::Communicator: TCPStore rendezvous, Gloo on
// CPU, NCCL on CUDA. Built only with libgloo-dev's headers (FER_HAVE_C10D);
// otherwise connect_process_group explains what the build lacks.
#include <fmt/format.h>
#include <torch/torch.h>

#include <thread>
#include <type_traits>
#include <utility>

#include "fer/distributed/distributed.h"

// USE_C10D_GLOO comes with LibTorch's own compile definitions (Debian's do carry it).
#if defined(FER_HAVE_C10D) && defined(USE_C10D_GLOO)
#define FER_C10D_GLOO 1
#endif
// NCCL: a CUDA LibTorch (USE_C10D_NCCL) and <nccl.h> at build time; else GPUs talk through Gloo.
#if defined(USE_C10D_NCCL) && defined(FER_HAVE_NCCL_HEADER)
#define FER_C10D_NCCL 1
#endif

#if FER_C10D_GLOO
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#if FER_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif
#endif

namespace fer {

#if FER_C10D_GLOO
namespace {

// Turns a failed collective into an error naming the ranks that stopped
// answering: each rank that sees the failure reports it in the store; a rank
// that reports nothing within a moment died or hangs.
class FailureReport {
 public:
  FailureReport(c10::intrusive_ptr<c10d::Store> store, const DistributedEnv& env) : store_(std::move(store)), env_(env) {}

  std::string describe(const std::string& what, const std::string& cause) const {
    const std::string head = fmt::format("rank {} of {}: {} failed: {}", env_.rank, env_.world_size, what, first_line(cause));
    try {
      store_->set(key(env_.rank), std::vector<uint8_t>{1});
      std::this_thread::sleep_for(std::chrono::seconds(2));  // the other survivors report meanwhile
      std::vector<int> silent;
      for (int r = 0; r < env_.world_size; ++r)
        if (r != env_.rank && !store_->check({key(r)})) silent.push_back(r);
      if (silent.empty()) return head + " (every other rank saw the failure too)";
      return fmt::format("{}; rank {} stopped answering (it died or hangs: see its log)", head, fmt::join(silent, ", "));
    } catch (const std::exception&) {
      if (env_.agent_store)
        return fmt::format("{}; the rendezvous store at {}:{} (the launcher's agent) is gone", head, env_.master_addr,
                           env_.master_port);
      return fmt::format("{}; the rendezvous store on rank 0 ({}:{}) is gone, so rank 0 died", head, env_.master_addr,
                         env_.master_port);
    }
  }

 private:
  static std::string key(int rank) { return "fer/failed/" + std::to_string(rank); }
  static std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }
  c10::intrusive_ptr<c10d::Store> store_;
  DistributedEnv env_;
};

template <typename ProcessGroup>
class C10dCommunicator : public Communicator {
 public:
  // `staging`: the device every tensor must be on (NCCL: this rank's GPU); none for Gloo.
  C10dCommunicator(c10::intrusive_ptr<ProcessGroup> group, c10::intrusive_ptr<c10d::Store> store,
                   const DistributedEnv& env, std::string backend, std::chrono::milliseconds timeout,
                   c10::optional<c10::Device> staging = c10::nullopt)
      : group_(std::move(group)), report_(std::move(store), env), env_(env), backend_(std::move(backend)),
        timeout_(timeout), staging_(staging) {}

  int rank() const override { return env_.rank; }
  int world_size() const override { return env_.world_size; }
  std::string backend() const override { return backend_; }

  void all_reduce_sum(std::vector<at::Tensor>& tensors, const std::string& what) override {
    auto staged = stage(tensors);
    run(what, [&] { return group_->allreduce(staged, c10d::AllreduceOptions{}); });
    unstage(staged, tensors);
  }
  void broadcast(std::vector<at::Tensor>& tensors, int root, const std::string& what) override {
    c10d::BroadcastOptions options;
    options.rootRank = root;
    auto staged = stage(tensors);
    run(what, [&] { return group_->broadcast(staged, options); });
    unstage(staged, tensors);
  }
  void barrier(const std::string& what) override {
    run(what, [&] { return group_->barrier(c10d::BarrierOptions{}); });
  }

 private:
  template <typename Start>
  void run(const std::string& what, Start start) {
    try {
      start()->wait(timeout_);
    } catch (const std::exception& e) {
      throw DistributedError(report_.describe(what, e.what()));
    }
  }

  // NCCL reduces GPU tensors only: the small CPU tensors (metrics, fingerprints) travel through the GPU.
  std::vector<at::Tensor> stage(const std::vector<at::Tensor>& tensors) const {
    std::vector<at::Tensor> staged;
    for (const auto& t : tensors) staged.push_back(staging_ && t.device() != *staging_ ? t.to(*staging_) : t);
    return staged;
  }
  static void unstage(const std::vector<at::Tensor>& staged, std::vector<at::Tensor>& tensors) {
    for (std::size_t i = 0; i < tensors.size(); ++i)
      if (!staged[i].is_same(tensors[i])) tensors[i].copy_(staged[i]);
  }

  c10::intrusive_ptr<ProcessGroup> group_;
  FailureReport report_;
  DistributedEnv env_;
  std::string backend_;
  std::chrono::milliseconds timeout_;
  c10::optional<c10::Device> staging_;
};

// LibTorch 2.4+ defaults TCPStore to its libuv server, which builds without
// libuv (Debian's 2.6) refuse; the plain server is ample for a store that
// serves a rendezvous and a few failure reports.
template <typename Options, typename = void>
struct HasLibUvSwitch : std::false_type {};
template <typename Options>
struct HasLibUvSwitch<Options, std::void_t<decltype(std::declval<Options&>().useLibUV)>> : std::true_type {};

template <typename Options>
void use_plain_tcp_server(Options& options) {
  if constexpr (HasLibUvSwitch<Options>::value) options.useLibUV = false;
}

c10::intrusive_ptr<c10d::Store> rendezvous(const DistributedEnv& env, std::chrono::milliseconds timeout) {
  c10d::TCPStoreOptions options;
  use_plain_tcp_server(options);
  options.port = static_cast<std::uint16_t>(env.master_port);
  options.isServer = env.rank == 0 && !env.agent_store;
  options.numWorkers = static_cast<std::size_t>(env.world_size);
  options.waitWorkers = !env.agent_store;
  options.timeout = timeout;
  try {
    auto store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, options);
    // torchrun's own store outlives restarts: keep each attempt's keys apart, as torch.distributed does.
    return c10::make_intrusive<c10d::PrefixStore>("/worker/attempt_" + std::to_string(env.restart_count), store);
  } catch (const std::exception& e) {
    throw DistributedError(fmt::format("rank {} of {}: rendezvous at {}:{} failed within {} s: {}", env.rank,
                                       env.world_size, env.master_addr, env.master_port, timeout.count() / 1000,
                                       std::string(e.what()).substr(0, std::string(e.what()).find('\n'))));
  }
}

std::shared_ptr<::gloo::transport::Device> gloo_device(const DistributedEnv& env) {
  if (const char* interface = std::getenv("GLOO_SOCKET_IFNAME"))
    return c10d::ProcessGroupGloo::createDeviceForInterface(interface);
  if (env.master_addr == "127.0.0.1" || env.master_addr == "localhost")
    return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");  // one machine: stay on loopback
  return c10d::ProcessGroupGloo::createDefaultDevice();
}

}  // namespace

bool distributed_supported() { return true; }

std::shared_ptr<Communicator> connect_process_group(const DistributedEnv& env, const c10::Device& device,
                                                    std::chrono::milliseconds timeout) {
  auto store = rendezvous(env, timeout);
#if FER_C10D_NCCL
  if (device.is_cuda()) {
    auto options = c10d::ProcessGroupNCCL::Options::create();
    options->timeout = timeout;
    auto group = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, env.rank, env.world_size, options);
    return std::make_shared<C10dCommunicator<c10d::ProcessGroupNCCL>>(group, store, env, "nccl", timeout, device);
  }
#endif
  auto options = c10d::ProcessGroupGloo::Options::create(timeout);
  options->devices.push_back(gloo_device(env));
  options->threads = 2;
  try {
    auto group = c10::make_intrusive<c10d::ProcessGroupGloo>(store, env.rank, env.world_size, options);
    return std::make_shared<C10dCommunicator<c10d::ProcessGroupGloo>>(group, store, env, "gloo", timeout);
  } catch (const std::exception& e) {
    throw DistributedError(fmt::format("rank {} of {}: connecting the Gloo process group failed: {}", env.rank,
                                       env.world_size, e.what()));
  }
}

#else  // !FER_C10D_GLOO

bool distributed_supported() { return false; }

std::shared_ptr<Communicator> connect_process_group(const DistributedEnv& env, const c10::Device&,
                                                    std::chrono::milliseconds) {
  throw DistributedError(fmt::format(
      "WORLD_SIZE={}: this libfer was built without c10d's Gloo process group (configure it with libgloo-dev's "
      "headers installed: scripts/setup-deps.sh), so it trains on one process only",
      env.world_size));
}

#endif

}  // namespace fer
