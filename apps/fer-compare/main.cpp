// fer-compare: training runs side by side: one table (metrics of best.pt,
// config differences only) and their validation curves overlaid.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "app_common.h"
#include "fer/report/plot.h"
#include "fer/report/train/compare.h"

namespace {

struct CompareArgs {
  std::vector<std::string> runs;
  std::string chart = "compare.png", title = "Validation curves";
};

void add_compare_options(CLI::App& app, CompareArgs& a) {
  app.add_option("runs", a.runs, "Run folders (fer-train --out, or a sweep's runs/*)")->required()->check(CLI::ExistingDirectory);
  app.add_option("--chart", a.chart, "PNG of validation accuracy and loss per epoch (empty: none)")->capture_default_str();
  app.add_option("--title", a.title, "Chart title")->capture_default_str();
}

int run_compare(const CompareArgs& a) {
  const auto runs = fer::read_runs(a.runs);
  std::fputs(fer::comparison_markdown(fer::compare_runs(runs)).c_str(), stdout);
  if (a.chart.empty()) return 0;
  if (!fer::gnuplot_available()) throw std::runtime_error("--chart needs gnuplot with the pngcairo terminal (or --chart '')");
  fer::plot_run_curves(runs, a.title, a.chart);
  std::fprintf(stderr, "chart: %s\n", a.chart.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Compare training runs: metrics, config differences, validation curves"};
  CompareArgs args;
  add_compare_options(app, args);
  if (const auto status = fer_app::parse_command_line(app, argc, argv)) return *status;
  return fer_app::run_main([&] { return run_compare(args); });
}
