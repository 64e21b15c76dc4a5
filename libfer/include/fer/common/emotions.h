// The seven FER-2013 emotions: their names, in label order, and one colour
// each, used by every chart and overlay so a class looks the same everywhere.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace fer {

constexpr int kNumClasses = 7;

// Label order of FER-2013: 0 angry, 1 disgust, 2 fear, 3 happy, 4 sad, 5 surprise, 6 neutral.
const std::vector<std::string>& emotion_names();

// "a, b, c" of a class list, for messages.
std::string class_name_list(const std::vector<std::string>& class_names);
// "angry, disgust, ..., neutral".
std::string emotion_name_list();

// Index of a class name (case-insensitive) in a class list, or -1.
int class_index(const std::vector<std::string>& class_names, const std::string& name);
// The same in emotion_names().
int emotion_index(const std::string& name);

struct Rgb {
  std::uint8_t r, g, b;
};
// The colour of class c (cycling after seven): matplotlib's tab10 hues.
Rgb class_colour(std::size_t c);
// The same as "#rrggbb".
std::string class_colour_hex(std::size_t c);

// The colour of class c of a class list, by name, so a class looks the same
// in every model whatever its index: FER-2013's seven as above, contempt pink,
// unknown olive; another name the palette's colour of its index (c % 10).
Rgb class_colour(const std::vector<std::string>& class_names, std::size_t c);
std::string class_colour_hex(const std::vector<std::string>& class_names, std::size_t c);

}  // namespace fer
