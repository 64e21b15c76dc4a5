// Evaluation of a checkpoint on a dataset split: metrics.json, predictions.csv
// and charts (confusion matrices, ROC curves, training curves).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "fer/common/precision.h"
#include "fer/data/dataset.h"
#include "fer/inference/inference.h"
#include "fer/inference/metrics.h"
#include "fer/models/model_store.h"

namespace fer {

struct EvaluationOptions {
  Tta tta = Tta::none;
  Precision precision = Precision::fp32;
  int batch_size = 64;
  std::string device = "auto";
  bool charts = true;        // needs gnuplot; without it the charts are skipped with a warning
  bool progress = true;
  std::string history_csv;   // when set, also plot training curves from it
  std::string split = "val"; // recorded in metrics.json
  std::string data_source;   // recorded in metrics.json
};

struct EvaluationResult {
  Metrics metrics;
  std::vector<std::int64_t> predicted;
  std::vector<float> probabilities;  // [n, classes] row-major
  std::vector<std::string> files;    // what was written
};

// Requires a non-empty `data`. Writes into `out_dir` (created):
// metrics.json, predictions.csv, confusion_matrix.png, confusion_matrix_normalized.png,
// roc_curves.png, for data with votes votes.png (write_dataset_evaluation) and,
// given history_csv, training_curves.png.
// Throws std::runtime_error naming the checkpoint or the file that failed.
EvaluationResult evaluate_checkpoint(const std::string& checkpoint_path, const Dataset& data,
                                     const std::string& out_dir, const EvaluationOptions& options);

// An ensemble: the mean of the members' probabilities (members may differ in
// architecture and input size); one path is the same as evaluate_checkpoint.
// metrics.json names every member. Throws as evaluate_checkpoint, and
// std::runtime_error when the members' class names differ.
EvaluationResult evaluate_checkpoints(const std::vector<std::string>& checkpoint_paths, const Dataset& data,
                                      const std::string& out_dir, const EvaluationOptions& options);

// (read_ensemble_members, a shipped ensemble's members: fer/models/model_store.h.)

// The model part alone: the (ensemble-mean) probabilities [n, classes] row-major.
// Throws as evaluate_checkpoints.
// (fer::predict_checkpoints of fer/inference/inference.h, with the options'
// device, batch, TTA, precision and progress bars.)
EnsemblePrediction predict_checkpoints(const std::vector<std::string>& checkpoint_paths, const Dataset& data,
                                       const EvaluationOptions& options);

// The report part alone (no model): metrics, predictions and charts from
// probabilities; `extra` (an object) is merged into metrics.json, written once.
EvaluationResult write_evaluation(const std::vector<std::int64_t>& labels, const std::vector<float>& probabilities,
                                  const std::vector<std::string>& class_names, const std::string& out_dir,
                                  const EvaluationOptions& options, const std::vector<std::string>& checkpoint_paths,
                                  const nlohmann::json& extra = nlohmann::json::object());

// The report part for a dataset: `prediction` holds data.size() rows of the
// model's classes, scored on the data's by name (restrict_to_classes): a
// model of more classes (FER+'s contempt on FER-2013's labels) or of another
// order, metrics.json's "classes_by_name" listing what was left out; a model
// lacking one of the data's classes throws, naming it. For data with votes (FER+), accuracy and the
// other majority-rule figures count the faces with a majority label, and
// metrics.json's "votes" (fer::VoteMetrics, plus "without_majority") and the
// chart votes.png count every voted face.
EvaluationResult write_dataset_evaluation(const Dataset& data, const EnsemblePrediction& prediction,
                                          const std::string& out_dir, const EvaluationOptions& options,
                                          const std::vector<std::string>& checkpoint_paths);

// Full photos (fer-eval --detect-faces): each image was reduced to its largest
// face by load_image_folder_with_faces. The model is evaluated on the images
// with a face (metrics.json, charts as above); images without one are never
// dropped silently: metrics.json gains a "face_detection" object with the
// counts, accuracy over images with a face and over all images (an image
// without a face counts as an error), and no_face.txt lists them.
struct PhotoEvaluation {
  EvaluationResult on_faces;  // empty metrics when no image had a face
  std::int64_t images = 0, with_face = 0, without_face = 0;
  double accuracy_with_face = 0, accuracy_all_images = 0;
};
PhotoEvaluation evaluate_checkpoint_on_photos(const std::string& checkpoint_path, const Dataset& photos,
                                              const std::string& out_dir, const EvaluationOptions& options);

}  // namespace fer
