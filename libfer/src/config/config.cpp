#include "fer/config/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include "fer/common/emotions.h"

namespace fer {
namespace {

// A value rule: returns an empty string when `v` is allowed, else the rule text.
template <typename T>
struct Rule {
  std::string text;
  std::function<bool(const T&)> ok;
};

template <typename T>
Rule<T> any() {
  return {"", [](const T&) { return true; }};
}
template <typename T>
Rule<T> at_least(T lo) {
  return {">= " + YAML::Dump(YAML::Node(lo)), [lo](const T& v) { return v >= lo; }};
}
template <typename T>
Rule<T> positive() {
  return {"> 0", [](const T& v) { return v > T(0); }};
}
Rule<double> in_range(double lo, double hi) {
  std::ostringstream s;
  s << "in [" << lo << ", " << hi << "]";
  return {s.str(), [lo, hi](const double& v) { return v >= lo && v <= hi; }};
}
Rule<double> open_unit() {
  return {"in (0, 1)", [](const double& v) { return v > 0.0 && v < 1.0; }};
}
Rule<std::string> one_of(std::vector<std::string> options) {
  std::string text = "one of:";
  for (const auto& o : options) text += " " + o;
  return {text, [options](const std::string& v) {
            for (const auto& o : options)
              if (o == v) return true;
            return false;
          }};
}
Rule<std::string> device_rule() {
  return {"auto, cpu, cuda or cuda:N", [](const std::string& v) {
            if (v == "auto" || v == "cpu" || v == "cuda") return true;
            if (v.rfind("cuda:", 0) != 0 || v.size() == 5) return false;
            return v.find_first_not_of("0123456789", 5) == std::string::npos;
          }};
}
Rule<std::vector<int>> filters_rule() {
  return {"1 to 4 positive counts", [](const std::vector<int>& v) {
            if (v.empty() || v.size() > 4) return false;
            for (int f : v)
              if (f <= 0) return false;
            return true;
          }};
}

Rule<int> image_side_rule() {
  return {"in [16, 512]", [](const int& v) { return v >= 16 && v <= 512; }};
}
Rule<int> yunet_size_rule() {
  return {"320 or 640", [](const int& v) { return v == 320 || v == 640; }};
}
Rule<double> ema_rule() {
  return {"0 or in [0.5, 1)", [](const double& v) { return v == 0.0 || (v >= 0.5 && v < 1.0); }};
}

Rule<double> greater_than(double lo) {
  std::ostringstream s;
  s << "> " << lo;
  return {s.str(), [lo](const double& v) { return v > lo; }};
}
Rule<double> unit_upper(double lo_exclusive) {
  std::ostringstream s;
  s << "in (" << lo_exclusive << ", 1]";
  return {s.str(), [lo_exclusive](const double& v) { return v > lo_exclusive && v <= 1.0; }};
}
Rule<std::vector<std::string>> class_names_rule() {
  return {"class names of the model (checked when it is loaded)", [](const std::vector<std::string>& v) {
            for (const auto& e : v)
              if (e.empty()) return false;
            return true;
          }};
}

template <typename T>
std::string type_name() {
  if constexpr (std::is_same_v<T, bool>) return "bool";
  else if constexpr (std::is_same_v<T, int>) return "int";
  else if constexpr (std::is_same_v<T, double>) return "float";
  else if constexpr (std::is_same_v<T, std::string>) return "string";
  else if constexpr (std::is_same_v<T, std::vector<std::string>>) return "string list";
  else return "int list";
}

// The shortest decimal text that reads back as the same double (0.1, not
// yaml-cpp's 17-digit 0.10000000000000001), so config.yaml and tables show
// what a person wrote.
std::string shortest_decimal(double value) {
  char text[40];
  for (int digits = 6; digits <= 17; ++digits) {
    std::snprintf(text, sizeof text, "%.*g", digits, value);
    if (std::strtod(text, nullptr) == value) break;
  }
  return text;
}

template <typename T>
YAML::Node to_node(const T& v) {
  if constexpr (std::is_same_v<T, double>) return YAML::Node(shortest_decimal(v));
  else return YAML::Node(v);
}

template <typename T>
std::string show(const T& v) {
  if constexpr (std::is_same_v<T, std::vector<int>>) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
    return s + "]";
  } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + v[i];
    return s + "]";
  } else if constexpr (std::is_same_v<T, std::string>) {
    return v.empty() ? "\"\"" : v;
  } else {
    return YAML::Dump(to_node(v));
  }
}

struct KeyDef {
  ConfigKeyInfo info;
  // Parses `node` into the config; throws ConfigError with `where` prefixed.
  std::function<void(Config&, const YAML::Node&, const std::string& where)> set;
  std::function<YAML::Node(const Config&)> get;
};

template <typename T, typename Access>
KeyDef make_key(const char* key, Access access, Rule<T> rule, const char* help) {
  KeyDef def;
  Config defaults;
  def.info = ConfigKeyInfo{key, type_name<T>(), show<T>(access(defaults)), rule.text, help};
  std::string key_name = key;
  def.set = [access, rule, key_name](Config& c, const YAML::Node& node, const std::string& where) {
    T value;
    try {
      constexpr bool is_list = std::is_same_v<T, std::vector<int>> || std::is_same_v<T, std::vector<std::string>>;
      if (is_list ? !node.IsSequence() : !node.IsScalar()) throw YAML::Exception(node.Mark(), "");
      value = node.as<T>();
    } catch (const YAML::Exception&) {
      throw ConfigError(where + ": key '" + key_name + "' expects " + type_name<T>() + ", got '" +
                        YAML::Dump(node) + "'");
    }
    if (!rule.ok(value))
      throw ConfigError(where + ": key '" + key_name + "' = " + show(value) + " is invalid: must be " +
                        rule.text);
    access(c) = value;
  };
  def.get = [access](const Config& c) { return to_node(access(const_cast<Config&>(c))); };
  return def;
}

// FER_KEY(train.lr, ...) gives the key text "train.lr" and the accessor c.train.lr
// from one spelling, so the table cannot drift from the struct.
#define FER_KEY(path, type, rule, help) \
  make_key<type>(#path, [](Config& c) -> type& { return c.path; }, rule, help)

const std::vector<KeyDef>& key_table() {
  static const std::vector<KeyDef> table = {
      FER_KEY(name, std::string, any<std::string>(),
              "Experiment name; the run directory is runs/<name>/ (fer-train). Defaults to the config file's stem."),
      FER_KEY(data.path, std::string, any<std::string>(),
              "FER-2013 CSV (.csv or .csv.gz) or image-folder root. Empty: --data, then $FER2013_CSV, then data/fer2013.csv."),
      FER_KEY(data.split, std::string, one_of({"canonical", "stratified"}),
              "canonical: Training/PublicTest/PrivateTest (or train/val/test folders). stratified: all rows pooled and split per class."),
      FER_KEY(data.split_seed, int, any<int>(), "Seed of the stratified split."),
      FER_KEY(data.val_fraction, double, open_unit(), "Validation share of the stratified split."),
      FER_KEY(data.test_fraction, double, open_unit(), "Test share of the stratified split."),
      FER_KEY(data.max_train, int, at_least(0), "Keep only the first N training images (0 = all); for smoke runs."),
      FER_KEY(data.max_val, int, at_least(0), "Keep only the first N validation images (0 = all)."),
      FER_KEY(data.classes, std::vector<std::string>, any<std::vector<std::string>>(),
              "Image folders: the class list in label order, class folders matched to it case-insensitively. Empty: FER-2013's seven when every folder is one of them, else the folders' names sorted."),
      FER_KEY(data.votes, std::string, any<std::string>(),
              "FER+'s fer2013new.csv: annotator votes paired row by row with data.path's Kaggle fer2013.csv. (A folder of FER2013Train/ FER2013Valid/ with label.csv is read as FER+ without it.)"),
      FER_KEY(data.ferplus_unknown, bool, any<bool>(), "FER+: keep 'unknown' as a class of its own (after contempt)."),
      FER_KEY(data.normalize, std::string, one_of({"none", "equalize"}),
              "Photometric normalisation of every model input, stored in the checkpoint and applied by training (after augmentation), evaluation, explanation, export and live: none, or equalize (each face's histogram equalised, as OpenCV's equalizeHist)."),
      FER_KEY(data.image_size, int, image_side_rule(),
              "Side of the square grayscale faces a model takes: every image is resized to it at load (area interpolation when shrinking), and every path that feeds the model (evaluation, explanation, export, live) gives it faces of this size; stored in the checkpoint. FER-2013's and FER+'s faces are 48."),
      FER_KEY(data.ferplus_as_fer2013, bool, any<bool>(),
              "FER+: FER-2013's seven classes in its order (contempt's votes dropped), for numbers side by side with FER-2013 models."),
      FER_KEY(model.architecture, std::string, any<std::string>(),
              "Architecture name from the model registry (paper_cnn, vgg_fer)."),
      FER_KEY(model.weights, std::string, any<std::string>(),
              "Start from these weights (detectron2's MODEL.WEIGHTS): a checkpoint or shipped model name with the same architecture, sizes and classes; its input normalisation may differ (fine-tuning to data.normalize). Empty: random initialisation. --resume takes last.pt's weights instead."),
      FER_KEY(model.filters, std::vector<int>, filters_rule(),
              "Filters of each conv block (two 3x3 convs, pool, dropout per block)."),
      FER_KEY(model.dense_units, int, positive<int>(), "Units of the hidden dense layer."),
      FER_KEY(model.conv_dropout, double, in_range(0, 0.95), "Dropout after each conv block."),
      FER_KEY(model.dense_dropout, double, in_range(0, 0.95), "Dropout after the hidden dense layer."),
      FER_KEY(augment.enabled, bool, any<bool>(), "Master switch for training augmentation."),
      FER_KEY(augment.flip_prob, double, in_range(0, 1), "Probability of a horizontal flip."),
      FER_KEY(augment.rotation_deg, double, in_range(0, 180), "Rotation drawn uniformly in [-r, r] degrees (0 = off)."),
      FER_KEY(augment.zoom, double, in_range(0, 0.9), "Zoom factor drawn uniformly in [1-z, 1+z] (0 = off)."),
      FER_KEY(augment.brightness, double, in_range(0, 1), "Brightness factor drawn uniformly in [1-b, 1+b] (0 = off)."),
      FER_KEY(augment.contrast, double, in_range(0, 1), "Contrast factor drawn uniformly in [1-c, 1+c] around the image mean (0 = off)."),
      FER_KEY(augment.gamma, double, in_range(0, 4),
              "Gamma correction x^gamma with gamma drawn log-uniformly in [1/(1+g), 1+g]: dim (gamma > 1) and washed-out (< 1) light (0 = off)."),
      FER_KEY(augment.low_light, double, in_range(0, 1),
              "Share of faces made as a dim camera delivers them: darkened x1/25 to x1/3 (log-uniform), sensor noise of up to 2 grey levels, rounded to 8-bit levels; with data.normalize: equalize the model learns the coarse, noisy faces that equalising a dark crop gives (0 = off)."),
      FER_KEY(augment.crop_size, int, image_side_rule(),
              "Random crops of this size in training, centre crop at evaluation; the model's input size follows (data.image_size = no crop; at most data.image_size)."),
      FER_KEY(augment.crop_padding, int, at_least(0),
              "Pad the image by this many pixels (edge replication) before the random crop: random shifts, also at crop_size 48."),
      FER_KEY(augment.erase_prob, double, in_range(0, 1),
              "Random erasing: probability of blanking one box of 2-33% of the image, aspect 0.3-3.3 (torchvision's defaults)."),
      FER_KEY(augment.mixup_alpha, double, at_least(0.0), "Mixup: pairs of images and labels mixed with a Beta(a, a) weight (0 = off)."),
      FER_KEY(augment.cutmix_alpha, double, at_least(0.0),
              "CutMix: a box from another image, its area from Beta(a, a), labels mixed by area (0 = off). With mixup also on, each batch uses one of the two at random."),
      FER_KEY(train.epochs, int, positive<int>(), "Maximum number of epochs."),
      FER_KEY(train.batch_size, int, positive<int>(), "Training batch size."),
      FER_KEY(train.lr, double, positive<double>(), "Learning rate (the peak rate of cosine and step schedules)."),
      FER_KEY(train.weight_decay, double, at_least(0.0), "Weight decay: L2 added to the gradient (adam, sgd) or decoupled (adamw)."),
      FER_KEY(train.optimizer, std::string, one_of({"adam", "adamw", "sgd"}), "adam (the paper's), adamw, or sgd with momentum."),
      FER_KEY(train.momentum, double, in_range(0, 0.999), "SGD momentum."),
      FER_KEY(train.nesterov, bool, any<bool>(), "SGD with Nesterov momentum."),
      FER_KEY(train.schedule, std::string, one_of({"plateau", "cosine", "step"}),
              "plateau: ReduceLROnPlateau on validation accuracy (the paper's); cosine: cosine annealing to lr_min over the epochs; step: lr x step_gamma every step_size epochs."),
      FER_KEY(train.warmup_epochs, int, at_least(0), "cosine and step: the rate rises linearly, lr x (e+1)/(warmup+1) in epoch e, before the schedule starts."),
      FER_KEY(train.step_size, int, positive<int>(), "step: epochs between two decays."),
      FER_KEY(train.step_gamma, double, open_unit(), "step: decay factor."),
      FER_KEY(train.label_smoothing, double, in_range(0, 0.5), "Label smoothing of the cross-entropy (PyTorch's definition)."),
      FER_KEY(train.target, std::string, one_of({"majority", "probability", "crossentropy", "multi_target"}),
              "Data with votes (FER+), Barsoum et al.'s modes: majority (the majority-rule label; faces without one left out), probability (the vote distribution as a soft target), crossentropy (a label drawn from the votes each epoch), multi_target (any class with votes counts as right). Single-label data: majority only."),
      FER_KEY(train.ema_decay, double, ema_rule(),
              "Exponential moving average of the weights and BatchNorm statistics, updated every step with the decay warmed up as min(decay, (1+t)/(10+t)) (0 = off); when on, the average is validated and saved as best.pt."),
      FER_KEY(train.precision, std::string, one_of({"fp32", "bf16", "fp16"}),
              "fp32; bf16 autocast (CPU with AVX512-BF16 or AMX, or CUDA); fp16 autocast with a gradient scaler (CUDA only)."),
      FER_KEY(train.channels_last, bool, any<bool>(), "Channels-last memory format for activations and conv weights."),
      FER_KEY(train.tensorboard, bool, any<bool>(),
              "TensorBoard event file <run>/tb/events.out.tfevents.<time>.<host>: losses, accuracies, lr and images/s per epoch, the config, the confusion matrices (rank 0)."),
      FER_KEY(train.deterministic, bool, any<bool>(),
              "CUDA: cuDNN uses deterministic algorithms (benchmark mode off), so a seed gives the same run; off: faster, not reproducible."),
      FER_KEY(train.class_weighted, bool, any<bool>(),
              "Weight the training loss by inverse class frequency (n / (k * n_c))."),
      FER_KEY(train.lr_factor, double, open_unit(), "ReduceLROnPlateau factor (on validation accuracy)."),
      FER_KEY(train.lr_patience, int, at_least(0), "ReduceLROnPlateau patience: the rate drops after more than this many epochs without a gain (PyTorch's rule)."),
      FER_KEY(train.lr_min, double, at_least(0.0), "Lower bound of the plateau schedule's rate and the final rate of the cosine schedule."),
      FER_KEY(train.lr_min_delta, double, at_least(0.0),
              "Validation-accuracy gain that counts as an improvement for ReduceLROnPlateau."),
      FER_KEY(train.early_stopping_patience, int, at_least(0),
              "Stop after this many epochs without an improvement of early_stopping_monitor; the best weights are restored (0 = never stop early)."),
      FER_KEY(train.early_stopping_monitor, std::string, one_of({"val_loss", "val_accuracy"}),
              "What early stopping and best.pt watch: the lowest validation loss or the highest validation accuracy."),
      FER_KEY(train.device, std::string, device_rule(), "auto (CUDA when available), cpu, cuda or cuda:N."),
      FER_KEY(train.threads, int, at_least(0), "CPU threads for LibTorch (0 = OMP_NUM_THREADS when set, else all cores)."),
      FER_KEY(train.seed, int, any<int>(), "Seed of initialisation, shuffling, dropout and augmentation."),
      FER_KEY(train.eval_batch_size, int, positive<int>(), "Batch size for validation and evaluation."),
      FER_KEY(train.sync_batchnorm, bool, any<bool>(),
              "Data-parallel runs: BatchNorm layers normalise with the mean and variance of the global batch (all ranks), PyTorch's SyncBatchNorm; off: each rank's own batch."),
      FER_KEY(train.distributed_timeout_s, int, positive<int>(),
              "Data-parallel runs: seconds the rendezvous and each collective may take; a rank that died or hangs makes the others fail within it, naming it."),
      FER_KEY(train.distributed_bucket_mb, double, positive<double>(),
              "Data-parallel runs: gradients are averaged in all-reduce buckets of about this many MiB (PyTorch DDP's default: 25)."),
      FER_KEY(train.background_k, int, at_least(0),
              "At the end of training, store this many k-means centroids of the training faces (each the mean of at least 20) in best.pt: fer-explain's DeepSHAP background with no dataset at hand (0: none)."),
      FER_KEY(distill.teacher, std::string, any<std::string>(),
              "Knowledge distillation: the teacher, a checkpoint (.pt) or a shipped model's name (one network, not an ensemble); it sees each augmented batch centre-cropped to its input size. Empty: none."),
      FER_KEY(distill.alpha, double, in_range(0, 1),
              "Distillation: the loss is (1 - alpha) x the hard-label loss + alpha x T^2 x KL(teacher || student) at temperature T (Hinton et al. 2015)."),
      FER_KEY(distill.temperature, double, positive<double>(), "Distillation: the temperature T of both softmaxes."),
      FER_KEY(eval.tta, std::string, one_of({"none", "flip", "tencrop", "false", "true"}),
              "Test-time augmentation: none, flip (image and mirror) or tencrop (4 corner and centre crops of the model's input size, each mirrored); false/true mean none/flip."),
      FER_KEY(eval.precision, std::string, one_of({"fp32", "bf16", "fp16"}),
              "Inference precision of fer-eval, fer-live and LIME (autocast; DeepSHAP always runs in fp32)."),
      FER_KEY(faces.cascade, std::string, any<std::string>(),
              "Haar cascade XML. Empty: haarcascade_frontalface_default.xml from $FER_HAAR_DIR or OpenCV's data folders (Debian: opencv-data)."),
      FER_KEY(faces.scale_factor, double, greater_than(1.0), "Haar detectMultiScale scale step between pyramid levels."),
      FER_KEY(faces.min_neighbors, int, at_least(0), "Haar detectMultiScale: overlapping hits a face needs (higher: fewer false faces)."),
      FER_KEY(faces.min_size, int, positive<int>(), "Smallest face searched, in pixels of the full image."),
      FER_KEY(faces.framing, std::string, one_of({"fer2013", "box"}),
              "fer2013: a square crop framed as FER-2013 frames its faces (measured: docs/live.md, \"Framing\"), aligned by landmarks with faces.align; box: the detected box grown by faces.margin and stretched to 48x48 (libfer's crop before 2026-12)."),
      FER_KEY(faces.margin, double, in_range(0, 1), "faces.framing box: the crop grows by this share of the detected box on each side before resizing to 48x48."),
      FER_KEY(faces.detect_scale, double, unit_upper(0.0), "Full-image scans run on the image resized by this factor (<1: faster, misses small faces)."),
      FER_KEY(faces.detector, std::string, one_of({"haar", "yunet"}),
              "Face detector: haar (OpenCV's Haar cascade, the paper's) or yunet (YuNet-s CNN through OpenCV DNN: profile, dim and small faces; five landmarks)."),
      FER_KEY(faces.yunet_model, std::string, any<std::string>(),
              "YuNet ONNX file. Empty: yunet_s_<size>_<size>.onnx from $FER_YUNET_DIR, then share/libfer/yunet beside the program (build tree and install)."),
      FER_KEY(faces.yunet_input_size, int, yunet_size_rule(), "YuNet's fixed input side: frames are letterboxed into it (640: smaller faces, slower)."),
      FER_KEY(faces.score_threshold, double, in_range(0, 1), "YuNet: a face needs score sqrt(cls * obj) at least this (0.6: the lowest with no false face on photos built from Training faces; OpenCV's FaceDetectorYN uses 0.9)."),
      FER_KEY(faces.nms_threshold, double, in_range(0, 1), "YuNet: a box overlapping a higher-scoring one by more than this IoU is dropped."),
      FER_KEY(faces.align, bool, any<bool>(), "With landmarks (faces.detector=yunet): fer2013 framing turns the face upright (its eyes-to-mouth axis as FER-2013's; faces.align_to says what sets scale and centre); box framing rotates the eyes level. Haar gives no landmarks: its crops stay square and unrotated."),
      FER_KEY(faces.align_to, std::string, one_of({"box", "landmarks"}),
              "fer2013 framing with faces.align and landmarks: what sets the crop's scale and centre. box: the detector's box, framed as FER-2013's faces are, turned upright by the eyes-to-mouth axis (an open mouth or a turned head leaves it alone); landmarks: the eyes' and mouth corners' midpoints put on FER-2013's mean positions (template alignment; open mouths zoom it out: docs/live.md)."),
      FER_KEY(explain.cam_layer, std::string, any<std::string>(),
              "fer-explain's gradcam, gradcam++ and hirescam: the layer whose feature maps are weighted (a layer name such as block3_conv_2; an unknown name's error lists the model's). Empty: the last convolution."),
      FER_KEY(explain.ig_steps, int, positive<int>(), "Integrated gradients: model gradients along the path from the baseline to the face. The completeness error falls about as 1/steps on ReLU networks (measured: docs/explanations.md); fer-explain warns above 5%."),
      FER_KEY(explain.ig_rule, std::string, one_of({"gauss_legendre", "trapezoid"}), "Integrated gradients: the quadrature rule (Captum's default is gausslegendre)."),
      FER_KEY(explain.ig_baseline, std::string, one_of({"black", "mean", "blur"}),
              "Integrated gradients' baseline: black (zeros), mean (the background's mean face, the faithfulness curves' baseline) or blur (the face under a Gaussian blur of sigma 4 pixels)."),
      FER_KEY(explain.smoothgrad_samples, int, positive<int>(), "SmoothGrad: noisy copies of the face whose maps are averaged."),
      FER_KEY(explain.smoothgrad_sigma, double, at_least(0.0), "SmoothGrad: the noise's standard deviation as a share of the face's range (max - min); Smilkov et al. suggest 0.1-0.2."),
      FER_KEY(explain.smoothgrad_base, std::string, one_of({"saliency", "input_x_gradient", "integrated_gradients"}),
              "SmoothGrad: the gradient method whose maps are averaged over the noisy copies."),
      FER_KEY(explain.occlusion_patch, int, positive<int>(), "Occlusion: side of the square patch, in pixels of the model's input."),
      FER_KEY(explain.occlusion_stride, int, positive<int>(), "Occlusion: pixels between neighbouring patch positions."),
      FER_KEY(explain.occlusion_fill, double, in_range(0, 1), "Occlusion: the value the patch fills with (inputs are in [0,1])."),
      FER_KEY(live.full_scan_interval, int, positive<int>(),
              "fer-live scans the whole frame every N frames; in between each track is re-detected near its last box (1: full scan on every frame). Haar only: YuNet scans every frame, which costs it no more."),
      FER_KEY(live.smoothing_frames, int, positive<int>(), "Rolling mean of each track's probabilities over its last N frames."),
      FER_KEY(live.track_iou, double, open_unit(), "A detection continues a track when their boxes overlap at least this much (IoU)."),
      FER_KEY(live.max_missed_frames, int, at_least(0), "A track ends after this many consecutive frames without its face."),
      FER_KEY(live.trend_window_s, double, at_least(0.0),
              "Time window of the emotion timeline charts, in seconds. 0: adaptive (0.5 s for a short clip, wider as the session grows: 1, 5, 10, 30, 60, 300 s, ...)."),
      FER_KEY(live.trend_max_windows, int, at_least(10),
              "A session that outgrows this many timeline windows merges neighbouring ones (the window widens), so trend memory stays bounded."),
      FER_KEY(live.frames_rotate_s, double, at_least(0.0),
              "Start a new frames.<N>.csv every this many seconds of session time (86400: daily); 0: one frames.csv."),
      FER_KEY(live.frames_keep, int, at_least(0), "With frames_rotate_s: keep only the newest N frames files, deleting older ones (0: keep all)."),
      FER_KEY(live.sequence_fps, double, positive<double>(), "Frame rate assumed for image-folder sources (timestamps = index / fps)."),
      FER_KEY(live.video_codec, std::string, one_of({"mp4v", "avc1"}),
              "Codec of annotated.mp4: mp4v (MPEG-4 part 2, ~1 ms/frame at 640x360) or avc1 (H.264, smaller, plays in browsers; its encoder threads cost fer-live ~30% of its speed on 2 cores)."),
      FER_KEY(live.device, std::string, device_rule(), "Device of live classification: auto, cpu, cuda or cuda:N."),
      FER_KEY(live.threads, int, at_least(0), "CPU threads for LibTorch and OpenCV in fer-live (0 = OMP_NUM_THREADS when set, else all cores)."),
      FER_KEY(alert.enabled, bool, any<bool>(), "Wellbeing monitor on or off."),
      FER_KEY(alert.negative_emotions, std::vector<std::string>, class_names_rule(), "Classes that count as negative; each must be a class of the model (an error names the one it lacks)."),
      FER_KEY(alert.window_s, double, positive<double>(), "Sliding window over which a track's negative share is measured, in seconds."),
      FER_KEY(alert.threshold, double, in_range(0, 1), "Alert when the negative share of the window stays above this value..."),
      FER_KEY(alert.min_duration_s, double, at_least(0.0), "...for at least this many seconds."),
      FER_KEY(alert.cooldown_s, double, at_least(0.0), "No new alert for the same track within this many seconds of the last."),
      FER_KEY(alert.command, std::vector<std::string>, any<std::vector<std::string>>(),
              "Program and arguments run for each alert with the alert JSON on stdin (no shell; empty: none)."),
  };
  return table;
}
#undef FER_KEY

const KeyDef* find_key(const std::string& key) {
  for (const auto& def : key_table())
    if (def.info.key == key) return &def;
  return nullptr;
}

bool is_section(const std::string& prefix) {
  for (const auto& def : key_table())
    if (def.info.key.rfind(prefix + ".", 0) == 0) return true;
  return false;
}

std::string known_keys_under(const std::string& prefix) {
  std::vector<std::string> names;
  for (const auto& def : key_table()) {
    std::string k = def.info.key;
    if (!prefix.empty()) {
      if (k.rfind(prefix + ".", 0) != 0) continue;
      k = k.substr(prefix.size() + 1);
    }
    k = k.substr(0, k.find('.'));
    if (std::find(names.begin(), names.end(), k) == names.end()) names.push_back(k);
  }
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

std::string location(const std::string& origin, const YAML::Mark& mark) {
  if (mark.is_null()) return origin;
  return origin + ":" + std::to_string(mark.line + 1) + ":" + std::to_string(mark.column + 1);
}

void apply_node(Config& config, const YAML::Node& node, const std::string& prefix, const std::string& origin) {
  if (!node.IsMap())
    throw ConfigError(location(origin, node.Mark()) + ": expected a mapping" +
                      (prefix.empty() ? "" : " under '" + prefix + "'"));
  for (const auto& item : node) {
    const std::string name = item.first.as<std::string>();
    const std::string key = prefix.empty() ? name : prefix + "." + name;
    const std::string where = location(origin, item.first.Mark());
    if (const KeyDef* def = find_key(key)) {
      def->set(config, item.second, where);
    } else if (is_section(key)) {
      apply_node(config, item.second, key, origin);
    } else {
      throw ConfigError(where + ": unknown config key '" + key + "' (known " +
                        (prefix.empty() ? std::string("top-level keys") : "keys under '" + prefix + "'") + ": " +
                        known_keys_under(prefix) + ")");
    }
  }
}

void check_consistency(const Config& c, const std::string& origin) {
  if (c.data.val_fraction + c.data.test_fraction >= 0.9)
    throw ConfigError(origin + ": data.val_fraction + data.test_fraction must be < 0.9");
}

}  // namespace

std::vector<ConfigKeyInfo> config_keys() {
  std::vector<ConfigKeyInfo> out;
  for (const auto& def : key_table()) out.push_back(def.info);
  return out;
}

void apply_yaml(Config& config, const std::string& yaml_text, const std::string& origin) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::ParserException& e) {
    throw ConfigError(location(origin, e.mark) + ": invalid YAML: " + e.msg);
  }
  if (root.IsNull()) return;  // an empty file keeps every default
  apply_node(config, root, "", origin);
  check_consistency(config, origin);
}

Config load_config(const std::string& yaml_path) {
  std::ifstream in(yaml_path);
  if (!in) throw std::runtime_error("cannot read config file '" + yaml_path + "'");
  std::stringstream text;
  text << in.rdbuf();
  Config config;
  config.name = std::filesystem::path(yaml_path).stem().string();
  apply_yaml(config, text.str(), yaml_path);
  return config;
}

void apply_override(Config& config, const std::string& assignment) {
  const auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0)
    throw ConfigError("override '" + assignment + "' must have the form key=value");
  const std::string key = assignment.substr(0, eq);
  const KeyDef* def = find_key(key);
  if (!def) throw ConfigError("--set " + assignment + ": unknown config key '" + key + "'");
  YAML::Node value;
  try {
    value = YAML::Load(assignment.substr(eq + 1));
  } catch (const YAML::ParserException& e) {
    throw ConfigError("--set " + assignment + ": invalid value: " + e.msg);
  }
  def->set(config, value, "--set " + assignment);
  check_consistency(config, "--set " + assignment);
}

std::string to_yaml(const Config& config) {
  YAML::Node root;
  for (const auto& def : key_table()) {
    const auto& key = def.info.key;
    const auto dot = key.find('.');
    if (dot == std::string::npos)
      root[key] = def.get(config);
    else
      root[key.substr(0, dot)][key.substr(dot + 1)] = def.get(config);
  }
  YAML::Emitter out;
  out.SetSeqFormat(YAML::Flow);
  out << root;
  return std::string(out.c_str()) + "\n";
}

namespace {
std::string flow_text(const YAML::Node& node) {
  YAML::Emitter out;
  out.SetSeqFormat(YAML::Flow);
  out << node;
  return std::string(out.c_str());
}
}  // namespace

std::string config_value(const Config& config, const std::string& key) {
  const KeyDef* def = find_key(key);
  if (!def) throw ConfigError("unknown config key '" + key + "'");
  return flow_text(def->get(config));
}

std::vector<std::string> config_differences(const Config& a, const Config& b) {
  std::vector<std::string> differences;
  for (const auto& def : key_table()) {
    const std::string before = flow_text(def.get(a)), after = flow_text(def.get(b));
    if (before != after) differences.push_back(def.info.key + ": " + before + " -> " + after);
  }
  return differences;
}

std::string config_keys_markdown() {
  std::string out = "| key | type | default | allowed | meaning |\n|---|---|---|---|---|\n";
  for (const auto& k : config_keys())
    out += "| `" + k.key + "` | " + k.type + " | `" + k.default_value + "` | " + (k.rule.empty() ? "any" : k.rule) +
           " | " + k.help + " |\n";
  return out;
}

}  // namespace fer
