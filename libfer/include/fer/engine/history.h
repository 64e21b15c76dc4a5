// The training history: one record per epoch, as history.csv holds it and as
// the history hook saves it in last.pt.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

namespace fer {

struct EpochRecord {
  int epoch = 0;
  double lr = 0, train_loss = 0, train_accuracy = 0, val_loss = 0, val_accuracy = 0, seconds = 0;
};

// history.csv (header: epoch,lr,train_loss,train_accuracy,val_loss,val_accuracy,seconds).
// Reading throws DataError naming path:line; writing replaces the file atomically.
std::vector<EpochRecord> read_history_csv(const std::string& path);
void write_history_csv(const std::vector<EpochRecord>& history, const std::string& path);

// [[epoch, lr, train_loss, train_accuracy, val_loss, val_accuracy, seconds], ...]:
// the form saved in checkpoints (kept so that older last.pt files resume).
nlohmann::json history_to_json(const std::vector<EpochRecord>& history);
std::vector<EpochRecord> history_from_json(const nlohmann::json& rows);

}  // namespace fer
