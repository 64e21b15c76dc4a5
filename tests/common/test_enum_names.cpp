// The enums' name tables: each name parses back to its value, aliases are
// accepted but never written, and an unknown name is an error listing them.
#include <gtest/gtest.h>

#include "fer/common/enum_names.h"
#include "fer/common/precision.h"
#include "fer/deploy/export.h"
#include "fer/engine/engine.h"
#include "fer/engine/optim.h"
#include "fer/explain/attribution.h"
#include "fer/inference/inference.h"
#if FER_WITH_OPENCV  // explanation batches need OpenCV
#include "fer/report/explain/batch.h"
#endif

namespace {

template <typename Enum>
void expect_round_trip(const fer::EnumNames<Enum>& table) {
  SCOPED_TRACE(table.what);
  ASSERT_FALSE(table.names.empty());
  for (const auto& [name, value] : table.names) {
    EXPECT_EQ(table.parse(name), value);
    EXPECT_EQ(table.name(value), name);
  }
  try {
    table.parse("no-such-name");
    ADD_FAILURE() << "an unknown name parsed";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("unknown " + table.what + " 'no-such-name' (expected " + table.listed() + ")"),
              std::string::npos) << e.what();
  }
}

}  // namespace

TEST(EnumNames, ListsNamesAndParsesAliasesWithoutWritingThem) {
  enum class Colour { red, green, blue };
  const fer::EnumNames<Colour> colours{"colour", {{"red", Colour::red}, {"green", Colour::green}, {"blue", Colour::blue}},
                                       {{"crimson", Colour::red}}};
  EXPECT_EQ(colours.listed(), "red, green or blue");
  EXPECT_EQ(colours.parse("crimson"), Colour::red);
  EXPECT_EQ(colours.name(Colour::red), "red");
  expect_round_trip(colours);
}

TEST(EnumNames, EveryLibraryTableRoundTrips) {
  expect_round_trip(fer::tta_names());
  expect_round_trip(fer::precision_names());
  expect_round_trip(fer::export_output_names());
  expect_round_trip(fer::schedule_names());
  expect_round_trip(fer::train_target_names());
  expect_round_trip(fer::attribution_method_names());
  expect_round_trip(fer::integration_rule_names());
#if FER_WITH_OPENCV
  expect_round_trip(fer::ig_baseline_names());
#endif
  EXPECT_EQ(fer::parse_tta("true"), fer::Tta::flip);  // configs written before TTA modes had names
  EXPECT_EQ(fer::parse_tta("false"), fer::Tta::none);
}
