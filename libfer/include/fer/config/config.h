// Experiment configuration: every key, its default and its meaning, declared in
// one table (config.cpp). YAML files and --set overrides only change values;
// unknown keys and out-of-range values are errors naming the key.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

namespace fer {

// Thrown for any configuration problem; the message names the key and, when
// it comes from a file, the file, line and column.
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct DataConfig {
  std::string path;                 // FER-2013 CSV (.csv/.csv.gz) or image-folder root
  std::string split = "canonical";  // canonical | stratified
  int split_seed = 42;
  double val_fraction = 0.1;        // stratified split only
  double test_fraction = 0.1;       // stratified split only
  int max_train = 0;                // 0 = all rows; >0 keeps the first N (smoke runs)
  int max_val = 0;
  std::vector<std::string> classes; // image folders: the class list, in label order (empty: from the folders)
  std::string votes;                // FER+'s fer2013new.csv, paired row by row with data.path's fer2013.csv
  bool ferplus_unknown = false;     // FER+: 'unknown' as a class of its own
  bool ferplus_as_fer2013 = false;  // FER+: FER-2013's seven classes (contempt's votes dropped)
  std::string normalize = "none";   // the model's input normalisation: none | equalize (stored in its checkpoint)
  int image_size = 48;              // every face resized to image_size x image_size at load (stored in the checkpoint)
};

struct ModelConfig {
  std::string architecture = "paper_cnn";
  std::vector<int> filters{32, 64, 128};
  int dense_units = 1024;
  double conv_dropout = 0.25;
  double dense_dropout = 0.5;
  std::string weights;          // start from this checkpoint or shipped model (same architecture and classes); empty: random
};

struct AugmentConfig {
  bool enabled = true;
  double flip_prob = 0.5;
  double rotation_deg = 10.0;
  double zoom = 0.1;
  double brightness = 0.2;
  double contrast = 0.2;
  double gamma = 0.0;          // gamma drawn log-uniformly in [1/(1+g), 1+g] (0 = off)
  double low_light = 0.0;      // share of faces turned into a dim camera's: darkened, sensor noise, 8-bit levels
  int crop_size = 48;          // random crops of this size; the model's input size follows (= data.image_size: none)
  int crop_padding = 0;        // pad by this many pixels (edge) and crop back: shifts at any crop size
  double erase_prob = 0.0;     // random erasing (torchvision's RandomErasing scales and ratios)
  double mixup_alpha = 0.0;    // Beta(a, a) mixing of image pairs and their labels (0 = off)
  double cutmix_alpha = 0.0;   // Beta(a, a) area of a pasted box (0 = off); both on: one per batch at random
};

struct TrainConfig {
  int epochs = 100;
  int batch_size = 64;
  double lr = 1e-3;
  double weight_decay = 0.0;
  std::string optimizer = "adam";   // adam | adamw | sgd
  double momentum = 0.9;            // sgd
  bool nesterov = false;            // sgd
  std::string schedule = "plateau"; // plateau | cosine | step
  int warmup_epochs = 0;            // cosine and step: linear warm-up
  int step_size = 30;               // step: epochs between decays
  double step_gamma = 0.1;          // step: decay factor
  double label_smoothing = 0.0;
  std::string target = "majority";  // data with votes: majority | probability | crossentropy | multi_target
  double ema_decay = 0.0;           // exponential moving average of the weights (0 = off)
  std::string precision = "fp32";   // fp32 | bf16 | fp16
  bool channels_last = false;
  bool tensorboard = true;          // <run>/tb/events.out.tfevents.*
  bool deterministic = true;        // CUDA: deterministic cuDNN algorithms
  bool class_weighted = false;
  double lr_factor = 0.2;
  int lr_patience = 5;
  double lr_min = 1e-6;
  double lr_min_delta = 1e-4;
  int early_stopping_patience = 10;         // 0 = never stop early
  std::string early_stopping_monitor = "val_loss";  // val_loss | val_accuracy; also picks best.pt
  std::string device = "auto";
  int threads = 0;
  int seed = 42;
  int eval_batch_size = 64;
  bool sync_batchnorm = false;        // data-parallel runs: BatchNorm statistics of the global batch
  int distributed_timeout_s = 1800;   // a rank that died or hangs fails the others within this
  double distributed_bucket_mb = 25;  // gradient all-reduce bucket size
  int background_k = 100;  // k-means centroids of the training faces stored in best.pt for DeepSHAP (0 = none)
};

// Knowledge distillation from a trained teacher (fer::DistillationHook).
struct DistillConfig {
  std::string teacher;        // checkpoint path or shipped model name; empty: no distillation
  double alpha = 0.9;         // weight of the soft-target term
  double temperature = 4.0;
};

struct EvalConfig {
  std::string tta = "none";        // none | flip | tencrop (false/true: none/flip, older configs)
  std::string precision = "fp32";  // inference: fp32 | bf16 | fp16
};

// Face detection and cropping: the one preprocessing path for full images and
// video frames (fer-live, fer-eval/fer-explain --detect-faces).
struct FacesConfig {
  std::string cascade;          // empty: haarcascade_frontalface_default.xml found automatically
  double scale_factor = 1.1;
  int min_neighbors = 5;
  int min_size = 40;            // pixels of the full image
  double margin = 0.1;          // framing box: the crop grows by this share of the box on each side
  double detect_scale = 0.75;   // full-image scans run on the image resized by this factor
  std::string detector = "yunet";  // yunet (found every face of the clip's audience) or haar (the paper's)
  std::string yunet_model;      // empty: yunet_s_<size>_<size>.onnx found automatically
  int yunet_input_size = 320;   // 320 or 640: the fixed input of the ONNX file
  double score_threshold = 0.6; // YuNet: sqrt(cls * obj) a face needs (chosen on Training-face photos: README)
  double nms_threshold = 0.3;   // YuNet: boxes overlapping a better one by more IoU are dropped
  std::string framing = "fer2013";  // fer2013: square crops framed as FER-2013's faces; box: the box + margin, stretched
  bool align = true;            // with landmarks (yunet): turn the face upright (fer2013 framing) or level its eyes (box)
  std::string align_to = "box";  // fer2013 framing, aligned: box (scale and centre from the box) | landmarks (the template)
};

// fer-explain's attribution maps (fer/explain/attribution.h).
struct ExplainConfig {
  std::string cam_layer;                  // Grad-CAM family: a feature-map layer; empty: the last convolution
  int ig_steps = 64;                      // integrated gradients: quadrature steps
  std::string ig_rule = "gauss_legendre"; // gauss_legendre | trapezoid
  std::string ig_baseline = "black";      // black | mean | blur
  int smoothgrad_samples = 25;            // smoothgrad: noisy copies averaged
  double smoothgrad_sigma = 0.15;         // smoothgrad: noise sigma as a share of the image's range
  std::string smoothgrad_base = "saliency";  // saliency | input_x_gradient | integrated_gradients
  int occlusion_patch = 8;                // occlusion: patch side in pixels
  int occlusion_stride = 4;
  double occlusion_fill = 0.5;            // occlusion: the patch's value (inputs are in [0,1])
};

struct LiveConfig {
  int full_scan_interval = 10;  // frames between full-frame scans; tracks re-detected near their box in between
  int smoothing_frames = 5;     // rolling mean of probabilities per track
  double track_iou = 0.3;
  int max_missed_frames = 10;   // a track ends after this many frames without its face
  double trend_window_s = 0;     // 0: adaptive (TrendOptions)
  int trend_max_windows = 120;
  double frames_rotate_s = 0;    // 0: one frames.csv; else frames.<N>.csv per period of session time
  int frames_keep = 0;           // rotated frames files kept (0 = all)
  double sequence_fps = 30.0;   // time base of image-folder sources
  std::string video_codec = "mp4v";  // annotated.mp4: mp4v (MPEG-4, fast) or avc1 (H.264)
  std::string device = "auto";
  int threads = 0;
};

struct AlertConfig {
  bool enabled = true;
  std::vector<std::string> negative_emotions{"sad", "fear"};
  double window_s = 60.0;
  double threshold = 0.6;
  double min_duration_s = 10.0;
  double cooldown_s = 300.0;
  std::vector<std::string> command;  // program + arguments, run with the alert JSON on stdin
};

struct Config {
  std::string name = "experiment";
  DataConfig data;
  ModelConfig model;
  AugmentConfig augment;
  TrainConfig train;
  DistillConfig distill;
  EvalConfig eval;
  FacesConfig faces;
  ExplainConfig explain;
  LiveConfig live;
  AlertConfig alert;
};

// One row of the key table: what `fer-train --list-keys` and docs/config.md show.
struct ConfigKeyInfo {
  std::string key;      // dotted path, e.g. "train.lr"
  std::string type;     // int | float | bool | string | int list | string list
  std::string default_value;
  std::string rule;     // allowed values, e.g. "> 0" or "one of: auto, cpu, cuda[:N]"
  std::string help;
};

std::vector<ConfigKeyInfo> config_keys();

// Reads `yaml_path` over the defaults. `name` defaults to the file's stem.
// Throws ConfigError (unknown key, bad type, value out of range) naming the
// file, line and key; std::runtime_error if the file cannot be read.
Config load_config(const std::string& yaml_path);

// Applies a YAML text over `config` (same rules as load_config); `origin`
// names the source in error messages.
void apply_yaml(Config& config, const std::string& yaml_text, const std::string& origin);

// Applies one `key=value` override (value parsed as YAML, e.g. "train.lr=3e-4",
// "model.filters=[16,32,64]"). Throws ConfigError.
void apply_override(Config& config, const std::string& assignment);

// The full resolved config as YAML, every key present; load_config of this
// text gives back an equal config.
std::string to_yaml(const Config& config);

// One key's value as YAML flow text (e.g. "0.001", "[32, 64, 128]"), as
// config.yaml writes it. Throws ConfigError for an unknown key.
std::string config_value(const Config& config, const std::string& key);

// The keys whose values differ, each as "key: <value in a> -> <value in b>",
// in key-table order.
std::vector<std::string> config_differences(const Config& a, const Config& b);

// Markdown table of all keys (fer-train --list-keys; docs/config.md).
std::string config_keys_markdown();

}  // namespace fer
