#include "fer/report/explain/sanity.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <opencv2/imgproc.hpp>
#include <sstream>
#include <stdexcept>

#include "files.h"
#include "fer/common/io.h"
#include "fer/report/plot.h"

namespace fer {
namespace {

namespace fs = std::filesystem;
using namespace explain_detail;

nlohmann::json scores_json(const std::vector<SanityScores>& steps, const std::vector<std::string>& layers) {
  auto out = nlohmann::json::array();
  for (std::size_t k = 0; k < steps.size(); ++k)
    out.push_back({{"layer", layers[k]},
                   {"spearman_abs", steps[k].spearman_abs},
                   {"spearman", steps[k].spearman},
                   {"ssim", steps[k].ssim},
                   {"faces", steps[k].faces}});
  return out;
}

nlohmann::json sanity_json(const SanityCheck& check, const SanityReportInputs& in,
                           const std::vector<std::pair<std::string, SanityVerdict>>& verdicts) {
  nlohmann::json methods = nlohmann::json::object();
  for (const auto& [method, v] : verdicts) {
    auto& m = methods[method];
    m["passes"] = v.passes;
    m["spearman_abs_all_randomised"] = v.spearman_abs;
    m["ssim_all_randomised"] = v.ssim;
    m["cascading"] = scores_json(check.cascading.at(method), check.layers);
    if (const auto it = check.independent.find(method); it != check.independent.end())
      m["independent"] = scores_json(it->second, check.layers);
  }
  return {{"checkpoint", in.checkpoint},
          {"criterion", fmt::format("passes when the mean Spearman correlation of |map| between the trained model's "
                                    "maps and those with every layer randomised is below {}",
                                    in.threshold)},
          {"threshold", in.threshold},
          {"seed", in.options.seed},
          {"layers", check.layers},
          {"faces", in.sources},
          {"attribution", attribution_settings_json(in.options.explainer)},
          {"methods", methods}};
}

// x = the layers randomised so far (0: the trained model, compared with itself).
std::string layer_tics(const std::vector<std::string>& layers) {
  std::string tics = "set xtics rotate by 45 right ('trained' 0";
  for (std::size_t k = 0; k < layers.size(); ++k) tics += fmt::format(", {} {}", gnuplot_quote(layers[k]), k + 1);
  return tics + ")\n";
}

std::string chart_frame(const std::vector<std::string>& layers, double threshold, const std::string& title,
                        const std::string& png_path) {
  std::ostringstream s;
  s << "set terminal pngcairo size 1100,560 noenhanced font 'DejaVu Sans,11'\nset output " << gnuplot_quote(png_path)
    << "\nset border lw 1\nset grid lc rgb '#dddddd'\nset title " << gnuplot_quote(title) << "\n"
    << layer_tics(layers) << "set xlabel 'randomised from the output down to'\nset ylabel 'similarity to the trained "
    << "model''s maps'\nset xrange [-0.3:" << layers.size() + 0.3 << "]\nset yrange [-0.4:1.05]\n"
    << "set arrow from graph 0, first " << threshold << " to graph 1, first " << threshold
    << " nohead dt 2 lc rgb '#888888'\nset key outside right top vertical box\n";
  return s.str();
}

// One data block row per step: x, then the scores (the trained model's row: all 1).
void add_block(std::ostringstream& s, const std::string& name, const std::vector<SanityScores>& steps,
               bool with_trained) {
  s << "$" << name << " << EOD\n";
  if (with_trained) s << "0 1 1 1\n";
  for (std::size_t k = 0; k < steps.size(); ++k)
    s << k + 1 << " " << steps[k].spearman_abs << " " << steps[k].spearman << " " << steps[k].ssim << "\n";
  s << "EOD\n";
}

void plot_method(const SanityCheck& check, const std::string& method, double threshold, const std::string& png) {
  std::ostringstream s;
  s << chart_frame(check.layers, threshold, method + ": the maps as layers are randomised", png);
  add_block(s, "C", check.cascading.at(method), true);
  const auto independent = check.independent.find(method);
  const bool has_independent = independent != check.independent.end() && !independent->second.empty();
  if (has_independent) add_block(s, "I", independent->second, false);
  const char* colours[] = {"#1f77b4", "#ff7f0e", "#2ca02c"};
  const char* labels[] = {"Spearman |map|", "Spearman signed", "SSIM"};
  s << "plot ";
  for (int c = 0; c < 3; ++c)
    s << "$C using 1:" << c + 2 << " with linespoints lw 2 pt 7 ps 0.6 lc rgb '" << colours[c] << "' title '"
      << labels[c] << " (cascading)'" << (c < 2 || has_independent ? ", " : "\n");
  for (int c = 0; has_independent && c < 3; ++c)
    s << "$I using 1:" << c + 2 << " with points pt 6 ps 1.2 lc rgb '" << colours[c] << "' title '" << labels[c]
      << " (that layer alone)'" << (c < 2 ? ", " : "\n");
  run_gnuplot(s.str(), png);
}

void plot_overview(const SanityCheck& check, double threshold, const std::string& png) {
  std::ostringstream s;
  s << chart_frame(check.layers, threshold, "Spearman correlation of |map| with the trained model's (cascading)", png);
  for (std::size_t m = 0; m < check.methods.size(); ++m)
    add_block(s, fmt::format("M{}", m), check.cascading.at(check.methods[m]), true);
  s << "plot ";
  for (std::size_t m = 0; m < check.methods.size(); ++m)
    s << "$M" << m << " using 1:2 with linespoints lw 2 pt 7 ps 0.6 " << series_line_style(m) << " title "
      << gnuplot_quote(check.methods[m]) << (m + 1 < check.methods.size() ? ", " : "\n");
  run_gnuplot(s.str(), png);
}

constexpr int kStripSide = 120;  // many columns: smaller cells, wide enough for a layer's name

cv::Mat strip_cell(const cv::Mat& panel, const std::string& title, bool first_row) {
  cv::Mat small;
  cv::resize(panel, small, {kStripSide, kStripSide}, 0, 0, cv::INTER_AREA);
  return first_row ? with_title(small, title) : small;
}

// Rows: the strip's faces; columns: the face, the trained model's map, then each
// cascading step's ("+fc1": every layer from the output down to fc1 randomised).
cv::Mat strip_image(const SanityCheck& check, const std::string& method,
                    const std::vector<std::vector<std::uint8_t>>& pixels) {
  const auto& models = check.strip.at(method);
  std::vector<cv::Mat> rows;
  for (std::size_t f = 0; f < pixels.size(); ++f) {
    std::vector<cv::Mat> cells{strip_cell(face_bgr(pixels[f]), "face", f == 0)};
    for (std::size_t k = 0; k < models.size(); ++k) {
      const auto& map = models[k].at(f);
      const double vmax = std::max(1e-12, percentile_abs(map.data(), map.size(), 0.999));  // each map on its own scale
      cells.push_back(strip_cell(attribution_overlay(pixels[f], map.data(), vmax),
                                 k == 0 ? "trained" : "+" + check.layers[k - 1], f == 0));
    }
    rows.push_back(hconcat_padded(cells));
  }
  return vconcat_padded(rows);
}

}  // namespace

std::vector<std::pair<std::string, SanityVerdict>> write_sanity_report(const SanityCheck& check,
                                                                       const SanityReportInputs& inputs,
                                                                       const std::string& out_dir) {
  for (const auto& method : check.methods)
    for (const auto& maps : check.strip.at(method))
      if (maps.size() != inputs.strip_pixels.size())
        throw std::invalid_argument(fmt::format("write_sanity_report: {} strip faces' pixels for {} maps of {}",
                                                inputs.strip_pixels.size(), maps.size(), method));
  std::vector<std::pair<std::string, SanityVerdict>> verdicts;
  for (const auto& method : check.methods) verdicts.emplace_back(method, sanity_verdict(check, method, inputs.threshold));
  fs::create_directories(out_dir);
  const auto path = [&](const std::string& name) { return (fs::path(out_dir) / name).string(); };
  write_text_atomic(path("sanity.json"), sanity_json(check, inputs, verdicts).dump(2));
  for (const auto& method : check.methods)
    if (!inputs.strip_pixels.empty())
      write_png(path("sanity_strip_" + method_file_stem(method) + ".png"), strip_image(check, method, inputs.strip_pixels));
  if (!gnuplot_available()) {
    spdlog::warn("gnuplot (pngcairo) not found: the sanity charts are skipped; install gnuplot-nox");
    return verdicts;
  }
  plot_overview(check, inputs.threshold, path("sanity.png"));
  for (const auto& method : check.methods)
    plot_method(check, method, inputs.threshold, path("sanity_" + method_file_stem(method) + ".png"));
  return verdicts;
}

}  // namespace fer
