#include "fer/engine/history.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "fer/common/io.h"

namespace fer {
namespace {
const std::vector<std::string> kHistoryColumns = {"epoch",    "lr",           "train_loss", "train_accuracy",
                                                  "val_loss", "val_accuracy", "seconds"};

double number_field(const std::string& text, const std::string& where) {
  std::size_t used = 0;
  double v = NAN;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (text.empty() || used != text.size()) throw DataError(where + ": '" + text + "' is not a number");
  return v;
}
}  // namespace

std::vector<EpochRecord> read_history_csv(const std::string& path) {
  CsvReader csv(path);
  std::vector<std::string> f;
  if (!csv.next(f) || f.size() < kHistoryColumns.size() ||
      !std::equal(kHistoryColumns.begin(), kHistoryColumns.end(), f.begin()))
    throw DataError(path + ":1: unexpected header '" + csv_row(f) + "'");
  std::vector<EpochRecord> out;
  while (csv.next(f)) {
    if (f.size() < kHistoryColumns.size())
      throw DataError(csv.where() + ": malformed row '" + csv_row(f) + "'");
    double v[7];
    for (int i = 0; i < 7; ++i) v[i] = number_field(f[i], csv.where());
    out.push_back({static_cast<int>(v[0]), v[1], v[2], v[3], v[4], v[5], v[6]});
  }
  return out;
}

void write_history_csv(const std::vector<EpochRecord>& history, const std::string& path) {
  std::string text = csv_row(kHistoryColumns) + "\n";
  char buf[256];
  for (const auto& r : history) {
    std::snprintf(buf, sizeof buf, "%d,%.6g,%.6f,%.6f,%.6f,%.6f,%.1f\n", r.epoch, r.lr, r.train_loss,
                  r.train_accuracy, r.val_loss, r.val_accuracy, r.seconds);
    text += buf;
  }
  write_text_atomic(path, text);
}

nlohmann::json history_to_json(const std::vector<EpochRecord>& history) {
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& r : history)
    rows.push_back({r.epoch, r.lr, r.train_loss, r.train_accuracy, r.val_loss, r.val_accuracy, r.seconds});
  return rows;
}

std::vector<EpochRecord> history_from_json(const nlohmann::json& rows) {
  std::vector<EpochRecord> out;
  for (const auto& r : rows) out.push_back({r[0].get<int>(), r[1], r[2], r[3], r[4], r[5], r[6]});
  return out;
}

}  // namespace fer
