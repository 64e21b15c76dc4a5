#include "fer/common/emotions.h"

#include <algorithm>
#include <cctype>
#include <cstdio>

namespace fer {

const std::vector<std::string>& emotion_names() {
  static const std::vector<std::string> names = {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"};
  return names;
}

std::string class_name_list(const std::vector<std::string>& class_names) {
  std::string list;
  for (const auto& name : class_names) list += (list.empty() ? "" : ", ") + name;
  return list;
}

std::string emotion_name_list() { return class_name_list(emotion_names()); }

int class_index(const std::vector<std::string>& class_names, const std::string& name) {
  const auto lower = [](std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return s;
  };
  const std::string wanted = lower(name);
  for (std::size_t i = 0; i < class_names.size(); ++i)
    if (lower(class_names[i]) == wanted) return static_cast<int>(i);
  return -1;
}

int emotion_index(const std::string& name) { return class_index(emotion_names(), name); }

Rgb class_colour(std::size_t c) {
  // angry red, disgust brown, fear purple, happy green, sad blue, surprise orange, neutral grey
  static constexpr Rgb kPalette[] = {{214, 39, 40}, {140, 86, 75},  {148, 103, 189}, {44, 160, 44},
                                     {31, 119, 180}, {255, 127, 14}, {127, 127, 127}};
  return kPalette[c % 7];
}

namespace {
std::string hex_of(Rgb rgb) {
  char hex[8];
  std::snprintf(hex, sizeof hex, "#%02x%02x%02x", rgb.r, rgb.g, rgb.b);
  return hex;
}
}  // namespace

std::string class_colour_hex(std::size_t c) { return hex_of(class_colour(c)); }

Rgb class_colour(const std::vector<std::string>& class_names, std::size_t c) {
  // matplotlib's tab10 after the seven: pink, olive, cyan
  static constexpr Rgb kMore[] = {{227, 119, 194}, {188, 189, 34}, {23, 190, 207}};
  const std::string name = c < class_names.size() ? class_names[c] : "";
  if (const int emotion = emotion_index(name); emotion >= 0) return class_colour(static_cast<std::size_t>(emotion));
  if (name == "contempt") return kMore[0];
  if (name == "unknown") return kMore[1];
  return c % 10 < 7 ? class_colour(c % 10) : kMore[c % 10 - 7];
}

std::string class_colour_hex(const std::vector<std::string>& class_names, std::size_t c) {
  return hex_of(class_colour(class_names, c));
}

}  // namespace fer
