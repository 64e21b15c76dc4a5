// TensorBoard event files, written without TensorFlow or protobuf: TFRecord
// framing (length, masked CRC-32C of the length, data, masked CRC-32C of the
// data) of serialized tensorflow.Event messages, encoded by hand for the few
// fields TensorBoard reads (wall_time, step, file_version, summary values:
// simple_value, image, text tensor). Any reader of event files reads them
// (tests/report/train/read_tfevents.py is an independent one).
//
//   TensorBoardHook hook("runs/a/tb", to_yaml(cfg), train_images);
//   trainer.register_hook(...);  // after every hook that fills the epoch record,
//                                // before CheckpointHook (resume truncates to last.pt)
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "fer/engine/engine.h"

namespace fer {

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), and TFRecord's mask
// of it: ((crc >> 15) | (crc << 17)) + 0xa282ead8.
std::uint32_t crc32c(const std::string& bytes);
std::uint32_t masked_crc32c(const std::string& bytes);
// One TFRecord holding `data`.
std::string tfrecord(const std::string& data);

// Serialized tensorflow.Event messages.
std::string file_version_event(double wall_time);  // file_version "brain.Event:2": an event file's first
std::string scalars_event(double wall_time, std::int64_t step, const std::vector<std::pair<std::string, float>>& scalars);
// `png` is a PNG file's bytes; its width and height are read from its header
// (throws std::invalid_argument when it is no PNG).
std::string image_event(double wall_time, std::int64_t step, const std::string& tag, const std::string& png);
// A text summary (the text plugin's string tensor); TensorBoard renders it as Markdown.
std::string text_event(double wall_time, std::int64_t step, const std::string& tag, const std::string& text);

// Writes a run's TensorBoard file, <dir>/events.out.tfevents.<unix time>.<host>:
// at the start the config as text (step 0); after every epoch (step = epoch)
// train/loss, train/accuracy, val/loss, val/accuracy, lr and
// train/images_per_second; add_image() for end-of-run charts. Its state is the
// file's name and length after the last epoch written: a resumed run cuts the
// file back to that length (dropping what an interrupted epoch or the end of
// an earlier run wrote) and appends, so every step occurs once; before_train
// throws std::runtime_error when that file is shorter than recorded (a deleted
// file starts a new one). A run resumed from a last.pt without this state
// starts a new file at its next epoch.
class TensorBoardHook : public HookBase {
 public:
  // `train_images`: images in one epoch (all ranks), for images_per_second.
  TensorBoardHook(std::string dir, std::string config_yaml, std::int64_t train_images);
  std::string name() const override { return "tensorboard"; }
  void before_train(TrainerBase& trainer) override;
  void after_epoch(TrainerBase& trainer) override;
  HookState state_dict() const override;
  void load_state_dict(const HookState& state) override;

  // Appends an image summary of a PNG file at `step` (e.g. the confusion matrix at the best epoch).
  void add_image(const std::string& tag, const std::string& png_path, std::int64_t step);
  // The event file's path (empty before before_train).
  std::string path() const;

 private:
  void append(const std::string& event);

  std::string dir_, config_yaml_, file_;
  std::int64_t train_images_;
  std::uintmax_t size_ = 0;  // the file's length after the last epoch written
};

}  // namespace fer
