// Charts rendered by gnuplot (pngcairo terminal), fed through a pipe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fer/engine/history.h"
#include "fer/explain/faithfulness.h"
#include "fer/inference/metrics.h"

namespace fer {

// True when a `gnuplot` with the pngcairo terminal can be started.
bool gnuplot_available();

// Runs a gnuplot script; throws std::runtime_error with gnuplot's own error
// text when it fails, exits before reading the whole script, or (when
// `expected_output` is given) leaves that file missing or empty. A gnuplot
// that dies early never raises SIGPIPE in the caller.
void run_gnuplot(const std::string& script, const std::string& expected_output = "");

// Quotes a string for a gnuplot script ('...' with embedded quotes doubled).
std::string gnuplot_quote(const std::string& text);

// The line colour and dash of series i of a chart of many lines (explanation
// methods): matplotlib's tab10, dashed from the eleventh on, so no two of
// twenty series look alike. E.g. "lc rgb '#1f77b4' dt 1".
std::string series_line_style(std::size_t i);

// Heat map with the count (or row share) in each cell; rows = true class.
void plot_confusion_matrix(const std::vector<std::vector<std::int64_t>>& confusion,
                           const std::vector<std::string>& class_names, bool row_normalised, const std::string& title,
                           const std::string& png_path);

// One curve per class plus the chance diagonal; the legend gives each AUC.
void plot_roc_curves(const std::vector<RocCurve>& curves, const std::vector<std::string>& names,
                     const std::vector<double>& aucs, const std::string& title, const std::string& png_path);

// Per class, the annotators' mean vote share (grey) beside the model's mean
// probability (the class's colour): where the model over- or under-predicts a
// class relative to the people who labelled the faces. Requires vote_share and
// mean_probability of names.size() classes.
void plot_vote_agreement(const VoteMetrics& votes, const std::vector<std::string>& names, const std::string& title,
                         const std::string& png_path);

// Deletion (left) and insertion (right) mean curves of each method, AUCs in the legend.
// Requires a non-empty report.
void plot_faithfulness_curves(const FaithfulnessReport& report, const std::string& title,
                              const std::string& png_path);

// Emotion trend charts (fer-live, fer-trends); one colour per class throughout.
// Pie of each class's share of `counts` (classes with 0 left out).
void plot_emotion_pie(const std::vector<std::int64_t>& counts, const std::vector<std::string>& names,
                      const std::string& title, const std::string& png_path);
// Bar per class with its count above it.
void plot_emotion_bars(const std::vector<std::int64_t>& counts, const std::vector<std::string>& names,
                       const std::string& title, const std::string& png_path);
// Stacked share of each class per time window; windows[w][c] are counts, a
// window without observations stays empty; windows[0] starts at start_s.
// Requires window_s > 0.
void plot_emotion_timeline(const std::vector<std::vector<std::int64_t>>& windows, double window_s,
                           const std::vector<std::string>& names, const std::string& title,
                           const std::string& png_path, double start_s = 0);

// Loss and accuracy per epoch, train and validation, best epoch marked.
void plot_training_curves(const std::vector<EpochRecord>& history, const std::string& title,
                          const std::string& png_path);

}  // namespace fer
