// Protocol Buffers' wire format, written and read by hand for the few messages
// libfer emits (TensorBoard's tensorflow.Event, ONNX's ModelProto): no
// protobuf library, no generated code. Field numbers live beside each message
// builder; this header knows only the encoding.
//
//   std::string m;
//   fer::proto::put_bytes(m, 1, "name");   // field 1, length-delimited
//   fer::proto::put_uint(m, 2, 7);         // field 2, varint
//   for (const auto& f : fer::proto::parse_fields(m)) ...
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace fer::proto {

enum WireType : std::uint32_t { kVarint = 0, kFixed64 = 1, kBytes = 2, kFixed32 = 5 };

void put_varint(std::string& out, std::uint64_t v);
void put_key(std::string& out, std::uint32_t field, WireType type);

// The value's bytes as they are in memory: little-endian on every platform we build for.
template <typename T>
void put_little_endian(std::string& out, T value) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));
  out.append(bytes, sizeof(T));
}

void put_bytes(std::string& out, std::uint32_t field, std::string_view bytes);  // strings and sub-messages
void put_uint(std::string& out, std::uint32_t field, std::uint64_t v);
void put_int(std::string& out, std::uint32_t field, std::int64_t v);  // int32/int64 (two's complement varint)
void put_float(std::string& out, std::uint32_t field, float v);
void put_double(std::string& out, std::uint32_t field, double v);

// One field of a serialized message: `varint` holds varint and fixed values
// (fixed ones as raw bits), `bytes` views length-delimited ones in the message.
struct Field {
  std::uint32_t number = 0;
  WireType type = kVarint;
  std::uint64_t varint = 0;
  std::string_view bytes;
};

// The fields of `message` in order (repeated ones once per occurrence).
// Throws std::runtime_error for a truncated message or an unknown wire type.
std::vector<Field> parse_fields(std::string_view message);

}  // namespace fer::proto
