#include "fer/data/sampler.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>
#include <stdexcept>

namespace fer {

std::pair<int64_t, int64_t> shard_range(int64_t n, int rank, int world) {
  if (world < 1 || rank < 0 || rank >= world)
    throw std::invalid_argument(fmt::format("shard {} of {} does not exist", rank, world));
  const int64_t base = n / world, extra = n % world;
  const int64_t begin = rank * base + std::min<int64_t>(rank, extra);
  return {begin, begin + base + (rank < extra ? 1 : 0)};
}

at::Tensor distributed_sampler_indices(const at::Tensor& permutation, int rank, int world_size) {
  if (world_size == 1) return permutation;
  const int64_t n = permutation.size(0);
  if (n == 0) throw std::invalid_argument("cannot shard an empty permutation");
  const int64_t per_rank = (n + world_size - 1) / world_size, total = per_rank * world_size;
  at::Tensor padded = permutation;
  if (total > n) {
    const int64_t copies = (total - n + n - 1) / n;  // the head repeated, as PyTorch pads tiny sets
    padded = torch::cat({permutation, permutation.repeat({copies}).slice(0, 0, total - n)});
  }
  return padded.slice(0, rank, total, world_size);
}

}  // namespace fer
