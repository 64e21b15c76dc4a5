#include "fer/report/plot.h"

#include "sigpipe_guard.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "fer/common/emotions.h"

namespace fer {
namespace {


std::string terminal(int width, int height, const std::string& png_path) {
  std::ostringstream s;
  s << "set terminal pngcairo size " << width << "," << height << " enhanced font 'DejaVu Sans,11'\n"
    << "set output " << gnuplot_quote(png_path) << "\n"
    << "set border lw 1\nset grid lc rgb '#dddddd'\n";
  return s.str();
}

void ensure_parent(const std::string& path) {
  const std::filesystem::path p(path);
  if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path());
}

}  // namespace

std::string gnuplot_quote(const std::string& text) {
  std::string out = "'";
  for (char c : text) {
    if (c == '\'') out += "''";
    else out += c;
  }
  return out + "'";
}

std::string series_line_style(std::size_t i) {
  static const char* const kTab10[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                       "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
  return std::string("lc rgb '") + kTab10[i % 10] + "' dt " + std::to_string(i / 10 % 5 + 1);
}

bool gnuplot_available() {
  return std::system("gnuplot -e \"set terminal pngcairo\" >/dev/null 2>&1") == 0;
}

void run_gnuplot(const std::string& script, const std::string& expected_output) {
  char err_path[] = "/tmp/fer-gnuplot-XXXXXX";
  const int fd = mkstemp(err_path);
  if (fd < 0) throw std::runtime_error("cannot create a temporary file for gnuplot's messages");
  close(fd);
  std::error_code ec;
  if (!expected_output.empty()) std::filesystem::remove(expected_output, ec);  // so a stale chart cannot pass the check
  const std::string command = std::string("gnuplot 2>") + err_path;
  FILE* pipe = popen(command.c_str(), "w");
  if (!pipe) {
    std::remove(err_path);
    throw std::runtime_error("cannot start gnuplot");
  }
  bool read_all = false;
  int status = 0;
  {
    const SigpipeGuard guard;  // a gnuplot that exits early fails this chart, not the process
    read_all = std::fwrite(script.data(), 1, script.size(), pipe) == script.size() && std::fflush(pipe) == 0;
    status = pclose(pipe);
  }
  std::ifstream err_in(err_path);
  std::stringstream err;
  err << err_in.rdbuf();
  std::remove(err_path);
  const std::string said = err.str().empty() ? "" : ": " + err.str();
  if (status != 0)
    throw std::runtime_error("gnuplot failed (is gnuplot-nox installed?): exit status " + std::to_string(status) + said);
  if (!read_all) throw std::runtime_error("gnuplot exited before reading its whole script" + said);
  if (!expected_output.empty() && !(std::filesystem::file_size(expected_output, ec) > 0 && !ec))
    throw std::runtime_error("gnuplot exited without writing '" + expected_output + "'" + said);
}

void plot_confusion_matrix(const std::vector<std::vector<std::int64_t>>& cm, const std::vector<std::string>& names,
                           bool normalised, const std::string& title, const std::string& png_path) {
  const int k = static_cast<int>(cm.size());
  std::vector<std::vector<double>> value(k, std::vector<double>(k, 0));
  double max_value = 0;
  for (int r = 0; r < k; ++r) {
    double row_sum = 0;
    for (auto v : cm[r]) row_sum += v;
    for (int c = 0; c < k; ++c) {
      value[r][c] = normalised ? (row_sum > 0 ? cm[r][c] / row_sum : 0) : double(cm[r][c]);
      max_value = std::max(max_value, value[r][c]);
    }
  }
  if (max_value <= 0) max_value = 1;
  ensure_parent(png_path);
  std::ostringstream s;
  s << terminal(860, 760, png_path) << "unset grid\n"
    << "set title " << gnuplot_quote(title) << "\nset xlabel 'Predicted label'\nset ylabel 'True label'\n"
    << "set xrange [-0.5:" << k - 0.5 << "]\nset yrange [" << k - 0.5 << ":-0.5]\nset size ratio 1\n"
    << "set cbrange [0:" << max_value << "]\nset cblabel " << gnuplot_quote(normalised ? "share of true class" : "images")
    << "\nset palette defined (0 '#f7fbff', 0.5 '#6baed6', 1 '#08306b')\nset tics out nomirror\n";
  auto tics = [&](const char* axis) {
    s << "set " << axis << " (";
    for (int i = 0; i < k; ++i) s << (i ? ", " : "") << gnuplot_quote(i < (int)names.size() ? names[i] : std::to_string(i)) << " " << i;
    s << ")\n";
  };
  tics("xtics");
  tics("ytics");
  s << "set xtics rotate by 30 right\n$M << EOD\n";
  for (int r = 0; r < k; ++r)
    for (int c = 0; c < k; ++c) s << c << " " << r << " " << value[r][c] << "\n";
  s << "EOD\n";
  const std::string fmt = normalised ? "%.2f" : "%.0f";
  s << "plot $M using 1:2:3 with image notitle, "
    << "$M using 1:2:($3 > " << max_value / 2 << " ? sprintf('" << fmt << "', $3) : '') with labels tc rgb 'white' notitle, "
    << "$M using 1:2:($3 <= " << max_value / 2 << " ? sprintf('" << fmt << "', $3) : '') with labels tc rgb 'black' notitle\n";
  run_gnuplot(s.str(), png_path);
}

void plot_roc_curves(const std::vector<RocCurve>& curves, const std::vector<std::string>& names,
                     const std::vector<double>& aucs, const std::string& title, const std::string& png_path) {
  ensure_parent(png_path);
  std::ostringstream s;
  s << terminal(820, 760, png_path) << "set title " << gnuplot_quote(title)
    << "\nset xlabel 'False positive rate'\nset ylabel 'True positive rate'\n"
    << "set xrange [0:1]\nset yrange [0:1]\nset size ratio 1\nset key right bottom box opaque\n";
  for (std::size_t i = 0; i < curves.size(); ++i) {
    s << "$C" << i << " << EOD\n";
    for (std::size_t j = 0; j < curves[i].fpr.size(); ++j) s << curves[i].fpr[j] << " " << curves[i].tpr[j] << "\n";
    s << "EOD\n";
  }
  s << "plot ";
  for (std::size_t i = 0; i < curves.size(); ++i) {
    char label[128];
    std::snprintf(label, sizeof label, "%s (AUC %.3f)", i < names.size() ? names[i].c_str() : "?",
                  i < aucs.size() ? aucs[i] : 0.0);
    s << "$C" << i << " using 1:2 with lines lw 2 lc rgb '" << class_colour_hex(names, i) << "' title " << gnuplot_quote(label)
      << ", ";
  }
  s << "x with lines dt 2 lc rgb '#999999' title 'chance'\n";
  run_gnuplot(s.str(), png_path);
}

namespace {

// One panel of plot_faithfulness_curves: the mean curve of each method.
void faithfulness_panel(std::ostringstream& s, const FaithfulnessReport& report, bool deletion) {
  s << "set title " << gnuplot_quote(deletion ? "Deletion (lower area is better)" : "Insertion (higher area is better)")
    << "\nset xlabel " << gnuplot_quote(deletion ? "share of pixels deleted" : "share of pixels inserted")
    << "\nset ylabel 'p(predicted class)'\nset xrange [0:1]\nset yrange [0:1]\n"
    << "set key " << (deletion ? "right top" : "right bottom") << " box opaque\nplot ";
  const auto methods = report.methods();
  for (std::size_t m = 0; m < methods.size(); ++m) {
    const auto summary = report.summary(methods[m]);
    const auto& auc = deletion ? summary.deletion : summary.insertion;
    char label[128];
    std::snprintf(label, sizeof label, "%s (AUC %.3f, n=%lld)", methods[m].c_str(), auc.mean,
                  static_cast<long long>(auc.n));
    s << "'-' using 1:2 with linespoints lw 2 pt 7 ps 0.5 " << series_line_style(m) << " title "
      << gnuplot_quote(label) << (m + 1 < methods.size() ? ", " : "\n");
  }
  for (const auto& method : methods) {
    const auto summary = report.summary(method);
    const auto& curve = deletion ? summary.mean_deletion : summary.mean_insertion;
    for (std::size_t i = 0; i < curve.size(); ++i) s << report.fractions()[i] << " " << curve[i] << "\n";
    s << "e\n";
  }
}

}  // namespace

void plot_faithfulness_curves(const FaithfulnessReport& report, const std::string& title,
                              const std::string& png_path) {
  if (report.empty()) throw std::invalid_argument("plot_faithfulness_curves: the report has no curves");
  ensure_parent(png_path);
  std::ostringstream s;
  s << terminal(1200, 520, png_path) << "set multiplot layout 1,2 title " << gnuplot_quote(title) << "\n";
  faithfulness_panel(s, report, true);
  faithfulness_panel(s, report, false);
  s << "unset multiplot\n";
  run_gnuplot(s.str(), png_path);
}

void plot_training_curves(const std::vector<EpochRecord>& history, const std::string& title,
                          const std::string& png_path) {
  if (history.empty()) throw std::runtime_error("no epochs to plot");
  ensure_parent(png_path);
  const auto best = std::min_element(history.begin(), history.end(),
                                     [](const auto& a, const auto& b) { return a.val_loss < b.val_loss; });
  std::ostringstream s;
  s << terminal(1300, 520, png_path) << "$H << EOD\n";
  for (const auto& r : history)
    s << r.epoch << " " << r.train_loss << " " << r.val_loss << " " << r.train_accuracy << " " << r.val_accuracy
      << " " << r.lr << "\n";
  s << "EOD\n"
    << "set multiplot layout 1,2 title " << gnuplot_quote(title) << "\n"
    << "set xlabel 'Epoch'\nset key top right box opaque\n"
    << "set arrow 1 from " << best->epoch << ", graph 0 to " << best->epoch
    << ", graph 1 nohead dt 3 lc rgb '#555555'\n"
    << "set label 1 'best' at " << best->epoch << ", graph 0.04 right offset -0.5,0 font ',9' tc rgb '#555555'\n"
    << (history.size() < 12 ? "set xtics 1\n" : "set format x '%.0f'\n")
    << "set title 'Loss'\nset ylabel 'Cross-entropy'\n"
    << "plot $H using 1:2 with linespoints pt 7 ps 0.5 lw 2 lc rgb '#1f77b4' title 'train', "
    << "$H using 1:3 with linespoints pt 7 ps 0.5 lw 2 lc rgb '#ff7f0e' title 'validation'\n"
    << "set title 'Accuracy'\nset ylabel 'Accuracy'\nset key bottom right\n"
    << "plot $H using 1:4 with linespoints pt 7 ps 0.5 lw 2 lc rgb '#1f77b4' title 'train', "
    << "$H using 1:5 with linespoints pt 7 ps 0.5 lw 2 lc rgb '#ff7f0e' title 'validation'\n"
    << "unset multiplot\n";
  run_gnuplot(s.str(), png_path);
}

namespace {
// A string field inside a gnuplot data block: double quotes (single quotes are not quoting there).
std::string data_quote(const std::string& text) {
  std::string out = "\"";
  for (char c : text) out += c == '"' ? '\'' : c;
  return out + "\"";
}
std::string class_name(const std::vector<std::string>& names, std::size_t c) {
  return c < names.size() ? names[c] : std::to_string(c);
}
}  // namespace

void plot_emotion_pie(const std::vector<std::int64_t>& counts, const std::vector<std::string>& names,
                      const std::string& title, const std::string& png_path) {
  std::int64_t total = 0;
  for (auto n : counts) total += n;
  ensure_parent(png_path);
  std::ostringstream s;
  s << terminal(760, 640, png_path) << "unset grid\nunset border\nunset tics\nunset key\n"
    << "set title " << gnuplot_quote(title) << "\nset size ratio -1\nset xrange [-1.7:1.7]\nset yrange [-1.35:1.35]\n"
    << "set style fill solid 1.0 border lc rgb 'white'\n";
  if (total == 0) {
    s << "set label 1 'no faces observed' at 0,0 center\nplot 2 notitle\n";
    run_gnuplot(s.str(), png_path);
    return;
  }
  // Slices clockwise from 12 o'clock; labels outside each slice's middle.
  s << "$P << EOD\n";
  double angle = 90;
  std::ostringstream labels;
  for (std::size_t c = 0; c < counts.size(); ++c) {
    if (counts[c] == 0) continue;
    const double share = static_cast<double>(counts[c]) / total;
    const double end = angle - share * 360.0;
    s << "0 0 1 " << end << " " << angle << " 0x" << class_colour_hex(names, c).substr(1) << "\n";
    const double mid = (angle + end) / 2 * M_PI / 180;
    char text[96];
    std::snprintf(text, sizeof text, "%s %.1f%%", class_name(names, c).c_str(), 100 * share);
    labels << 1.18 * std::cos(mid) << " " << 1.12 * std::sin(mid) << " " << data_quote(text) << "\n";
    angle = end;
  }
  s << "EOD\n$L << EOD\n" << labels.str() << "EOD\n"
    << "plot $P using 1:2:3:4:5:6 with circles lc rgb variable, $L using 1:2:3 with labels center font ',11'\n";
  run_gnuplot(s.str(), png_path);
}

void plot_emotion_bars(const std::vector<std::int64_t>& counts, const std::vector<std::string>& names,
                       const std::string& title, const std::string& png_path) {
  std::int64_t max_count = 0;
  for (auto n : counts) max_count = std::max(max_count, n);
  ensure_parent(png_path);
  std::ostringstream s;
  s << terminal(860, 520, png_path) << "set title " << gnuplot_quote(title)
    << "\nset ylabel 'Face observations (frames)'\nunset key\nset style fill solid 0.9 border -1\nset boxwidth 0.7\n"
    << "set xrange [-0.6:" << counts.size() - 0.4 << "]\nset yrange [0:" << std::max<std::int64_t>(1, max_count) * 1.15
    << "]\nset tics out nomirror\nset grid noxtics ytics\n$B << EOD\n";
  for (std::size_t c = 0; c < counts.size(); ++c)
    s << c << " " << counts[c] << " 0x" << class_colour_hex(names, c).substr(1) << " " << data_quote(class_name(names, c)) << "\n";
  s << "EOD\nplot $B using 1:2:3:xtic(4) with boxes lc rgb variable, "
    << "$B using 1:2:(sprintf('%d', $2)) with labels offset 0,0.8\n";
  run_gnuplot(s.str(), png_path);
}

void plot_vote_agreement(const VoteMetrics& votes, const std::vector<std::string>& names, const std::string& title,
                         const std::string& png_path) {
  if (votes.vote_share.size() != names.size() || votes.mean_probability.size() != names.size())
    throw std::invalid_argument("plot_vote_agreement: " + std::to_string(names.size()) + " class names for " +
                                std::to_string(votes.vote_share.size()) + " vote shares");
  double top = 0.05;
  for (std::size_t c = 0; c < names.size(); ++c) top = std::max({top, votes.vote_share[c], votes.mean_probability[c]});
  ensure_parent(png_path);
  std::ostringstream s;
  s << terminal(960, 520, png_path) << "set title " << gnuplot_quote(title)
    << "\nset ylabel 'Mean share over the faces'\nset key top right\nset style fill solid 0.9 border -1\n"
    << "set boxwidth 0.36\nset xrange [-0.6:" << names.size() - 0.4 << "]\nset yrange [0:" << top * 1.2
    << "]\nset tics out nomirror\nset grid noxtics ytics\n$V << EOD\n";
  for (std::size_t c = 0; c < names.size(); ++c)
    s << c << " " << votes.vote_share[c] << " " << votes.mean_probability[c] << " 0x"
      << class_colour_hex(names, c).substr(1) << " " << data_quote(class_name(names, c)) << "\n";
  s << "EOD\nplot $V using ($1-0.19):2:xtic(5) with boxes fs pattern 2 border lc rgb '#404040' title 'annotators (vote share)', "
    << "$V using ($1+0.19):3:4 with boxes lc rgb variable title 'model (mean probability)', "
    << "$V using ($1-0.19):2:(sprintf('%.2f', $2)) with labels offset 0,0.7 notitle, "
    << "$V using ($1+0.19):3:(sprintf('%.2f', $3)) with labels offset 0,0.7 notitle\n";
  run_gnuplot(s.str(), png_path);
}

void plot_emotion_timeline(const std::vector<std::vector<std::int64_t>>& windows, double window_s,
                           const std::vector<std::string>& names, const std::string& title,
                           const std::string& png_path, double start_s) {
  if (!(window_s > 0)) throw std::invalid_argument("plot_emotion_timeline: window_s must be > 0");
  ensure_parent(png_path);
  const std::size_t classes = names.size();
  std::ostringstream s;
  s << terminal(1100, 520, png_path) << "set title " << gnuplot_quote(title)
    << "\nset xlabel 'Time (s), windows of " << window_s << " s'\nset ylabel 'Share of face observations'\n"
    << "set yrange [0:1]\nset key outside right top\nset style fill solid 0.9 border -1\nset tics out nomirror\n"
    << "set grid noxtics ytics\n";
  if (windows.empty()) {
    s << "set label 1 'no faces observed' at graph 0.5, graph 0.5 center\nplot [0:1] 2 notitle\n";
    run_gnuplot(s.str(), png_path);
    return;
  }
  // Bars centred on each window's middle, stacked by drawing cumulative shares back to front.
  s << "set boxwidth " << window_s * 0.9 << "\nset xrange [" << start_s << ":" << start_s + window_s * windows.size()
    << "]\n$T << EOD\n";
  for (std::size_t w = 0; w < windows.size(); ++w) {
    std::int64_t total = 0;
    for (auto n : windows[w]) total += n;
    s << start_s + (w + 0.5) * window_s;
    double cumulative = 0;
    for (std::size_t c = 0; c < classes; ++c) {
      cumulative += total > 0 ? static_cast<double>(windows[w][c]) / total : 0.0;
      s << " " << cumulative;
    }
    s << "\n";
  }
  s << "EOD\nplot ";
  for (std::size_t k = classes; k-- > 0;)
    s << "$T using 1:" << k + 2 << " with boxes lc rgb '" << class_colour_hex(names, k) << "' title "
      << gnuplot_quote(class_name(names, k)) << (k ? ", " : "\n");
  run_gnuplot(s.str(), png_path);
}

}  // namespace fer
