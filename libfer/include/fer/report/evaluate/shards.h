// Sharded batch evaluation: N processes (GPUs, nodes) each evaluate one slice
// of a split, and a merge rebuilds what one unsharded run writes.
//
//   fer-eval --shard 0/2 --out eval   ->  eval/shard-0-of-2/  (a shard's own metrics, + shard.json, probabilities.npy)
//   fer-eval --shard 1/2 --out eval   ->  eval/shard-1-of-2/
//   fer-eval --merge eval/shard-*-of-2 --out eval   ->  eval/ as one run would have written it
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fer/data/dataset.h"
#include "fer/data/sampler.h"
#include "fer/report/evaluate/evaluate.h"

namespace fer {

// ShardSpec, parse_shard and dataset_shard: fer/data/sampler.h.

// Where one shard's directory says it sits in the whole run.
struct ShardExtent {
  std::string dir;
  int index = 0;
  std::size_t begin = 0, end = 0;  // its rows or items [begin, end)
};

// Checks shards given in index order: 0..count-1, each once, each beginning
// where the previous one ended, together covering [0, total). `unit` names
// what they hold ("rows", "items"). Throws std::runtime_error naming the
// shard that is missing or duplicated, or the directory that does not follow.
void check_shard_sequence(const std::vector<ShardExtent>& shards, int count, std::size_t total, const std::string& unit);


// One shard of an evaluation (fer-eval --shard K/N): the models on the
// shard's slice of `data`, its own metrics and charts in `out_dir`, and what
// merge_evaluation_shards needs beside them. Throws as evaluate_checkpoints.
EvaluationResult evaluate_shard(const std::vector<std::string>& checkpoint_paths, const Dataset& data,
                                const ShardSpec& shard, const std::string& out_dir, const EvaluationOptions& options);

// Writes into a shard's evaluation directory what the merge needs: shard.json
// (the slice, the split, the models, the options, the labels) and
// probabilities.npy (float32 [rows, classes], bit-exact).
void write_evaluation_shard(const std::string& out_dir, const ShardSpec& shard, std::size_t total_rows,
                            const std::vector<std::int64_t>& labels, const EvaluationResult& result,
                            const std::vector<std::string>& class_names, const EvaluationOptions& options,
                            const std::vector<std::string>& checkpoint_paths);

// Reads the shard directories (any order), checks that they are shards 0..N-1
// of one evaluation (same split, models, options, total rows), concatenates them
// and writes metrics.json, predictions.csv and the charts into `out_dir` exactly
// as an unsharded evaluation of the same split does. `options` gives charts and
// progress (and history_csv, else the shards' own); the rest comes from the shards. Throws
// std::runtime_error naming the directory that is missing, duplicated or differs.
EvaluationResult merge_evaluation_shards(const std::vector<std::string>& shard_dirs, const std::string& out_dir,
                                         EvaluationOptions options);

}  // namespace fer
