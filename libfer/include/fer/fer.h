// libfer: facial emotion recognition on FER-2013 with LibTorch and OpenCV.
// Two libraries: fer::core computes and reports only through callbacks
// (fer/callbacks.h); fer::report writes charts and files on top of it. A
// program sets the process-wide CPU settings once (fer/runtime.h).
//
// Train the paper's CNN from a config, then evaluate the best checkpoint:
//
//   #include <fer/fer.h>
//
//   fer::configure_cpu_runtime(/*threads=*/0);   // once, at start
//   fer::Config cfg = fer::load_config("configs/paper_cnn.yaml");
//   cfg.data.path = "fer2013.csv.gz";
//   fer::TrainSummary run = fer::train({cfg, "experiments/paper_cnn", /*resume=*/true});
//
//   fer::DatasetSplits data = fer::load_dataset("fer2013.csv.gz");
//   fer::EvaluationOptions eval;
//   eval.tta = "flip";   // or "tencrop"; several checkpoints: fer::evaluate_checkpoints
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

#include "fer/augment.h"
#include "fer/background.h"
#include "fer/callbacks.h"
#include "fer/checkpoint.h"
#include "fer/config.h"
#include "fer/dataset.h"
#include "fer/deepshap.h"
#include "fer/distributed.h"
#include "fer/emotions.h"
#include "fer/engine.h"
#include "fer/evaluate.h"
#include "fer/faithfulness.h"
#include "fer/gallery.h"
#include "fer/history.h"
#include "fer/hooks.h"
#include "fer/inference.h"
#include "fer/io.h"
#include "fer/metrics.h"
#include "fer/model.h"
#include "fer/model_store.h"
#include "fer/optim.h"
#include "fer/plot.h"
#include "fer/precision.h"
#include "fer/predictor.h"
#include "fer/progress.h"
#include "fer/run_record.h"
#include "fer/runtime.h"
#include "fer/shards.h"
#include "fer/train.h"
#include "fer/trends.h"
#include "fer/wellbeing.h"
#if FER_WITH_OPENCV
#include "fer/explain.h"
#include "fer/faces.h"
#include "fer/lime.h"
#include "fer/yunet.h"
#include "fer/live.h"
#include "fer/live_session.h"
#include "fer/live_sinks.h"
#include "fer/tracking.h"
#endif
