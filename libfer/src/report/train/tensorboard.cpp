#include "fer/report/train/tensorboard.h"

#include <unistd.h>

#include <array>
#include <chrono>
#include <filesystem>
#include <sstream>
#include <stdexcept>

#include "fer/common/io.h"
#include "fer/common/protobuf.h"


namespace fer {
namespace fs = std::filesystem;

namespace {

using proto::put_bytes;
using proto::put_little_endian;
using proto::put_uint;

// tensorflow.Event: wall_time = 1 (double), step = 2 (int64), file_version = 3, summary = 5.
std::string event_header(double wall_time, std::int64_t step) {
  std::string e;
  proto::put_double(e, 1, wall_time);
  if (step != 0) put_uint(e, 2, static_cast<std::uint64_t>(step));
  return e;
}

// An Event whose summary (tensorflow.Summary: repeated Value value = 1) holds `values`.
std::string summary_event(double wall_time, std::int64_t step, const std::vector<std::string>& values) {
  std::string summary;
  for (const auto& v : values) put_bytes(summary, 1, v);
  std::string e = event_header(wall_time, step);
  put_bytes(e, 5, summary);
  return e;
}

// Summary.Value: tag = 1, simple_value = 2 (float), image = 4, tensor = 8, metadata = 9.
std::string scalar_value(const std::string& tag, float value) {
  std::string v;
  put_bytes(v, 1, tag);
  proto::put_float(v, 2, value);
  return v;
}

std::uint32_t big_endian_u32(const std::string& bytes, std::size_t at) {
  return (std::uint32_t(std::uint8_t(bytes[at])) << 24) | (std::uint32_t(std::uint8_t(bytes[at + 1])) << 16) |
         (std::uint32_t(std::uint8_t(bytes[at + 2])) << 8) | std::uint32_t(std::uint8_t(bytes[at + 3]));
}

const std::array<std::uint32_t, 256>& crc32c_table() {
  static const auto table = [] {
    std::array<std::uint32_t, 256> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  return table;
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string host_name() {
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  return host[0] ? host : "localhost";
}

}  // namespace

std::uint32_t crc32c(const std::string& bytes) {
  const auto& table = crc32c_table();
  std::uint32_t c = 0xFFFFFFFFu;
  for (const char ch : bytes) c = table[(c ^ std::uint8_t(ch)) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

std::uint32_t masked_crc32c(const std::string& bytes) {
  const std::uint32_t c = crc32c(bytes);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

std::string tfrecord(const std::string& data) {
  std::string length;
  put_little_endian(length, static_cast<std::uint64_t>(data.size()));
  std::string record = length;
  put_little_endian(record, masked_crc32c(length));
  record += data;
  put_little_endian(record, masked_crc32c(data));
  return record;
}

std::string file_version_event(double wall_time) {
  std::string e = event_header(wall_time, 0);
  put_bytes(e, 3, "brain.Event:2");
  return e;
}

std::string scalars_event(double wall_time, std::int64_t step, const std::vector<std::pair<std::string, float>>& scalars) {
  std::vector<std::string> values;
  for (const auto& [tag, value] : scalars) values.push_back(scalar_value(tag, value));
  return summary_event(wall_time, step, values);
}

std::string image_event(double wall_time, std::int64_t step, const std::string& tag, const std::string& png) {
  static const std::string signature = "\x89PNG\r\n\x1a\n";
  if (png.size() < 24 || png.compare(0, signature.size(), signature) != 0 || png.compare(12, 4, "IHDR") != 0)
    throw std::invalid_argument("image summary '" + tag + "': not a PNG file");
  // Summary.Image: height = 1, width = 2, colorspace = 3 (3: RGB), encoded_image_string = 4.
  std::string image;
  put_uint(image, 1, big_endian_u32(png, 20));
  put_uint(image, 2, big_endian_u32(png, 16));
  put_uint(image, 3, 3);
  put_bytes(image, 4, png);
  std::string v;
  put_bytes(v, 1, tag);
  put_bytes(v, 4, image);
  return summary_event(wall_time, step, {v});
}

std::string text_event(double wall_time, std::int64_t step, const std::string& tag, const std::string& text) {
  // TensorProto: dtype = 1 (7: DT_STRING), tensor_shape = 2 (empty: a scalar), string_val = 8.
  std::string tensor;
  put_uint(tensor, 1, 7);
  put_bytes(tensor, 2, "");
  put_bytes(tensor, 8, text);
  // SummaryMetadata: plugin_data = 1 (PluginData: plugin_name = 1): the text plugin's.
  std::string plugin, metadata;
  put_bytes(plugin, 1, "text");
  put_bytes(metadata, 1, plugin);
  std::string v;
  put_bytes(v, 1, tag);
  put_bytes(v, 8, tensor);
  put_bytes(v, 9, metadata);
  return summary_event(wall_time, step, {v});
}

// --- the hook ---

TensorBoardHook::TensorBoardHook(std::string dir, std::string config_yaml, std::int64_t train_images)
    : dir_(std::move(dir)), config_yaml_(std::move(config_yaml)), train_images_(train_images) {}

std::string TensorBoardHook::path() const { return file_.empty() ? "" : (fs::path(dir_) / file_).string(); }

void TensorBoardHook::before_train(TrainerBase&) {
  if (!file_.empty() && fs::exists(path())) {
    const auto size = fs::file_size(path());
    if (size < size_)
      throw std::runtime_error("cannot resume the TensorBoard file " + path() + ": it has " + std::to_string(size) +
                               " bytes, last.pt recorded " + std::to_string(size_) + " (delete it to start a new one)");
    fs::resize_file(path(), size_);
    return;
  }
  fs::create_directories(dir_);
  std::ostringstream name;
  name << "events.out.tfevents." << static_cast<std::int64_t>(now_seconds()) << "." << host_name();
  file_ = name.str();
  size_ = 0;
  const double t = now_seconds();
  append(file_version_event(t));
  // Indented four spaces: a Markdown code block, so TensorBoard shows the YAML as it is.
  std::string text, line;
  std::istringstream lines(config_yaml_);
  while (std::getline(lines, line)) text += "    " + line + "\n";
  append(text_event(t, 0, "config", text));
  size_ = fs::file_size(path());
}

void TensorBoardHook::after_epoch(TrainerBase& trainer) {
  const auto& r = trainer.progress().record;
  const double rate = r.seconds > 0 ? static_cast<double>(train_images_) / r.seconds : 0.0;
  append(scalars_event(now_seconds(), r.epoch,
                       {{"train/loss", float(r.train_loss)},
                        {"train/accuracy", float(r.train_accuracy)},
                        {"val/loss", float(r.val_loss)},
                        {"val/accuracy", float(r.val_accuracy)},
                        {"lr", float(r.lr)},
                        {"train/images_per_second", float(rate)}}));
  size_ = fs::file_size(path());
}

HookState TensorBoardHook::state_dict() const { return {{{"file", file_}, {"size", size_}}, {}}; }

void TensorBoardHook::load_state_dict(const HookState& state) {
  file_ = state.json.at("file").get<std::string>();
  size_ = state.json.at("size").get<std::uintmax_t>();
}

void TensorBoardHook::add_image(const std::string& tag, const std::string& png_path, std::int64_t step) {
  append(image_event(now_seconds(), step, tag, read_file(png_path)));
}

void TensorBoardHook::append(const std::string& event) {
  if (file_.empty()) throw std::logic_error("TensorBoardHook: no event file before before_train");
  AppendFile out(path(), AppendFile::Mode::append);
  out.write(tfrecord(event));
  out.close();
}

}  // namespace fer
