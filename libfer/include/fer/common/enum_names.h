// One table of an enum's names, read both ways: the library parses config
// values with it, names values in files with it, and the apps' option parser
// lists and accepts the same names (apps/common/app_common.h).
//
//   const fer::EnumNames<Tta> kTta{"test-time augmentation", {{"none", Tta::none}, {"flip", Tta::flip}}};
//   kTta.parse("flip");        // Tta::flip; "unknown test-time augmentation 'x' (expected none or flip)"
//   kTta.name(Tta::none);      // "none"
#pragma once

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace fer {

template <typename Enum>
struct EnumNames {
  std::string what;                                 // what the values are, for errors
  std::vector<std::pair<std::string, Enum>> names;  // a value's first name is its name; later ones are aliases
  std::vector<std::pair<std::string, Enum>> aliases = {};  // accepted, never written or listed

  // Throws std::invalid_argument naming `text` and listing the names.
  Enum parse(const std::string& text) const {
    for (const auto* table : {&names, &aliases})
      for (const auto& [n, value] : *table)
        if (n == text) return value;
    throw std::invalid_argument("unknown " + what + " '" + text + "' (expected " + listed() + ")");
  }

  // Requires a value the table names.
  std::string name(Enum value) const {
    for (const auto& [n, v] : names)
      if (v == value) return n;
    throw std::invalid_argument("a " + what + " without a name");
  }

  // "a, b or c".
  std::string listed() const {
    std::string text;
    for (std::size_t i = 0; i < names.size(); ++i)
      text += (i == 0 ? "" : i + 1 == names.size() ? " or " : ", ") + names[i].first;
    return text;
  }
};

}  // namespace fer
