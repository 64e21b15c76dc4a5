// libfer: facial emotion recognition on FER-2013 with LibTorch and OpenCV.
// Two libraries: fer::core computes and reports only through callbacks
// (fer/common/callbacks.h); fer::report writes charts and files on top of it. A
// program sets the process-wide CPU settings once (fer/report/runtime.h).
//
// Train the paper's CNN from a config, then evaluate the best checkpoint:
//
//   #include <fer/fer.h>
//
//   fer::configure_cpu_runtime(/*threads=*/0);   // once, at start
//   fer::Config cfg = fer::load_config("configs/paper_cnn.yaml");
//   cfg.data.path = "fer2013.csv.gz";
//   fer::TrainSummary run = fer::train({cfg, "runs/paper_cnn", /*resume=*/true});
//
//   fer::DatasetSplits data = fer::load_dataset("fer2013.csv.gz");
//   fer::EvaluationOptions eval;
//   eval.tta = fer::Tta::flip;   // or tencrop; several checkpoints: fer::evaluate_checkpoints
//   fer::EvaluationResult r = fer::evaluate_checkpoint(run.best_checkpoint, data.val, "out/", eval);
//   std::printf("accuracy %.4f\n", r.metrics.accuracy);
//
// Live video (camera index, file, folder or URL) with faces, tracks, trends and alerts:
//
//   fer::LiveOptions live;
//   live.source = "0";
//   live.out_dir = "session";
//   fer::run_live("experiments/fer2013_paper_cnn/best.pt", live);
//
// Or predict directly (tensor API):
//
//   auto ckpt = fer::load_checkpoint("experiments/fer2013_paper_cnn/best.pt", torch::kCPU);
//   torch::Tensor probs = fer::predict_probabilities(*ckpt.model, fer::images_tensor(data.val), torch::kCPU);
#pragma once

#include "fer/common/callbacks.h"
#include "fer/common/emotions.h"
#include "fer/common/enum_names.h"
#include "fer/common/io.h"
#include "fer/common/precision.h"
#include "fer/common/protobuf.h"
#include "fer/config/config.h"
#include "fer/data/augment.h"
#include "fer/data/dataset.h"
#include "fer/data/ferplus.h"
#include "fer/data/input_normalization.h"
#include "fer/data/sampler.h"
#include "fer/deploy/export.h"
#include "fer/distributed/distributed.h"
#include "fer/engine/communicator.h"
#include "fer/engine/engine.h"
#include "fer/engine/history.h"
#include "fer/engine/hooks.h"
#include "fer/engine/optim.h"
#include "fer/explain/attribution.h"
#include "fer/explain/background.h"
#include "fer/explain/deepshap.h"
#include "fer/explain/faithfulness.h"
#include "fer/explain/sanity.h"
#include "fer/inference/inference.h"
#include "fer/inference/metrics.h"
#include "fer/inference/predictor.h"
#include "fer/live/trends.h"
#include "fer/live/wellbeing.h"
#include "fer/models/checkpoint.h"
#include "fer/models/model.h"
#include "fer/models/model_store.h"
#include "fer/report/environment.h"
#include "fer/report/evaluate/evaluate.h"
#include "fer/report/evaluate/shards.h"
#include "fer/report/explain/gallery.h"
#include "fer/report/live/alert_command.h"
#include "fer/report/live/trends.h"
#include "fer/report/plot.h"
#include "fer/report/progress.h"
#include "fer/report/run_lock.h"
#include "fer/report/runtime.h"
#include "fer/report/train/compare.h"
#include "fer/report/train/sweep.h"
#include "fer/report/train/tensorboard.h"
#include "fer/report/train/train.h"
#if FER_WITH_OPENCV
#include "fer/explain/explainer.h"
#include "fer/explain/lime.h"
#include "fer/explain/sanity_check.h"
#include "fer/faces/faces.h"
#include "fer/faces/tracking.h"
#include "fer/faces/yunet.h"
#include "fer/live/live_session.h"
#include "fer/report/explain/batch.h"
#include "fer/report/explain/sanity.h"
#include "fer/report/image_file.h"
#include "fer/report/live/session.h"
#include "fer/report/live/sinks.h"
#endif
