// The wire format against the encodings the protobuf documentation spells out
// (developers.google.com/protocol-buffers/docs/encoding).
#include <gtest/gtest.h>

#include <stdexcept>

#include "fer/common/protobuf.h"

namespace proto = fer::proto;

TEST(Protobuf, EncodesTheDocumentationsExamples) {
  std::string m;
  proto::put_uint(m, 1, 150);  // "a = 150" in field 1
  EXPECT_EQ(m, std::string("\x08\x96\x01", 3));
  m.clear();
  proto::put_bytes(m, 2, "testing");
  EXPECT_EQ(m, std::string("\x12\x07testing", 9));
  m.clear();
  proto::put_int(m, 1, -1);  // negative int64: ten bytes, two's complement
  EXPECT_EQ(m, std::string("\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11));
  m.clear();
  proto::put_float(m, 3, 1.0f);  // fixed32 little-endian 0x3f800000
  EXPECT_EQ(m, std::string("\x1d\x00\x00\x80\x3f", 5));
}

TEST(Protobuf, ParsesWhatItWritesFieldByField) {
  std::string inner, m;
  proto::put_uint(inner, 1, 300);
  proto::put_uint(m, 1, 1ull << 40);
  proto::put_bytes(m, 2, inner);
  proto::put_double(m, 3, 0.5);
  proto::put_float(m, 4, -2.0f);
  const auto fields = proto::parse_fields(m);
  ASSERT_EQ(fields.size(), 4u);
  EXPECT_EQ(fields[0].number, 1u);
  EXPECT_EQ(fields[0].varint, 1ull << 40);
  EXPECT_EQ(fields[1].type, proto::kBytes);
  const auto nested = proto::parse_fields(fields[1].bytes);
  ASSERT_EQ(nested.size(), 1u);
  EXPECT_EQ(nested[0].varint, 300u);
  double d;
  std::memcpy(&d, &fields[2].varint, 8);
  EXPECT_EQ(d, 0.5);
  float f;
  std::memcpy(&f, &fields[3].varint, 4);
  EXPECT_EQ(f, -2.0f);
}

TEST(Protobuf, RejectsTruncatedMessagesAndUnknownWireTypes) {
  std::string m;
  proto::put_bytes(m, 1, "abcdef");
  EXPECT_THROW(proto::parse_fields(m.substr(0, m.size() - 1)), std::runtime_error);
  EXPECT_THROW(proto::parse_fields(std::string("\x08\x96", 2)), std::runtime_error);  // varint cut short
  EXPECT_THROW(proto::parse_fields(std::string("\x0b", 1)), std::runtime_error);      // wire type 3 (group start)
}
