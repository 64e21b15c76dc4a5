// The collectives a trainer's hooks use across ranks (fer/distributed/distributed.h
// connects real ones); with one rank, local_communicator(): every collective is the identity.
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <vector>

namespace fer {

// The collectives data-parallel training needs. `what` names the operation in
// errors (e.g. "all-reduce of gradients, epoch 3 step 17").
class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual std::string backend() const = 0;
  // Elementwise sum across ranks, in place; every rank gets the same result.
  virtual void all_reduce_sum(std::vector<at::Tensor>& tensors, const std::string& what) = 0;
  // Rank `root`'s values into every rank's tensors, in place.
  virtual void broadcast(std::vector<at::Tensor>& tensors, int root, const std::string& what) = 0;
  virtual void barrier(const std::string& what) = 0;
};

// A world of one: collectives are the identity.
std::shared_ptr<Communicator> local_communicator();

}  // namespace fer
