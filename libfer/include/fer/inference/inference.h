// Batched prediction over uint8 image sets.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include "fer/common/callbacks.h"
#include "fer/common/enum_names.h"
#include "fer/common/precision.h"
#include "fer/data/dataset.h"
#include "fer/inference/predictor.h"
#include "fer/models/checkpoint.h"
#include "fer/models/model.h"

namespace fer {

// "auto" -> CUDA when available, else CPU; "cpu"; "cuda" / "cuda:N".
// Throws std::runtime_error when CUDA is asked for and not available.
c10::Device resolve_device(const std::string& spec);

// The images of `data` as a uint8 tensor [N,S,S], S its image_size (a copy, CPU).
at::Tensor images_tensor(const Dataset& data);
at::Tensor labels_tensor(const Dataset& data);

// Test-time augmentation: none, flip (image and mirror), tencrop (the four
// corner crops and the centre crop of the model's input size, each mirrored).
enum class Tta { none, flip, tencrop };
// "none" | "flip" | "tencrop", and "false"/"true" (older configs) for none/flip.
const EnumNames<Tta>& tta_names();  // none, flip, tencrop (false, true: older configs)
Tta parse_tta(const std::string& name);
std::string tta_name(Tta tta);

// The views TTA averages over, each [B,C,size,size]: for none and flip the
// centre crop (and its mirror); for tencrop the five crops of `size` (each with
// its mirror) taken from x, or from x padded by `tencrop_padding` (edge
// replication) when size equals the image size.
std::vector<at::Tensor> tta_views(const at::Tensor& x, Tta tta, int64_t size, int64_t tencrop_padding = 4);

struct PredictOptions {
  // Images per forward pass; bounds peak memory for large image sets.
  int64_t batch_size = 64;
  Tta tta = Tta::none;
  int64_t input_size = 48;       // the model's input: centre crop (or ten crops) of this size
  Precision precision = Precision::fp32;
  ProgressFactory progress;  // null: silent
  std::string progress_label = "predict";
};

// Requires images_u8 [N,48,48] uint8, as cropped (the model's input
// normalisation is applied here). Returns softmax probabilities [N,classes]
// as float32 on the CPU (the mean over the TTA views). Puts the model in eval mode.
at::Tensor predict_probabilities(ClassifierImpl& model, const at::Tensor& images_u8, const c10::Device& device,
                                    const PredictOptions& options = {});

// The softmax probabilities of each TTA view (tta_views' order), each
// [N,classes] float32 on the CPU; empty for no images. On the CPU,
// mean_probabilities of them (or of the views a narrower TTA mode has: for
// tencrop, views 8 and 9 are the centre crop and its mirror, which none and
// flip take) is predict_probabilities' result bit for bit. Requires as
// predict_probabilities.
std::vector<at::Tensor> predict_view_probabilities(ClassifierImpl& model, const at::Tensor& images_u8,
                                                   const c10::Device& device, const PredictOptions& options = {});

// The mean of the members' probabilities (an ensemble); each member is fed at
// its own input size (`options.input_size` is ignored). Requires members, and
// images of every member's image_size (else std::invalid_argument).
// The mean is mean_probabilities' (below), so probabilities computed member by
// member and averaged there are the same floats.
at::Tensor predict_ensemble_probabilities(const std::vector<LoadedCheckpoint>& members, const at::Tensor& images_u8,
                                             const c10::Device& device, const PredictOptions& options = {});

// The models of checkpoint files on `data`: one network, or an ensemble (the
// mean of the members' probabilities, predict_ensemble_probabilities), loaded
// on `device`, `data` resized to the models' image_size where it differs
// (resize_images). Returns the probabilities [n, classes] row-major and the class
// names. Throws std::runtime_error for no checkpoint, an empty `data`, or
// members whose class names differ (naming the member); as load_checkpoint
// for a file that cannot be read.
struct EnsemblePrediction {
  std::vector<float> probabilities;
  std::vector<std::string> class_names;
};
EnsemblePrediction predict_checkpoints(const std::vector<std::string>& checkpoint_paths, const Dataset& data,
                                       const c10::Device& device, const PredictOptions& options);

// The classes of `classes` (names, in that order) that `prediction` lacks;
// empty when it predicts all of them.
std::vector<std::string> missing_classes(const EnsemblePrediction& prediction, const std::vector<std::string>& classes);

// `prediction` read as a model of `classes`: each listed class's probability
// taken by name, each row renormalised over them (the probability of a class
// given that the face is one of these; a row with no mass on them becomes
// uniform). How a model of more classes (FER+'s contempt) or of another order
// is scored on a dataset's labels; the same list returns `prediction` as it
// is. Requires missing_classes() empty, else std::invalid_argument naming them.
EnsemblePrediction restrict_to_classes(const EnsemblePrediction& prediction, const std::vector<std::string>& classes);

// The mean that TTA takes over views and an ensemble over members: the
// probabilities [N,classes] summed in order, divided by their count (one
// tensor is returned as it is). Requires at least one tensor, all one shape;
// throws std::invalid_argument otherwise.
at::Tensor mean_probabilities(const std::vector<at::Tensor>& probabilities);

// A LIME predictor over `model`: float images [n, S*S] in [0,1] (S: the
// model's image_size) -> softmax probabilities [n, classes], computed on
// `device` in `precision`, centre cropped to `input_size`; std::invalid_argument
// when the values are not n square images. The images go to the network as given: already
// normalised as it expects (explainers perturb the normalised face). The model
// must outlive it.
BatchPredictor probability_predictor(ClassifierImpl& model, const c10::Device& device,
                                     Precision precision = Precision::fp32, int64_t input_size = 48);

}  // namespace fer
