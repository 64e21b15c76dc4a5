#include <gtest/gtest.h>

#include "fer/config/config.h"
#include "test_util.h"

using fer::ConfigError;


TEST(Config, DefaultsAreThePapersRecipe) {
  const fer::Config c;
  EXPECT_EQ(c.model.architecture, "paper_cnn");
  EXPECT_EQ(c.model.filters, (std::vector<int>{32, 64, 128}));
  EXPECT_EQ(c.model.dense_units, 1024);
  EXPECT_DOUBLE_EQ(c.train.lr, 1e-3);
  EXPECT_DOUBLE_EQ(c.train.lr_factor, 0.2);
  EXPECT_EQ(c.train.lr_patience, 5);
  EXPECT_EQ(c.train.early_stopping_patience, 10);
  EXPECT_EQ(c.train.batch_size, 64);
  EXPECT_EQ(c.train.epochs, 100);
}

TEST(Config, YamlOverridesOnlyWhatItNames) {
  fer::Config c;
  fer::apply_yaml(c, "train:\n  lr: 0.0003\nmodel:\n  filters: [16, 32]\n", "inline");
  EXPECT_DOUBLE_EQ(c.train.lr, 3e-4);
  EXPECT_EQ(c.model.filters, (std::vector<int>{16, 32}));
  EXPECT_EQ(c.train.batch_size, 64);  // untouched default
}

TEST(Config, UnknownKeyIsRejectedWithFullPathAndLine) {
  fer::Config c;
  const auto msg = fer_test::error_of<ConfigError>([&] { fer::apply_yaml(c, "train:\n  lr: 0.1\n  lrr: 0.2\n", "exp.yaml"); });
  EXPECT_NE(msg.find("unknown config key 'train.lrr'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("exp.yaml:3:"), std::string::npos) << msg;
  const auto top = fer_test::error_of<ConfigError>([&] { fer::apply_yaml(c, "trian:\n  lr: 0.1\n", "exp.yaml"); });
  EXPECT_NE(top.find("unknown config key 'trian'"), std::string::npos) << top;
}

TEST(Config, OutOfRangeValueNamesKeyValueAndRule) {
  fer::Config c;
  const auto msg = fer_test::error_of<ConfigError>([&] { fer::apply_yaml(c, "train:\n  lr: -1\n", "exp.yaml"); });
  EXPECT_NE(msg.find("train.lr"), std::string::npos) << msg;
  EXPECT_NE(msg.find("-1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("> 0"), std::string::npos) << msg;
  const auto device = fer_test::error_of<ConfigError>([&] { fer::apply_override(c, "train.device=gpu"); });
  EXPECT_NE(device.find("train.device"), std::string::npos) << device;
  const auto type = fer_test::error_of<ConfigError>([&] { fer::apply_yaml(c, "train:\n  epochs: many\n", "exp.yaml"); });
  EXPECT_NE(type.find("expects int"), std::string::npos) << type;
}

TEST(Config, ImageSizeAndCropSizeShareOneRange) {
  fer::Config c;
  EXPECT_EQ(c.data.image_size, 48);
  fer::apply_yaml(c, "data:\n  image_size: 100\naugment:\n  crop_size: 88\n", "exp.yaml");
  EXPECT_EQ(c.data.image_size, 100);
  EXPECT_EQ(c.augment.crop_size, 88);
  for (const char* key : {"data.image_size", "augment.crop_size"}) {
    const auto msg = fer_test::error_of<ConfigError>([&] { fer::apply_override(c, std::string(key) + "=8"); });
    EXPECT_NE(msg.find(key), std::string::npos) << msg;
    EXPECT_NE(msg.find("in [16, 512]"), std::string::npos) << msg;
  }
}

TEST(Config, OverrideParsesYamlValues) {
  fer::Config c;
  fer::apply_override(c, "train.class_weighted=true");
  fer::apply_override(c, "model.filters=[8,16,32]");
  fer::apply_override(c, "train.device=cuda:1");
  EXPECT_TRUE(c.train.class_weighted);
  EXPECT_EQ(c.model.filters, (std::vector<int>{8, 16, 32}));
  EXPECT_EQ(c.train.device, "cuda:1");
  EXPECT_THROW(fer::apply_override(c, "train.nope=1"), ConfigError);
  EXPECT_THROW(fer::apply_override(c, "no_equals_sign"), ConfigError);
}

TEST(Config, StringListsParseCheckAndRoundTrip) {
  fer::Config c;
  fer::apply_yaml(c, "alert:\n  negative_emotions: [sad, angry]\n  command: [notify-counsellor, --room, 12]\n", "t.yaml");
  EXPECT_EQ(c.alert.negative_emotions, (std::vector<std::string>{"sad", "angry"}));
  EXPECT_EQ(c.alert.command, (std::vector<std::string>{"notify-counsellor", "--room", "12"}));
  try {
    fer::apply_yaml(c, "alert:\n  negative_emotions: [sad, \"\"]\n", "t.yaml");
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("t.yaml:2"), std::string::npos) << what;
    EXPECT_NE(what.find("alert.negative_emotions"), std::string::npos) << what;
  }
  // Any class name: the model's classes are data, checked when a session starts (fer::WellbeingMonitor).
  fer::apply_yaml(c, "alert:\n  negative_emotions: [sad, contempt]\n", "t.yaml");
  EXPECT_EQ(c.alert.negative_emotions.back(), "contempt");
  // A single string where a list is expected is a type error, not a one-element list.
  EXPECT_THROW(fer::apply_override(c, "alert.command=notify"), ConfigError);
  fer::Config back;
  fer::apply_yaml(back, fer::to_yaml(c), "dump");
  EXPECT_EQ(back.alert.command, c.alert.command);
  fer::Config empty_command;
  fer::apply_yaml(back, fer::to_yaml(empty_command), "dump");
  EXPECT_TRUE(back.alert.command.empty());
}

TEST(Config, ResolvedYamlRoundTrips) {
  fer::Config c;
  c.name = "round";
  c.train.lr = 2.5e-4;
  c.augment.enabled = false;
  c.model.filters = {4, 8};
  fer::Config back;
  fer::apply_yaml(back, fer::to_yaml(c), "dump");
  EXPECT_EQ(fer::to_yaml(back), fer::to_yaml(c));
  EXPECT_EQ(back.model.filters, c.model.filters);
  EXPECT_DOUBLE_EQ(back.train.lr, 2.5e-4);
}

TEST(Config, ShippedConfigsLoad) {
  for (const char* name : {"configs/paper_cnn.yaml", "configs/smoke.yaml", "configs/live.yaml"}) {
    const auto c = fer::load_config(std::string(fer_test::source_dir()) + "/" + name);
    EXPECT_EQ(c.model.architecture, "paper_cnn") << name;
  }
  EXPECT_EQ(fer::load_config(std::string(fer_test::source_dir()) + "/configs/paper_cnn.yaml").name, "fer2013_paper_cnn");
  for (const auto& entry : fer_test::fs::directory_iterator(std::string(fer_test::source_dir()) + "/configs"))
    if (entry.path().extension() == ".yaml") EXPECT_NO_THROW(fer::load_config(entry.path().string())) << entry.path();
  const auto vgg = fer::load_config(std::string(fer_test::source_dir()) + "/configs/vgg_fer.yaml");
  EXPECT_EQ(vgg.model.architecture, "vgg_fer");
  EXPECT_EQ(vgg.augment.crop_size, 40);  // the model's input: 40x40 crops
}

TEST(Config, EveryKeyIsDocumented) {
  const auto keys = fer::config_keys();
  EXPECT_GT(keys.size(), 30u);
  for (const auto& k : keys) EXPECT_FALSE(k.help.empty()) << k.key;
}

// docs/config.md's table is the key table as fer-train --list-keys prints it
// (scripts/gen-config-docs.sh writes it): the docs cannot drift from the code.
TEST(Config, DocsTableIsTheKeyTable) {
  const std::string doc = fer_test::read_text(std::string(fer_test::source_dir()) + "/docs/config.md");
  const std::string begin = "<!-- key table: written by scripts/gen-config-docs.sh -->\n";
  const std::string end = "<!-- end of key table -->";
  const auto from = doc.find(begin), to = doc.find(end);
  ASSERT_NE(from, std::string::npos) << "docs/config.md lost its key-table markers";
  ASSERT_NE(to, std::string::npos) << "docs/config.md lost its key-table markers";
  EXPECT_EQ(doc.substr(from + begin.size(), to - from - begin.size()), fer::config_keys_markdown())
      << "docs/config.md is stale: run scripts/gen-config-docs.sh";
}
