// Files, written once: atomic replacement, CSV with quoting, numpy's .npy.
//
//   fer::write_text_atomic("run/metrics.json", json.dump(2));
//   fer::CsvReader csv("fer2013.csv.gz");           // .gz read transparently
//   std::vector<std::string> row;
//   while (csv.next(row)) use(row, csv.where());   // where(): "fer2013.csv.gz:17"
//
// Every function throws std::runtime_error (DataError for malformed input)
// naming the file, and the line for CSV.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace fer {

// Thrown for malformed input; the message names the file and, for CSV, the line.
class DataError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The whole file's bytes. Throws std::runtime_error("cannot read PATH").
std::string read_file(const std::string& path);

// --- whole files, replaced atomically: a killed run never leaves half a file ---

// Writes `text` to path.tmp, then renames it over `path`. Throws
// std::runtime_error naming the file and the cause ("No space left on
// device", "File too large"), path.tmp removed and `path` as it was.
void write_text_atomic(const std::string& path, const std::string& text);

// Writes `bytes` to `path` with every call checked (open, write, close):
// throws std::runtime_error naming the file and the cause.
void write_file_checked(const std::string& path, const std::string& bytes);

// --- logs that grow: each write reaches the file at once, checked ---

// A file written in pieces (frames.csv, alerts.jsonl, an explanation batch's
// manifest, a TensorBoard event file): every write() goes to the OS before it
// returns (a killed process loses nothing written) and throws
// std::runtime_error naming the file and the cause ("No space left on
// device") where a stream would only set its failbit. A failed write is cut
// back off the file (no torn last row) and closes it.
class AppendFile {
 public:
  enum class Mode { truncate, append };
  AppendFile() = default;
  // Throws std::runtime_error naming the file and the cause when it cannot be opened.
  AppendFile(std::string path, Mode mode);
  ~AppendFile();
  AppendFile(AppendFile&& other) noexcept;
  AppendFile& operator=(AppendFile&& other) noexcept;
  AppendFile(const AppendFile&) = delete;
  AppendFile& operator=(const AppendFile&) = delete;

  void write(const std::string& bytes);
  // Closes the file (checked: some filesystems report a full device only here); idempotent.
  void close();
  bool is_open() const { return fd_ >= 0; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
};

// <the running program's folder>/../share/libfer: where an install, and the
// build tree beside build/bin, keep data files (YuNet, shipped models).
// Empty when the program's path is unknown (read from /proc/self/exe).
std::string program_share_dir();

// Calls write(path.tmp) (for writers that want a path: LibTorch's archives),
// then renames the file over `path`. A throwing writer leaves `path` as it was.
void replace_file_atomically(const std::string& path, const std::function<void(const std::string& tmp)>& write);

// `text` without leading and trailing spaces, tabs and carriage returns.
std::string trim(const std::string& text);

// --- CSV (RFC 4180: a field with a comma, quote or line break is quoted, quotes doubled) ---

std::string csv_field(const std::string& text);
// The fields, quoted where needed and joined by commas (no line break).
std::string csv_row(const std::vector<std::string>& fields);
// Splits one record; quoted fields may hold commas and doubled quotes.
std::vector<std::string> parse_csv_row(const std::string& record);

// Reads a .csv or .csv.gz record by record (gzip is detected, plain files pass
// through); a quoted field may span lines. CR-LF line ends are accepted.
class CsvReader {
 public:
  explicit CsvReader(const std::string& path);  // throws DataError when it cannot open
  ~CsvReader();
  CsvReader(const CsvReader&) = delete;
  CsvReader& operator=(const CsvReader&) = delete;

  // The next record's fields; false at the end. Blank lines are skipped.
  bool next(std::vector<std::string>& fields);
  // "path:line" of the record last read (its first line).
  std::string where() const;
  const std::string& path() const { return path_; }

 private:
  bool read_physical_line(std::string& line);
  std::string path_;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::int64_t line_ = 0, record_line_ = 0;
};

// --- numpy .npy (float32, C order) ---

std::string npy_float32_bytes(const float* data, const std::vector<std::int64_t>& shape);
// Parses such bytes; `what` names the source in errors (DataError).
struct NpyArray {
  std::vector<std::int64_t> shape;
  std::vector<float> values;
};
NpyArray parse_npy_float32(const std::string& bytes, const std::string& what);
// Writes a float32 array atomically. Requires the shape's product to equal data.size().
void write_npy(const std::string& path, const std::vector<float>& data, const std::vector<std::size_t>& shape);

}  // namespace fer
