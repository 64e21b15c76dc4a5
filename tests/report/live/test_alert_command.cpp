// The alert command: the user's program receives each alert on its standard input.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "fer/common/emotions.h"
#include "fer/live/wellbeing.h"
#include "fer/report/live/alert_command.h"
#include "test_util.h"

namespace {
using fer_test::TempDir;

TEST(AlertCommand, ReceivesTheAlertJsonOnStdinWithoutAShell) {
  TempDir dir;
  const std::string target = dir / "received.json";
  fer::WellbeingMonitor m(fer_test::alert_rule(10, 0.6, 0, 1000), fer::emotion_names());
  auto json = m.to_json(*m.observe(3, 1.0, 4));
  json["source"] = "it's; $(rm -rf /) `x`";  // data is never interpreted by a shell
  const auto pid = fer::spawn_with_input({"tee", target}, json.dump() + "\n");
  const auto status = fer::wait_child(pid, 10);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(*status, 0);
  std::ifstream in(target);
  const auto received = nlohmann::json::parse(in);
  EXPECT_EQ(received, json);
}

TEST(AlertCommand, AProgramThatIgnoresItsInputOrDoesNotExistDoesNotKillTheCaller) {
  // `true` exits without reading: writing 1 MB into its closed pipe must not raise SIGPIPE here.
  const auto pid = fer::spawn_with_input({"true"}, std::string(1 << 20, 'x'));
  EXPECT_EQ(fer::wait_child(pid, 10).value_or(-1), 0);
  try {
    fer::spawn_with_input({"/nonexistent/notify-counsellor"}, "{}");
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/notify-counsellor"), std::string::npos) << e.what();
  }
}

}  // namespace
