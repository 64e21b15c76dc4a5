// Sharded explanation batches: each shard's shard.json, and the merge of the
// shards into the batch an unsharded run writes.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>

#include "files.h"
#include "fer/common/io.h"

namespace fer {
namespace fs = std::filesystem;
using namespace explain_detail;

void explain_detail::write_explain_shard(const std::string& out_dir, const std::string& checkpoint, const ExplainOptions& o,
                         const std::string& precision, std::size_t first, std::size_t count, const BatchReport& report) {
  const nlohmann::json identity = {{"checkpoint", checkpoint},   {"shards", o.shard.count},  {"total_items", o.total_items},
                                   {"method", explain_methods_text(o.methods)},         {"classes", o.classes},     {"probabilities", o.probabilities},
                                   {"lime_samples", o.lime_samples}, {"top_superpixels", o.top_superpixels},
                                   {"seed", o.seed},             {"save_raw", o.save_raw},   {"faithfulness", o.faithfulness},
                                   {"faithfulness_steps", o.faithfulness_steps}, {"precision", precision},
                                   {"shap_precision", precision_name(o.shap_precision)},
                                   {"attribution", attribution_settings_json(o)}};
  const nlohmann::json record = {{"shard", o.shard.index}, {"begin", first}, {"end", first + count},
                                 {"identity", identity},   {"report", report_json(report)}};
  write_text_atomic((fs::path(out_dir) / "shard.json").string(), record.dump() + "\n");
}

namespace {

struct ExplainShard {
  std::string dir;
  nlohmann::json record;
};

// Shards 0..N-1 of one batch, sorted, each once, with the same identity and contiguous items.
std::vector<ExplainShard> load_explain_shards(const std::vector<std::string>& dirs) {
  std::vector<ExplainShard> shards;
  for (const auto& dir : dirs) {
    const fs::path path = fs::path(dir) / "shard.json";
    std::ifstream in(path);
    if (!in) throw std::runtime_error(dir + " is not an explanation shard (no shard.json; write one with fer-explain --shard K/N)");
    try {
      shards.push_back({dir, nlohmann::json::parse(in)});
    } catch (const nlohmann::json::exception& e) {
      throw std::runtime_error(path.string() + ": " + e.what());
    }
  }
  std::sort(shards.begin(), shards.end(), [](const ExplainShard& a, const ExplainShard& b) {
    return a.record.at("shard").get<int>() < b.record.at("shard").get<int>();
  });
  const auto& identity = shards.front().record.at("identity");
  std::vector<ShardExtent> extents;
  for (const auto& shard : shards) {
    if (shard.record.at("identity") != identity)
      throw std::runtime_error(shard.dir + " belongs to another batch than " + shards.front().dir +
                               " (checkpoint, shard count, item count or options differ)");
    extents.push_back({shard.dir, shard.record.at("shard").get<int>(), shard.record.at("begin").get<std::size_t>(),
                       shard.record.at("end").get<std::size_t>()});
  }
  check_shard_sequence(extents, identity.at("shards").get<int>(), identity.at("total_items").get<std::size_t>(), "items");
  return shards;
}

// Hard links (same file system) or copies of a shard's per-item folders.
void link_item_folders(const fs::path& shard_dir, const fs::path& out_dir) {
  for (const auto& entry : fs::directory_iterator(shard_dir)) {
    if (!entry.is_directory()) continue;
    const fs::path target = out_dir / entry.path().filename();
    fs::create_directories(target);
    for (const auto& file : fs::directory_iterator(entry.path())) {
      const fs::path to = target / file.path().filename();
      std::error_code ec;
      fs::remove(to);
      fs::create_hard_link(file.path(), to, ec);
      if (ec) fs::copy_file(file.path(), to, fs::copy_options::overwrite_existing);
    }
  }
}

}  // namespace

ExplainSummary merge_explanation_shards(const std::vector<std::string>& shard_dirs, const std::string& out_dir) {
  if (shard_dirs.empty()) throw std::invalid_argument("merging explanation shards needs their directories");
  const auto started = std::chrono::steady_clock::now();
  const auto shards = load_explain_shards(shard_dirs);
  fs::create_directories(out_dir);
  BatchReport report;
  std::string manifest_text;
  for (const auto& shard : shards) {
    add_report(report, shard.record.at("report"));
    std::ifstream in(fs::path(shard.dir) / "manifest.csv");
    std::string line;
    std::getline(in, line);  // the header, once
    if (manifest_text.empty()) manifest_text = line + "\n";
    std::ostringstream rest;
    rest << in.rdbuf();
    manifest_text += rest.str();
    if (fs::weakly_canonical(shard.dir) != fs::weakly_canonical(out_dir)) link_item_folders(shard.dir, out_dir);
  }
  ExplainSummary summary;
  summary.manifest = (fs::path(out_dir) / "manifest.csv").string();
  write_text_atomic(summary.manifest, manifest_text);
  write_batch_reports(out_dir, report);
  summary.explained = report.explained;
  summary.failed = report.failed;
  summary.worst_additivity_error = report.worst_additivity;
  summary.precision = shards.front().record.at("identity").at("precision").get<std::string>();
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return summary;
}

}  // namespace fer
