// Which items each rank (or shard) takes: the index maths of data-parallel
// training, sharded evaluation and sharded explanation batches.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <utility>

#include "fer/data/dataset.h"

namespace fer {

// The slice [begin, end) of n items that rank `rank` of `world` evaluates:
// contiguous, disjoint, covering all n (the first n % world ranks get one more).
std::pair<int64_t, int64_t> shard_range(int64_t n, int rank, int world);

// PyTorch's DistributedSampler on an epoch permutation: padded with its own
// head to a multiple of world_size, then every world_size-th index from rank.
// Every rank gets ceil(n / world) indices; the union covers all n.
at::Tensor distributed_sampler_indices(const at::Tensor& permutation, int rank, int world_size);

// Shard `index` of `count` (counted from 0).
struct ShardSpec {
  int index = 0;
  int count = 1;
  bool sharded() const { return count > 1; }
  std::string dir_name() const;  // "shard-K-of-N"
};

// Parses "K/N" with 0 <= K < N. Throws std::invalid_argument naming the text.
ShardSpec parse_shard(const std::string& text);

// The shard's contiguous slice of `data` (fer::shard_range): images, labels, sources and votes.
Dataset dataset_shard(const Dataset& data, const ShardSpec& shard);

}  // namespace fer
