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

std::string ShardSpec::dir_name() const { return fmt::format("shard-{}-of-{}", index, count); }

ShardSpec parse_shard(const std::string& text) {
  const auto slash = text.find('/');
  try {
    if (slash == std::string::npos) throw std::invalid_argument("no slash");
    std::size_t used_k = 0, used_n = 0;
    ShardSpec s{std::stoi(text.substr(0, slash), &used_k), std::stoi(text.substr(slash + 1), &used_n)};
    if (used_k != slash || used_n != text.size() - slash - 1 || s.count < 1 || s.index < 0 || s.index >= s.count)
      throw std::invalid_argument("out of range");
    return s;
  } catch (const std::exception&) {
    throw std::invalid_argument("shard '" + text + "': expected K/N with 0 <= K < N (e.g. 0/4)");
  }
}

Dataset dataset_shard(const Dataset& data, const ShardSpec& shard) {
  const auto [begin, end] = shard_range(static_cast<int64_t>(data.size()), shard.index, shard.count);
  Dataset part = data.empty_like();
  for (auto i = static_cast<std::size_t>(begin); i < static_cast<std::size_t>(end); ++i) part.add_from(data, i);
  return part;
}

}  // namespace fer
