// Build check: fer/fer.h alone declares the whole public API. This file
// includes nothing else and compiles by itself (never in a unity batch, where
// another file's includes could hide a header fer.h leaves out); the build
// fails if fer.h misses one. One type per header that fer.h was once missing,
// and from the core and report sides. It also compiles the README's example.
#include <cstdio>
#include <type_traits>

#include "fer/fer.h"

static_assert(std::is_class_v<fer::DeepShapOptions>);
static_assert(std::is_class_v<fer::DistributedEnv>);
static_assert(std::is_class_v<fer::ShardSpec>);
static_assert(std::is_class_v<fer::EvaluationOptions>);
static_assert(std::is_class_v<fer::Config>);
static_assert(std::is_class_v<fer::RunFolderLock>);
#if FER_WITH_OPENCV
static_assert(std::is_class_v<fer::ExplainOptions>);
static_assert(std::is_class_v<fer::LimeOptions>);
static_assert(std::is_class_v<fer::LiveOptions>);
#endif

// The README's library example, verbatim but for its name (compiled, never run).
int readme_example() {
  fer::configure_cpu_runtime(/*threads=*/0);   // once, at start
  fer::Config cfg = fer::load_config("configs/paper_cnn_long.yaml");
  cfg.data.path = "fer2013.csv.gz";
  fer::TrainSummary run = fer::train({cfg, "runs/paper_cnn_long", /*resume=*/true});
  fer::DatasetSplits data = fer::load_dataset(cfg.data.path);
  fer::EvaluationResult r = fer::evaluate_checkpoint(run.best_checkpoint, data.val, "runs/eval", {});
  std::printf("PublicTest accuracy %.4f\n", r.metrics.accuracy);
  return 0;
}
