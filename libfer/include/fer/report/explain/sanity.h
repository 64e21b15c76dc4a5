// The files of a model-randomisation sanity check (fer/explain/sanity_check.h):
// its scores as JSON, a chart per method, the strip of maps, the verdicts.
//
//   auto check = fer::sanity_check(model, background, faces, seeds, options);
//   auto verdicts = fer::write_sanity_report(check, {model, sources, strip_pixels}, "out/sanity");
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "fer/explain/sanity_check.h"

namespace fer {

struct SanityReportInputs {
  std::string checkpoint;                               // recorded in sanity.json
  std::vector<std::string> sources;                     // the faces checked, in order (recorded)
  std::vector<std::vector<std::uint8_t>> strip_pixels;  // the strip's faces (48*48 each), check.strip's order
  SanityCheckOptions options;                           // recorded: seed, independent, the methods' settings
  // sanity_verdict's: a Spearman rho < 0.3 shares under a tenth (rho^2) of the ranks' variance.
  double threshold = 0.3;
};

// Writes into out_dir: sanity.json (per method and step the mean Spearman of
// |map| and of the signed maps, SSIM and faces; the verdicts), sanity.png
// (every method's Spearman of |map| against the layers randomised, cascading),
// sanity_<method>.png (the three scores, cascading and independent) and
// sanity_strip_<method>.png (each strip face's map under the trained model and
// after each cascading step). The charts need gnuplot: without it they are
// skipped with a warning. Returns each method's verdict in check.methods' order.
// Requires strip_pixels for the faces of check.strip; throws
// std::invalid_argument otherwise, std::runtime_error naming a file it cannot write.
std::vector<std::pair<std::string, SanityVerdict>> write_sanity_report(const SanityCheck& check,
                                                                       const SanityReportInputs& inputs,
                                                                       const std::string& out_dir);

}  // namespace fer
