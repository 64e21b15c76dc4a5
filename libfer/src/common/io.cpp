#include "fer/common/io.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace fer {
namespace fs = std::filesystem;

std::string program_share_dir() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return "";
  return (exe.parent_path().parent_path() / "share" / "libfer").string();
}

// --- atomic files ---

void replace_file_atomically(const std::string& path, const std::function<void(const std::string& tmp)>& write) {
  const std::string tmp = path + ".tmp";
  try {
    write(tmp);
  } catch (...) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw;
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) throw std::runtime_error("cannot replace '" + path + "': " + ec.message());
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_text_atomic(const std::string& path, const std::string& text) {
  replace_file_atomically(path, [&](const std::string& tmp) { write_file_checked(tmp, text); });
}

namespace {

[[noreturn]] void fail_on(const std::string& path, const char* what, int error) {
  throw std::runtime_error("cannot " + std::string(what) + " '" + path + "': " + std::strerror(error));
}

int open_checked(const std::string& path, int flags) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | flags, 0644);
  if (fd < 0) fail_on(path, "create", errno);
  return fd;
}

// Writes all of `bytes` to `fd`. Returns 0, or the errno of the failure.
int write_all(int fd, const std::string& bytes) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    const auto n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return n == 0 ? ENOSPC : errno;  // a regular file accepts nothing only when its device is full
    done += static_cast<std::size_t>(n);
  }
  return 0;
}

}  // namespace

void write_file_checked(const std::string& path, const std::string& bytes) {
  const int fd = open_checked(path, O_TRUNC);
  if (const int error = write_all(fd, bytes)) {
    ::close(fd);
    fail_on(path, "write", error);
  }
  if (::close(fd) != 0) fail_on(path, "write", errno);  // network filesystems may report a full device only here
}

AppendFile::AppendFile(std::string path, Mode mode)
    : path_(std::move(path)), fd_(open_checked(path_, mode == Mode::truncate ? O_TRUNC : O_APPEND)) {}

AppendFile::~AppendFile() {
  if (fd_ >= 0) ::close(fd_);
}

AppendFile::AppendFile(AppendFile&& other) noexcept : path_(std::move(other.path_)), fd_(other.fd_) { other.fd_ = -1; }

AppendFile& AppendFile::operator=(AppendFile&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    path_ = std::move(other.path_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

void AppendFile::write(const std::string& bytes) {
  if (fd_ < 0) throw std::logic_error("AppendFile: '" + path_ + "' is not open");
  const off_t end = ::lseek(fd_, 0, SEEK_END);
  if (const int error = write_all(fd_, bytes)) {
    // No torn row: the file ends where the last whole write did (best effort;
    // the error to report is the write's).
    if (end >= 0) static_cast<void>(::ftruncate(fd_, end) == 0);
    ::close(fd_);
    fd_ = -1;
    fail_on(path_, "write", error);
  }
}

void AppendFile::close() {
  if (fd_ < 0) return;
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) fail_on(path_, "write", errno);
}

std::string trim(const std::string& text) {
  const auto begin = text.find_first_not_of(" \t\r");
  if (begin == std::string::npos) return "";
  return text.substr(begin, text.find_last_not_of(" \t\r") - begin + 1);
}

// --- CSV ---

std::string csv_field(const std::string& text) {
  if (text.find_first_of(",\"\r\n") == std::string::npos) return text;
  std::string out = "\"";
  for (char c : text) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

std::string csv_row(const std::vector<std::string>& fields) {
  std::string row;
  for (std::size_t i = 0; i < fields.size(); ++i) row += (i ? "," : "") + csv_field(fields[i]);
  return row;
}

std::vector<std::string> parse_csv_row(const std::string& record) {
  std::vector<std::string> fields;
  std::string field;
  bool quoted = false;
  for (std::size_t i = 0; i < record.size(); ++i) {
    const char ch = record[i];
    if (ch == '"') {
      if (quoted && i + 1 < record.size() && record[i + 1] == '"') {
        field.push_back('"');  // a doubled quote inside quotes is one quote
        ++i;
      } else {
        quoted = !quoted;
      }
    } else if (ch == ',' && !quoted) {
      fields.push_back(std::move(field));
      field.clear();
    } else {
      field.push_back(ch);
    }
  }
  fields.push_back(std::move(field));
  return fields;
}

// gzread passes plain files through, so one reader serves .csv and .csv.gz.
struct CsvReader::Impl {
  gzFile file = nullptr;
  std::vector<char> buffer = std::vector<char>(1 << 20);
  std::size_t pos = 0, end = 0;
};

CsvReader::CsvReader(const std::string& path) : path_(path), impl_(std::make_unique<Impl>()) {
  impl_->file = gzopen(path.c_str(), "rb");
  if (!impl_->file) throw DataError("cannot open '" + path + "'");
  gzbuffer(impl_->file, 1 << 20);
}

CsvReader::~CsvReader() { gzclose(impl_->file); }

std::string CsvReader::where() const { return path_ + ":" + std::to_string(record_line_); }

bool CsvReader::read_physical_line(std::string& line) {
  Impl& s = *impl_;
  line.clear();
  for (;;) {
    if (s.pos == s.end) {
      const int n = gzread(s.file, s.buffer.data(), static_cast<unsigned>(s.buffer.size()));
      if (n < 0) {
        int err = 0;
        throw DataError(path_ + ": read error: " + gzerror(s.file, &err));
      }
      if (n == 0) {
        if (line.empty()) return false;
        ++line_;
        return true;
      }
      s.pos = 0;
      s.end = static_cast<std::size_t>(n);
    }
    const char* begin = s.buffer.data() + s.pos;
    const void* nl = std::memchr(begin, '\n', s.end - s.pos);
    if (nl) {
      const std::size_t len = static_cast<const char*>(nl) - begin;
      line.append(begin, len);
      s.pos += len + 1;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      ++line_;
      return true;
    }
    line.append(begin, s.end - s.pos);
    s.pos = s.end;
  }
}

bool CsvReader::next(std::vector<std::string>& fields) {
  std::string record, more;
  do {
    if (!read_physical_line(record)) return false;
  } while (record.empty());
  record_line_ = line_;
  // An odd number of quotes so far: a quoted field goes on to the next line.
  auto quotes = std::count(record.begin(), record.end(), '"');
  while (quotes % 2 == 1) {
    if (!read_physical_line(more)) throw DataError(where() + ": a quoted field is not closed");
    record += "\n" + more;
    quotes += std::count(more.begin(), more.end(), '"');
  }
  fields = parse_csv_row(record);
  return true;
}

// --- .npy ---

std::string npy_float32_bytes(const float* data, const std::vector<std::int64_t>& shape) {
  std::string dims;
  std::int64_t count = 1;
  for (std::size_t i = 0; i < shape.size(); ++i) {
    dims += (i ? ", " : "") + std::to_string(shape[i]);
    count *= shape[i];
  }
  if (shape.size() == 1) dims += ",";  // numpy spells a 1-d shape "(n,)"
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string out("\x93NUMPY\x01\x00", 8);
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>(header.size() >> 8);
  out += header;
  out.append(reinterpret_cast<const char*>(data), static_cast<std::size_t>(count) * sizeof(float));
  return out;
}

namespace {
std::vector<std::int64_t> parse_npy_shape(const std::string& dims) {
  std::vector<std::int64_t> shape;
  for (std::size_t pos = 0; pos < dims.size();) {
    const auto end = dims.find(',', pos);
    const std::string field = dims.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
    if (field.find_first_not_of(' ') != std::string::npos) shape.push_back(std::stoll(field));
    if (end == std::string::npos) break;
    pos = end + 1;
  }
  return shape;
}
}  // namespace

NpyArray parse_npy_float32(const std::string& bytes, const std::string& what) {
  const auto bad = [&](const std::string& why) { return DataError(what + ": not a float32 .npy (" + why + ")"); };
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0) throw bad("no .npy magic");
  const std::size_t header_len = static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8);
  if (bytes.size() < 10 + header_len) throw bad("truncated header");
  const std::string header = bytes.substr(10, header_len);
  if (header.find("'<f4'") == std::string::npos) throw bad("dtype is not <f4");
  if (header.find("'fortran_order': False") == std::string::npos) throw bad("not C order");
  const auto open = header.find("'shape': ("), close = header.find(')', open);
  if (open == std::string::npos || close == std::string::npos) throw bad("no shape");
  NpyArray array;
  array.shape = parse_npy_shape(header.substr(open + 10, close - open - 10));
  std::size_t count = 1;
  for (auto d : array.shape) count *= static_cast<std::size_t>(d);
  if (bytes.size() != 10 + header_len + count * sizeof(float)) throw bad("size does not match the shape");
  array.values.resize(count);
  std::memcpy(array.values.data(), bytes.data() + 10 + header_len, count * sizeof(float));
  return array;
}

void write_npy(const std::string& path, const std::vector<float>& data, const std::vector<std::size_t>& shape) {
  std::size_t count = 1;
  for (auto d : shape) count *= d;
  if (count != data.size()) throw std::invalid_argument("write_npy: shape does not match the data size");
  write_text_atomic(path, npy_float32_bytes(data.data(), std::vector<std::int64_t>(shape.begin(), shape.end())));
}

}  // namespace fer
