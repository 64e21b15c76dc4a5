// What every run writes next to its results: the environment it ran in.
#pragma once

#include <c10/core/Device.h>

#include <nlohmann/json.hpp>
#include <string>

namespace fer {

// Versions (LibTorch, OpenCV, compiler), device, threads, git revision, host,
// start time and LibTorch's build configuration, plus `extra` merged in.
nlohmann::json environment_json(const c10::Device& device, int threads, const nlohmann::json& extra = {});

}  // namespace fer
