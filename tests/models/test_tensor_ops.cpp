// Augmentation, model, checkpoint and inference: the tensor side of libfer.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <torch/torch.h>


#include "fer/common/io.h"
#include "fer/data/augment.h"
#include "fer/inference/inference.h"
#include "fer/models/checkpoint.h"
#include "fer/models/model.h"
#include "test_util.h"

namespace {

torch::Tensor random_batch(int64_t n, uint64_t seed) {
  auto gen = fer::make_cpu_generator(seed);
  return torch::rand({n, 1, 48, 48}, gen, torch::kFloat32);
}

fer::AugmentOptions no_augmentation() {
  fer::AugmentOptions o;
  o.flip_prob = o.rotation_deg = o.zoom = o.brightness = o.contrast = 0;
  return o;
}

}  // namespace

TEST(Augment, FlipTwiceIsIdentityAndFlipMirrors) {
  const auto x = random_batch(4, 1);
  const auto mask = torch::tensor({true, false, true, true});
  const auto once = fer::flip_where(x, mask);
  EXPECT_TRUE(torch::equal(fer::flip_where(once, mask), x));
  EXPECT_TRUE(torch::equal(once[1], x[1]));                                  // unmasked image untouched
  EXPECT_EQ(once[0][0][5][0].item<float>(), x[0][0][5][47].item<float>());  // column 0 <- column 47
}

TEST(Augment, ZeroRotationAndUnitZoomIsIdentity) {
  const auto x = random_batch(3, 2);
  const auto y = fer::rotate_zoom(x, torch::zeros({3}), torch::ones({3}));
  EXPECT_LT((y - x).abs().max().item<float>(), 1e-5);
}

TEST(Augment, HalfTurnEqualsFlippingBothAxes) {
  // A 180-degree rotation maps pixel centres onto pixel centres: no interpolation error.
  const auto x = random_batch(2, 3);
  const auto y = fer::rotate_zoom(x, torch::full({2}, 180.0), torch::ones({2}));
  EXPECT_LT((y - x.flip({2, 3})).abs().max().item<float>(), 1e-4);
}

TEST(Augment, ZoomInEnlargesTheCentre) {
  // A bright centre square grows when zooming in (scale 1.5) and shrinks when zooming out.
  auto x = torch::zeros({1, 1, 48, 48});
  x.index_put_({0, 0, torch::indexing::Slice(16, 32), torch::indexing::Slice(16, 32)}, 1.0);
  const double area = x.sum().item<double>();
  const double zoomed_in = fer::rotate_zoom(x, torch::zeros({1}), torch::full({1}, 1.5)).sum().item<double>();
  const double zoomed_out = fer::rotate_zoom(x, torch::zeros({1}), torch::full({1}, 0.75)).sum().item<double>();
  EXPECT_NEAR(zoomed_in / area, 1.5 * 1.5, 0.15);
  EXPECT_NEAR(zoomed_out / area, 0.75 * 0.75, 0.1);
}

TEST(Augment, BrightnessAndContrastAgreeWithHandComputation) {
  auto x = torch::tensor({0.2f, 0.4f, 0.6f, 0.8f}).view({1, 1, 2, 2});
  // brightness 1.5: 0.3 0.6 0.9 1.2 (mean 0.75); contrast 0.5: 0.525 0.675 0.825 0.975.
  const auto y = fer::adjust_brightness_contrast(x, torch::full({1}, 1.5), torch::full({1}, 0.5));
  const auto expected = torch::tensor({0.525f, 0.675f, 0.825f, 0.975f}).view({1, 1, 2, 2});
  EXPECT_TRUE(torch::allclose(y, expected, 1e-6, 1e-6)) << y;
  const auto clamped = fer::adjust_brightness_contrast(x, torch::full({1}, 2.0), torch::full({1}, 1.0));
  EXPECT_LE(clamped.max().item<float>(), 1.0f);
}

TEST(Augment, KeepsShapeRangeAndIsReproducibleUnderASeed) {
  const auto x = random_batch(16, 4);
  const fer::AugmentOptions o;  // the paper's settings
  auto g1 = fer::make_cpu_generator(11);
  auto g2 = fer::make_cpu_generator(11);
  auto g3 = fer::make_cpu_generator(12);
  const auto a = fer::augment_batch(x, o, g1);
  const auto b = fer::augment_batch(x, o, g2);
  const auto c = fer::augment_batch(x, o, g3);
  EXPECT_EQ(a.sizes(), x.sizes());
  EXPECT_EQ(a.dtype(), x.dtype());
  EXPECT_GE(a.min().item<float>(), 0.0f);
  EXPECT_LE(a.max().item<float>(), 1.0f);
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_FALSE(torch::equal(a, c));
  EXPECT_GT((a - x).abs().mean().item<float>(), 1e-3);  // it does change the images
  auto g4 = fer::make_cpu_generator(11);
  EXPECT_TRUE(torch::equal(fer::augment_batch(x, no_augmentation(), g4), x));
}

TEST(Model, PaperCnnHasTheExactParameterCountAndOutputShape) {
  auto model = fer::make_model(fer::ModelOptions{});
  // convs 286,432 + BatchNorm2d 896 + fc1 4,719,616 + BatchNorm1d 2,048 + fc2 7,175
  EXPECT_EQ(fer::count_parameters(*model), 5016167);
  model->eval();
  const auto out = model->forward(random_batch(5, 5));
  EXPECT_EQ(out.sizes(), (std::vector<int64_t>{5, 7}));
}

// Khaireddin & Chen's configuration: 40x40 input, four stages, two 4096-unit layers.
fer::ModelOptions vgg_fer_options() {
  fer::ModelOptions o;
  o.architecture = "vgg_fer";
  o.input_size = 40;
  o.filters = {64, 128, 256, 512};
  o.dense_units = 4096;
  o.conv_dropout = 0;
  o.dense_dropout = 0.2;
  return o;
}

TEST(Model, VggFerHasTheHandCountedParametersAndLayerOrder) {
  auto model = fer::make_model(vgg_fer_options());
  // convs + BatchNorm2d (sum over (in, out) of 9*in*out + out + 2*out) 4,688,064;
  // fc1 2,048*4,096 + 4,096; fc2 4,096*4,096 + 4,096; fc3 4,096*7 + 7
  EXPECT_EQ(fer::count_parameters(*model), 29890759);
  model->eval();
  const auto out = model->forward(torch::rand({3, 1, 40, 40}));
  EXPECT_EQ(out.sizes(), (std::vector<int64_t>{3, 7}));
  // Conv -> BatchNorm -> ReLU (the paper CNN has ReLU before BatchNorm); no conv dropout at 0.
  const auto layers = model->sequential_layers();
  ASSERT_GE(layers.size(), 3u);
  EXPECT_EQ(layers[0]->name(), "torch::nn::Conv2dImpl");
  EXPECT_EQ(layers[1]->name(), "torch::nn::BatchNorm2dImpl");
  EXPECT_EQ(layers[2]->name(), "torch::nn::ReLUImpl");
  int dropout = 0;
  for (const auto& m : layers) dropout += m->name() == "torch::nn::DropoutImpl";
  EXPECT_EQ(dropout, 2);
  auto too_small = vgg_fer_options();
  too_small.input_size = 8;  // four 2x2 pools: 8 -> 0
  EXPECT_THROW(fer::make_model(too_small), std::invalid_argument);
}

TEST(Model, EveryLayerIsARegisteredModule) {
  auto model = fer::make_model(fer::ModelOptions{});
  int relu = 0, pool = 0, bn = 0, conv = 0, dropout = 0;
  for (const auto& m : model->children()) {
    const auto name = m->name();
    relu += name == "torch::nn::ReLUImpl";
    pool += name == "torch::nn::MaxPool2dImpl";
    bn += name == "torch::nn::BatchNorm2dImpl" || name == "torch::nn::BatchNorm1dImpl";
    conv += name == "torch::nn::Conv2dImpl";
    dropout += name == "torch::nn::DropoutImpl";
  }
  EXPECT_EQ(conv, 6);
  EXPECT_EQ(relu, 7);  // one instance per activation
  EXPECT_EQ(pool, 3);
  EXPECT_EQ(bn, 7);
  EXPECT_EQ(dropout, 4);
}

TEST(Model, RegistryRejectsUnknownAndDuplicateNames) {
  fer::ModelOptions o;
  o.architecture = "resnet9000";
  try {
    fer::make_model(o);
    ADD_FAILURE() << "unknown architecture accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("paper_cnn"), std::string::npos) << e.what();
  }
  EXPECT_THROW(fer::register_architecture("paper_cnn", nullptr), std::invalid_argument);
  fer::ModelOptions tiny;
  tiny.input_size = 7;  // three 2x2 pools leave nothing
  EXPECT_THROW(fer::make_model(tiny), std::invalid_argument);
  fer::ModelOptions crop44;
  crop44.input_size = 44;  // 44 -> 22 -> 11 -> 5, as PyTorch's pooling rounds down
  EXPECT_EQ(fer::make_model(crop44)->forward(torch::zeros({2, 1, 44, 44})).sizes(), (std::vector<int64_t>{2, 7}));
}

TEST(Checkpoint, SaveLoadGivesIdenticalOutputsWithoutAConfig) {
  fer_test::TempDir dir;
  torch::manual_seed(3);
  fer::ModelOptions o;
  o.filters = {8, 16, 32};
  o.dense_units = 64;
  auto model = fer::make_model(o);
  // Train-mode passes move the BatchNorm running statistics away from their defaults.
  model->train();
  for (int i = 0; i < 3; ++i) model->forward(random_batch(8, 10 + i));
  model->eval();
  fer::CheckpointMeta meta{o, {"a", "b", "c", "d", "e", "f", "g"}, {{"epoch", 4}}};
  fer::save_checkpoint(dir / "m.pt", *model, meta, {{"blob", std::string("x\0y", 3)}});
  EXPECT_FALSE(fer_test::fs::exists(dir / "m.pt.tmp"));

  const auto loaded = fer::load_checkpoint(dir / "m.pt", torch::kCPU, {"blob", "absent"});
  EXPECT_EQ(loaded.meta.model.filters, o.filters);
  EXPECT_EQ(loaded.meta.class_names[6], "g");
  EXPECT_EQ(loaded.meta.info["epoch"], 4);
  EXPECT_EQ(loaded.blobs.at("blob"), std::string("x\0y", 3));
  EXPECT_EQ(loaded.blobs.count("absent"), 0u);
  const auto x = random_batch(6, 20);
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::equal(model->forward(x), loaded.model->forward(x)));
}

// The face size travels in the checkpoint: read back alone (no weights) as
// load_checkpoint reads it; a record older than image_size reads as 48; an
// input larger than the faces it crops is refused.
TEST(Checkpoint, StoresTheImageSizeAndOlderRecordsReadAs48) {
  fer_test::TempDir dir;
  fer::ModelOptions o;
  o.filters = {4, 8};
  o.dense_units = 8;
  o.image_size = 64;
  o.input_size = 56;
  const fer::CheckpointMeta meta{o, {"calm", "tired"}, {}};
  fer::save_checkpoint(dir / "m.pt", *fer::make_model(o), meta);
  const auto read = fer::read_checkpoint_meta(dir / "m.pt");
  EXPECT_EQ(read.model.image_size, 64);
  EXPECT_EQ(read.model.input_size, 56);
  EXPECT_EQ(read.class_names, meta.class_names);
  EXPECT_EQ(read.model.to_json(), fer::load_checkpoint(dir / "m.pt", torch::kCPU).meta.model.to_json());
  EXPECT_EQ(meta.to_json().at("preprocessing").at("height"), 64);

  auto older = o.to_json();
  older.erase("image_size");
  older["input_size"] = 40;
  EXPECT_EQ(fer::ModelOptions::from_json(older).image_size, 48);
  older["input_size"] = 50;
  EXPECT_THROW(fer::ModelOptions::from_json(older), std::runtime_error);
  EXPECT_THROW(fer::read_checkpoint_meta(dir / "absent.pt"), std::runtime_error);
}

// A full disk (here: a file-size limit) is an error naming the file and the
// cause, never an abort; the temporary file goes, the last good checkpoint stays.
TEST(Checkpoint, AFailedWriteNamesTheCauseAndKeepsTheLastGoodCheckpoint) {
  fer_test::TempDir dir;
  fer::ModelOptions o;
  o.filters = {8, 16, 32};
  o.dense_units = 64;
  auto model = fer::make_model(o);
  fer::CheckpointMeta meta{o, {"a", "b", "c", "d", "e", "f", "g"}, {}};
  const std::string path = dir / "last.pt";
  fer::save_checkpoint(path, *model, meta, {});
  const auto good = fer_test::read_text(path);
  ASSERT_GT(good.size(), 64u * 1024);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : model->parameters()) p.add_(1.0);
  }
  {
    fer_test::FileSizeLimit full(64 * 1024);
    try {
      fer::save_checkpoint(path, *model, meta, {});
      ADD_FAILURE() << "a write past the limit succeeded";
    } catch (const std::runtime_error& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find(path + ".tmp"), std::string::npos) << message;
      EXPECT_NE(message.find(std::strerror(EFBIG)), std::string::npos) << message;
    }
    EXPECT_THROW(fer::write_text_atomic(dir / "metrics.json", std::string(128 * 1024, 'x')), std::runtime_error);
  }
  EXPECT_FALSE(fer_test::fs::exists(path + ".tmp"));
  EXPECT_FALSE(fer_test::fs::exists(dir / "metrics.json.tmp"));
  EXPECT_FALSE(fer_test::fs::exists(dir / "metrics.json"));
  EXPECT_EQ(fer_test::read_text(path), good);
  EXPECT_NO_THROW(fer::load_checkpoint(path, torch::kCPU));
  fer::save_checkpoint(path, *model, meta, {});  // space again: the write goes through
  EXPECT_NE(fer_test::read_text(path), good);
}

TEST(Checkpoint, BadFilesGiveErrorsNamingThem) {
  fer_test::TempDir dir;
  fer_test::write_file(dir / "junk.pt", "not a zip archive");
  try {
    fer::load_checkpoint(dir / "junk.pt", torch::kCPU);
    ADD_FAILURE() << "junk accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("junk.pt"), std::string::npos) << e.what();
  }
  EXPECT_THROW(fer::load_checkpoint(dir / "missing.pt", torch::kCPU), std::runtime_error);
}

TEST(Checkpoint, LoadsInPythonPyTorchWithJitLoad) {
  // Debian's python3-torch, when installed, is the Python side users have.
  if (std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "Python PyTorch (python3-torch) not installed; skipping the Python interop check";
  fer_test::TempDir dir;
  auto model = fer::make_model(fer::ModelOptions{});
  fer::save_checkpoint(dir / "m.pt", *model, {fer::ModelOptions{}, {"a", "b", "c", "d", "e", "f", "g"}, {}});
  const std::string script = dir / "check.py";
  fer_test::write_file(script,
                       "import sys, json, torch\n"
                       "m = torch.jit.load(sys.argv[1])\n"
                       "sd = m.state_dict()\n"
                       "n = sum(v.numel() for k, v in sd.items() if not ('running' in k or 'num_batches' in k))\n"
                       "meta = json.loads(m.libfer_meta)\n"
                       "assert n == 5016167, n\n"
                       "assert sd['fc2.weight'].shape == (7, 1024)\n"
                       "assert meta['model']['architecture'] == 'paper_cnn'\n");
  EXPECT_EQ(std::system(("/usr/bin/python3 " + script + " " + (dir / "m.pt")).c_str()), 0);
}

TEST(Inference, ChunkedPredictionEqualsOneForwardPassAndTtaIsMirrorAverage) {
  torch::manual_seed(5);
  auto model = fer::make_model(fer::ModelOptions{});
  model->eval();
  auto gen = fer::make_cpu_generator(6);
  const auto images = torch::randint(0, 256, {70, 48, 48}, gen, torch::kUInt8);
  fer::PredictOptions chunked;
  chunked.batch_size = 16;
  const auto probs = fer::predict_probabilities(*model, images, torch::kCPU, chunked);
  torch::NoGradGuard no_grad;
  const auto x = images.unsqueeze(1).to(torch::kFloat32) / 255.0;
  const auto reference = torch::softmax(model->forward(x), 1);  // the plain path: one pass
  EXPECT_TRUE(torch::allclose(probs, reference, 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(probs.sum(1), torch::ones({70}), 1e-5, 1e-5));

  chunked.tta = fer::Tta::flip;
  const auto tta = fer::predict_probabilities(*model, images, torch::kCPU, chunked);
  const auto mirrored = torch::softmax(model->forward(x.flip({3})), 1);
  EXPECT_TRUE(torch::allclose(tta, (reference + mirrored) / 2, 1e-5, 1e-6));
}

// The accuracy guard computes each checkpoint's views once and takes every TTA
// mode's probabilities from them: that must be predict_probabilities bit for bit.
TEST(Inference, ViewProbabilitiesAveragedArePredictProbabilitiesBitForBit) {
  torch::manual_seed(7);
  auto gen = fer::make_cpu_generator(8);
  const auto images = torch::randint(0, 256, {11, 48, 48}, gen, torch::kUInt8);
  for (const int64_t input_size : {48, 40}) {
    SCOPED_TRACE("input size " + std::to_string(input_size));
    fer::ModelOptions small;
    small.filters = {4, 8};
    small.dense_units = 16;
    small.input_size = input_size;
    auto model = fer::make_model(small);
    fer::PredictOptions o;
    o.batch_size = 4;  // several batches, the last one short
    o.input_size = input_size;
    std::map<fer::Tta, torch::Tensor> predicted;
    for (const auto tta : {fer::Tta::none, fer::Tta::flip, fer::Tta::tencrop}) {
      o.tta = tta;
      predicted[tta] = fer::predict_probabilities(*model, images, torch::kCPU, o);
      const auto views = fer::predict_view_probabilities(*model, images, torch::kCPU, o);
      ASSERT_EQ(views.size(), fer::tta_views(torch::zeros({1, 1, 48, 48}), tta, input_size).size());
      EXPECT_TRUE(fer::mean_probabilities(views).equal(predicted[tta])) << fer::tta_name(tta);
    }
    o.tta = fer::Tta::tencrop;
    const auto ten = fer::predict_view_probabilities(*model, images, torch::kCPU, o);
    EXPECT_TRUE(ten[8].equal(predicted[fer::Tta::none]));  // the centre crop ...
    EXPECT_TRUE(fer::mean_probabilities({ten[8], ten[9]}).equal(predicted[fer::Tta::flip]));  // ... and its mirror
  }
}

TEST(Inference, DeviceSpecsResolve) {
  EXPECT_EQ(fer::resolve_device("cpu"), torch::Device(torch::kCPU));
  EXPECT_THROW(fer::resolve_device("tpu"), std::runtime_error);
  if (!torch::cuda::is_available()) {
    EXPECT_EQ(fer::resolve_device("auto"), torch::Device(torch::kCPU));
    EXPECT_THROW(fer::resolve_device("cuda:0"), std::runtime_error);
  }
}
