#include "fer/common/protobuf.h"

#include <stdexcept>

namespace fer::proto {

void put_varint(std::string& out, std::uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

void put_key(std::string& out, std::uint32_t field, WireType type) { put_varint(out, (field << 3) | type); }

void put_bytes(std::string& out, std::uint32_t field, std::string_view bytes) {
  put_key(out, field, kBytes);
  put_varint(out, bytes.size());
  out.append(bytes.data(), bytes.size());
}

void put_uint(std::string& out, std::uint32_t field, std::uint64_t v) {
  put_key(out, field, kVarint);
  put_varint(out, v);
}

void put_int(std::string& out, std::uint32_t field, std::int64_t v) { put_uint(out, field, static_cast<std::uint64_t>(v)); }

void put_float(std::string& out, std::uint32_t field, float v) {
  put_key(out, field, kFixed32);
  put_little_endian(out, v);
}

void put_double(std::string& out, std::uint32_t field, double v) {
  put_key(out, field, kFixed64);
  put_little_endian(out, v);
}

namespace {

struct Cursor {
  std::string_view data;
  std::size_t at = 0;

  void need(std::size_t n) const {
    if (data.size() - at < n)
      throw std::runtime_error("protobuf message truncated at byte " + std::to_string(at) + " of " +
                               std::to_string(data.size()));
  }
  std::uint64_t varint() {
    std::uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      need(1);
      const auto byte = static_cast<std::uint8_t>(data[at++]);
      v |= std::uint64_t(byte & 0x7f) << shift;
      if (!(byte & 0x80)) return v;
    }
    throw std::runtime_error("protobuf varint longer than 10 bytes at byte " + std::to_string(at));
  }
  std::uint64_t fixed(std::size_t n) {
    need(n);
    std::uint64_t v = 0;
    std::memcpy(&v, data.data() + at, n);  // little-endian, as written
    at += n;
    return v;
  }
};

}  // namespace

std::vector<Field> parse_fields(std::string_view message) {
  std::vector<Field> fields;
  Cursor c{message};
  while (c.at < message.size()) {
    const std::uint64_t key = c.varint();
    Field f;
    f.number = static_cast<std::uint32_t>(key >> 3);
    f.type = static_cast<WireType>(key & 7);
    switch (f.type) {
      case kVarint: f.varint = c.varint(); break;
      case kFixed64: f.varint = c.fixed(8); break;
      case kFixed32: f.varint = c.fixed(4); break;
      case kBytes: {
        const std::uint64_t n = c.varint();
        c.need(n);
        f.bytes = message.substr(c.at, n);
        c.at += n;
        break;
      }
      default:
        throw std::runtime_error("protobuf wire type " + std::to_string(key & 7) + " (field " +
                                 std::to_string(f.number) + ") is not supported");
    }
    fields.push_back(f);
  }
  return fields;
}

}  // namespace fer::proto
