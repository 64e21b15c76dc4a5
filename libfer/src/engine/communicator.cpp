#include "fer/engine/communicator.h"

namespace fer {
namespace {

class LocalCommunicator : public Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  std::string backend() const override { return "none"; }
  void all_reduce_sum(std::vector<at::Tensor>&, const std::string&) override {}
  void broadcast(std::vector<at::Tensor>&, int, const std::string&) override {}
  void barrier(const std::string&) override {}
};

}  // namespace

std::shared_ptr<Communicator> local_communicator() { return std::make_shared<LocalCommunicator>(); }

}  // namespace fer
