#include "fer/report/evaluate/shards.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "fer/common/io.h"
#include "fer/data/sampler.h"

namespace fer {
namespace fs = std::filesystem;

namespace {

// What must agree between the shards of one evaluation.
nlohmann::json evaluation_identity(const nlohmann::json& record) {
  return {{"shards", record.at("shards")}, {"total_rows", record.at("total_rows")}, {"split", record.at("split")},
          {"data", record.at("data")},     {"tta", record.at("tta")},               {"precision", record.at("precision")},
          {"checkpoints", record.at("checkpoints")}, {"class_names", record.at("class_names")}};
}

struct LoadedShard {
  std::string dir;
  nlohmann::json record;
  std::vector<float> probabilities;
};

LoadedShard load_shard(const std::string& dir) {
  LoadedShard s{dir, {}, {}};
  const fs::path record_path = fs::path(dir) / "shard.json";
  if (!fs::exists(record_path))
    throw std::runtime_error(dir + " is not an evaluation shard (no shard.json; write one with fer-eval --shard K/N)");
  try {
    s.record = nlohmann::json::parse(read_file(record_path.string()));
    const auto npy = parse_npy_float32(read_file((fs::path(dir) / "probabilities.npy").string()), dir + "/probabilities.npy");
    s.probabilities = npy.values;
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(record_path.string() + ": " + e.what());
  }
  const auto rows = s.record.at("end").get<std::size_t>() - s.record.at("begin").get<std::size_t>();
  const auto classes = s.record.at("class_names").size();
  if (s.probabilities.size() != rows * classes || s.record.at("labels").size() != rows)
    throw std::runtime_error(fmt::format("{}: {} rows in shard.json, but {} probabilities for {} classes", dir, rows,
                                         s.probabilities.size(), classes));
  return s;
}

// Shards 0..N-1 of one evaluation, each once, in order, covering every row.
void check_complete(std::vector<LoadedShard>& shards) {
  std::sort(shards.begin(), shards.end(),
            [](const LoadedShard& a, const LoadedShard& b) { return a.record.at("shard").get<int>() < b.record.at("shard").get<int>(); });
  const auto identity = evaluation_identity(shards.front().record);
  std::vector<ShardExtent> extents;
  for (const auto& shard : shards) {
    if (evaluation_identity(shard.record) != identity)
      throw std::runtime_error(fmt::format("{} belongs to another evaluation than {} (split, data, models, options or "
                                           "shard count differ)", shard.dir, shards.front().dir));
    extents.push_back({shard.dir, shard.record.at("shard").get<int>(), shard.record.at("begin").get<std::size_t>(),
                       shard.record.at("end").get<std::size_t>()});
  }
  check_shard_sequence(extents, identity.at("shards").get<int>(), identity.at("total_rows").get<std::size_t>(), "rows");
}

}  // namespace

void check_shard_sequence(const std::vector<ShardExtent>& shards, int count, std::size_t total, const std::string& unit) {
  std::size_t next = 0;
  for (std::size_t i = 0; i < shards.size(); ++i) {
    const int index = shards[i].index;
    if (index < static_cast<int>(i))
      throw std::runtime_error(fmt::format("shard {} is given twice: {} and {}", index, shards[i - 1].dir, shards[i].dir));
    if (index > static_cast<int>(i)) throw std::runtime_error(fmt::format("shard {} of {} is missing", i, count));
    if (shards[i].begin != next)
      throw std::runtime_error(fmt::format("{}: its {} do not follow the previous shard's", shards[i].dir, unit));
    next = shards[i].end;
  }
  if (static_cast<int>(shards.size()) != count)
    throw std::runtime_error(fmt::format("shard {} of {} is missing", shards.size(), count));
  if (next != total) throw std::runtime_error(fmt::format("the shards cover {} {} of {}", next, unit, total));
}

EvaluationResult evaluate_shard(const std::vector<std::string>& checkpoint_paths, const Dataset& data,
                                const ShardSpec& shard, const std::string& out_dir, const EvaluationOptions& options) {
  // The merge adds up majority-rule figures only: a shard holds the faces with a majority label.
  const auto scored = majority_faces(data);
  const auto part = dataset_shard(scored, shard);
  const auto result = evaluate_checkpoints(checkpoint_paths, part, out_dir, options);
  write_evaluation_shard(out_dir, shard, scored.size(), part.labels, result, part.class_names, options,
                         checkpoint_paths);
  return result;
}

void write_evaluation_shard(const std::string& out_dir, const ShardSpec& shard, std::size_t total_rows,
                            const std::vector<std::int64_t>& labels, const EvaluationResult& result,
                            const std::vector<std::string>& class_names, const EvaluationOptions& options,
                            const std::vector<std::string>& checkpoint_paths) {
  const auto [begin, end] = shard_range(static_cast<int64_t>(total_rows), shard.index, shard.count);
  if (static_cast<std::size_t>(end - begin) != labels.size())
    throw std::invalid_argument(fmt::format("shard {}: {} labels for rows {}..{}", shard.index, labels.size(), begin, end));
  const nlohmann::json record = {{"shard", shard.index},    {"shards", shard.count},        {"begin", begin},
                                 {"end", end},              {"total_rows", total_rows},     {"split", options.split},
                                 {"data", options.data_source}, {"tta", tta_name(options.tta)}, {"precision", precision_name(options.precision)},
                                 {"checkpoints", checkpoint_paths}, {"class_names", class_names}, {"labels", labels},
                                 {"history_csv", options.history_csv}};
  write_npy((fs::path(out_dir) / "probabilities.npy").string(), result.probabilities,
            {labels.size(), class_names.size()});
  write_text_atomic((fs::path(out_dir) / "shard.json").string(), record.dump(1) + "\n");
}

EvaluationResult merge_evaluation_shards(const std::vector<std::string>& shard_dirs, const std::string& out_dir,
                                         EvaluationOptions options) {
  if (shard_dirs.empty()) throw std::invalid_argument("merging evaluation shards needs their directories");
  std::vector<LoadedShard> shards;
  for (const auto& dir : shard_dirs) shards.push_back(load_shard(dir));
  check_complete(shards);
  std::vector<std::int64_t> labels;
  std::vector<float> probabilities;
  for (const auto& s : shards) {
    for (const auto& l : s.record.at("labels")) labels.push_back(l.get<std::int64_t>());
    probabilities.insert(probabilities.end(), s.probabilities.begin(), s.probabilities.end());
  }
  const auto& r = shards.front().record;
  options.split = r.at("split").get<std::string>();
  options.data_source = r.at("data").get<std::string>();
  options.tta = parse_tta(r.at("tta").get<std::string>());
  options.precision = parse_precision(r.at("precision").get<std::string>());
  if (options.history_csv.empty()) options.history_csv = r.value("history_csv", "");
  return write_evaluation(labels, probabilities, r.at("class_names").get<std::vector<std::string>>(), out_dir, options,
                          r.at("checkpoints").get<std::vector<std::string>>());
}

}  // namespace fer
