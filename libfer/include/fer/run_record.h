// What every run writes next to its results: the environment it ran in, and
// files replaced atomically so a killed run never leaves half a file.
#pragma once

#include <torch/torch.h>

#include <nlohmann/json.hpp>
#include <string>

namespace fer {

// Versions (LibTorch, OpenCV, compiler), device, threads, git revision, host,
// start time and LibTorch's build configuration, plus `extra` merged in.
nlohmann::json environment_json(const torch::Device& device, int threads, const nlohmann::json& extra = {});

// Writes `text` to path.tmp, then renames it over `path`. Throws std::runtime_error.
void write_text_atomic(const std::string& path, const std::string& text);

}  // namespace fer
