#include "fer/common/emotions.h"

#include <algorithm>
#include <cctype>
#include <cstdio>

namespace fer {

const std::vector<std::string>& emotion_names() {
  static const std::vector<std::string> names = {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"};
  return names;
}

std::string emotion_name_list() {
  std::string list;
  for (const auto& name : emotion_names()) list += (list.empty() ? "" : ", ") + name;
  return list;
}

int emotion_index(const std::string& name) {
  std::string lower = name;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  const auto& names = emotion_names();
  const auto it = std::find(names.begin(), names.end(), lower);
  return it == names.end() ? -1 : static_cast<int>(it - names.begin());
}

Rgb class_colour(std::size_t c) {
  // angry red, disgust brown, fear purple, happy green, sad blue, surprise orange, neutral grey
  static constexpr Rgb kPalette[] = {{214, 39, 40}, {140, 86, 75},  {148, 103, 189}, {44, 160, 44},
                                     {31, 119, 180}, {255, 127, 14}, {127, 127, 127}};
  return kPalette[c % 7];
}

std::string class_colour_hex(std::size_t c) {
  const Rgb rgb = class_colour(c);
  char hex[8];
  std::snprintf(hex, sizeof hex, "#%02x%02x%02x", rgb.r, rgb.g, rgb.b);
  return hex;
}

}  // namespace fer
