#include "fer/report/evaluate/evaluate.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "fer/common/io.h"
#include "fer/inference/inference.h"
#include "fer/models/checkpoint.h"
#include "fer/report/environment.h"
#include "fer/report/plot.h"
#include "fer/report/progress.h"

namespace fer {
namespace fs = std::filesystem;

namespace {
std::string predictions_csv(const std::vector<std::int64_t>& labels, const std::vector<std::int64_t>& predicted,
                            const std::vector<float>& probabilities, const std::vector<std::string>& names) {
  const std::size_t k = names.size();
  std::vector<std::string> header = {"index", "true", "predicted"};
  for (const auto& n : names) header.push_back("p_" + n);
  std::string text = csv_row(header) + "\n";
  char buf[32];
  for (std::size_t i = 0; i < labels.size(); ++i) {
    text += std::to_string(i) + "," + std::to_string(labels[i]) + "," + std::to_string(predicted[i]);
    for (std::size_t c = 0; c < k; ++c) {
      std::snprintf(buf, sizeof buf, ",%.6f", probabilities[i * k + c]);
      text += buf;
    }
    text += "\n";
  }
  return text;
}

// What every chart's title ends with: " (val, TTA flip, ensemble of 3, n=3589)".
std::string chart_tag(const EvaluationOptions& options, std::size_t members, std::size_t n) {
  return " (" + options.split + (options.tta == Tta::none ? "" : ", TTA " + tta_name(options.tta)) +
         (members > 1 ? ", ensemble of " + std::to_string(members) : "") + ", n=" + std::to_string(n) + ")";
}
}  // namespace

EvaluationResult write_evaluation(const std::vector<std::int64_t>& labels, const std::vector<float>& probabilities,
                                  const std::vector<std::string>& names, const std::string& out_dir,
                                  const EvaluationOptions& options, const std::vector<std::string>& checkpoint_paths,
                                  const nlohmann::json& extra) {
  const int k = static_cast<int>(names.size());
  EvaluationResult result;
  result.metrics = compute_metrics(labels, probabilities, k);
  result.predicted = argmax_rows(probabilities, k);
  result.probabilities = probabilities;
  fs::create_directories(out_dir);

  auto json = result.metrics.to_json(names);
  json["split"] = options.split;
  const Tta tta = options.tta;
  json["tta"] = tta_name(tta);
  json["precision"] = precision_name(options.precision);
  if (checkpoint_paths.size() == 1)
    json["checkpoint"] = checkpoint_paths.front();
  else
    json["ensemble"] = checkpoint_paths;
  json["data"] = options.data_source;
  if (extra.is_object()) json.update(extra);
  const auto metrics_path = (fs::path(out_dir) / "metrics.json").string();
  write_text_atomic(metrics_path, json.dump(2) + "\n");
  result.files.push_back(metrics_path);

  const auto predictions_path = (fs::path(out_dir) / "predictions.csv").string();
  write_text_atomic(predictions_path, predictions_csv(labels, result.predicted, probabilities, names));
  result.files.push_back(predictions_path);

  if (!options.charts) return result;
  if (!gnuplot_available()) {
    spdlog::warn("gnuplot (pngcairo) not found: charts skipped; install gnuplot-nox");
    return result;
  }
  const std::string tag = chart_tag(options, checkpoint_paths.size(), labels.size());
  const auto cm_path = (fs::path(out_dir) / "confusion_matrix.png").string();
  plot_confusion_matrix(result.metrics.confusion, names, false, "Confusion matrix" + tag, cm_path);
  const auto cmn_path = (fs::path(out_dir) / "confusion_matrix_normalized.png").string();
  plot_confusion_matrix(result.metrics.confusion, names, true, "Confusion matrix, row-normalised" + tag, cmn_path);
  result.files.push_back(cm_path);
  result.files.push_back(cmn_path);

  std::vector<RocCurve> curves;
  std::vector<std::string> roc_names;
  std::vector<double> aucs;
  for (int c = 0; c < k; ++c) {
    if (!result.metrics.per_class[c].auc) continue;
    std::vector<int> binary(labels.size());
    std::vector<double> scores(labels.size());
    for (std::size_t i = 0; i < labels.size(); ++i) {
      binary[i] = labels[i] == c;
      scores[i] = probabilities[i * k + c];
    }
    curves.push_back(roc_curve(binary, scores));
    roc_names.push_back(names[c]);
    aucs.push_back(*result.metrics.per_class[c].auc);
  }
  if (!curves.empty()) {
    const auto roc_path = (fs::path(out_dir) / "roc_curves.png").string();
    plot_roc_curves(curves, roc_names, aucs, "ROC curves, one-vs-rest" + tag, roc_path);
    result.files.push_back(roc_path);
  }
  if (!options.history_csv.empty()) {
    const auto curves_path = (fs::path(out_dir) / "training_curves.png").string();
    plot_training_curves(read_history_csv(options.history_csv), "Training curves", curves_path);
    result.files.push_back(curves_path);
  }
  return result;
}

EnsemblePrediction predict_checkpoints(const std::vector<std::string>& checkpoint_paths, const Dataset& data,
                                       const EvaluationOptions& options) {
  if (data.size() == 0) throw std::runtime_error("cannot evaluate on an empty split '" + options.split + "'");
  const auto device = resolve_device(options.device);
  PredictOptions predict;
  predict.batch_size = options.batch_size;
  predict.tta = options.tta;
  predict.precision = options.precision;
  check_precision_supported(predict.precision, device);
  if (options.progress) predict.progress = progress_bars();
  predict.progress_label = "eval " + options.split;
  return predict_checkpoints(checkpoint_paths, data, device, predict);
}

namespace {
// `prediction` over the data's classes by name (restrict_to_classes): a model of
// more classes (FER+'s contempt), or of another order, scored on the data's
// labels. `note` says which classes were left out, for metrics.json.
EnsemblePrediction over_data_classes(const EnsemblePrediction& prediction, const Dataset& data, const std::string& model,
                                     nlohmann::json& note) {
  if (prediction.class_names == data.class_names) return prediction;
  const auto missing = missing_classes(prediction, data.class_names);
  if (!missing.empty())
    throw std::runtime_error(model + " predicts the classes (" + class_name_list(prediction.class_names) + "); the data's are (" +
                             class_name_list(data.class_names) + "): it has no " + class_name_list(missing));
  std::vector<std::string> left_out;
  for (const auto& name : prediction.class_names)
    if (std::find(data.class_names.begin(), data.class_names.end(), name) == data.class_names.end()) left_out.push_back(name);
  note = {{"model_classes", prediction.class_names}, {"left_out", left_out}};
  spdlog::info("{}: scored on the data's {} classes by name{}", model, data.class_names.size(),
               left_out.empty() ? "" : "; left out, each face's probabilities renormalised over the rest: " + class_name_list(left_out));
  return restrict_to_classes(prediction, data.class_names);
}
}  // namespace

EvaluationResult write_dataset_evaluation(const Dataset& data, const EnsemblePrediction& model_prediction,
                                          const std::string& out_dir, const EvaluationOptions& options,
                                          const std::vector<std::string>& checkpoint_paths) {
  nlohmann::json extra = nlohmann::json::object(), by_name;
  const auto prediction = over_data_classes(model_prediction, data, checkpoint_paths.front(), by_name);
  if (!by_name.is_null()) extra["classes_by_name"] = by_name;
  if (prediction.probabilities.size() != data.size() * data.class_names.size())
    throw std::invalid_argument("write_dataset_evaluation: " + std::to_string(prediction.probabilities.size()) +
                                " probabilities for " + std::to_string(data.size()) + " faces");
  if (!data.has_votes())
    return write_evaluation(data.labels, prediction.probabilities, prediction.class_names, out_dir, options,
                            checkpoint_paths, extra);
  // Agreement with the annotators over every voted face; the majority-rule
  // figures (accuracy, confusion, ...) over the faces with a majority label.
  const auto votes = compute_vote_metrics(data.votes, prediction.probabilities, data.num_classes());
  const std::size_t k = data.class_names.size();
  std::vector<std::int64_t> labels;
  std::vector<float> probabilities;
  for (std::size_t i = 0; i < data.size(); ++i) {
    if (data.majority[i] < 0) continue;
    labels.push_back(data.labels[i]);
    probabilities.insert(probabilities.end(), prediction.probabilities.begin() + i * k,
                         prediction.probabilities.begin() + (i + 1) * k);
  }
  auto votes_json = votes.to_json();
  votes_json["without_majority"] = data.size() - labels.size();
  extra["votes"] = votes_json;
  auto result = write_evaluation(labels, probabilities, prediction.class_names, out_dir, options, checkpoint_paths, extra);
  if (options.charts && gnuplot_available()) {
    char figures[96];
    std::snprintf(figures, sizeof figures, ": cross-entropy %.3f, plurality accuracy %.1f%%", votes.cross_entropy,
                  100 * votes.plurality_accuracy);
    const auto path = (fs::path(out_dir) / "votes.png").string();
    plot_vote_agreement(votes, data.class_names,
                        "Agreement with the annotators" + chart_tag(options, checkpoint_paths.size(), data.size()) + figures,
                        path);
    result.files.push_back(path);
  }
  return result;
}

EvaluationResult evaluate_checkpoints(const std::vector<std::string>& checkpoint_paths, const Dataset& data,
                                      const std::string& out_dir, const EvaluationOptions& options) {
  return write_dataset_evaluation(data, predict_checkpoints(checkpoint_paths, data, options), out_dir, options,
                                  checkpoint_paths);
}

EvaluationResult evaluate_checkpoint(const std::string& checkpoint_path, const Dataset& data,
                                     const std::string& out_dir, const EvaluationOptions& options) {
  return evaluate_checkpoints({checkpoint_path}, data, out_dir, options);
}

PhotoEvaluation evaluate_checkpoint_on_photos(const std::string& checkpoint_path, const Dataset& photos,
                                              const std::string& out_dir, const EvaluationOptions& options) {
  PhotoEvaluation r;
  r.with_face = static_cast<std::int64_t>(photos.size());
  r.without_face = static_cast<std::int64_t>(photos.no_face.size());
  r.images = r.with_face + r.without_face;
  if (r.images == 0) throw std::runtime_error("evaluate_checkpoint_on_photos: no images");
  fs::create_directories(out_dir);
  nlohmann::json detection = {{"images", r.images}, {"with_face", r.with_face}, {"without_face", r.without_face},
                              {"no_face_list", "no_face.txt"}};
  const auto metrics_path = (fs::path(out_dir) / "metrics.json").string();
  if (r.with_face > 0) {
    nlohmann::json extra = nlohmann::json::object(), by_name;
    const auto prediction = over_data_classes(predict_checkpoints({checkpoint_path}, photos, options), photos,
                                              checkpoint_path, by_name);
    if (!by_name.is_null()) extra["classes_by_name"] = by_name;
    const auto k = static_cast<int>(prediction.class_names.size());
    r.accuracy_with_face = compute_metrics(photos.labels, prediction.probabilities, k).accuracy;
    r.accuracy_all_images = r.accuracy_with_face * r.with_face / r.images;
    detection["accuracy_with_face"] = r.accuracy_with_face;
    detection["accuracy_all_images"] = r.accuracy_all_images;
    extra["face_detection"] = detection;
    r.on_faces = write_evaluation(photos.labels, prediction.probabilities, prediction.class_names, out_dir,
                                  options, {checkpoint_path}, extra);
  } else {
    detection["accuracy_with_face"] = 0.0;
    detection["accuracy_all_images"] = 0.0;
    const nlohmann::json json = {{"split", options.split}, {"checkpoint", checkpoint_path},
                                 {"data", options.data_source}, {"face_detection", detection}};
    write_text_atomic(metrics_path, json.dump(2) + "\n");
    r.on_faces.files.push_back(metrics_path);
  }
  const auto no_face_path = (fs::path(out_dir) / "no_face.txt").string();
  std::string list;
  for (const auto& path : photos.no_face) list += path + "\n";
  write_text_atomic(no_face_path, list);
  r.on_faces.files.push_back(no_face_path);
  return r;
}

}  // namespace fer
