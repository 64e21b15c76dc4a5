// The training engine: schedules, losses and optimizer steps against hand
// computations, the batch regularisers, mixed precision, TTA and ensembles,
// the divergence guard, and exact resume with every new hook on.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>

#include "fer/common/precision.h"
#include "fer/data/augment.h"
#include "fer/engine/engine.h"
#include "fer/engine/hooks.h"
#include "fer/engine/optim.h"
#include "fer/inference/inference.h"
#include "fer/models/checkpoint.h"
#include "fer/report/evaluate/evaluate.h"
#include "fer/models/model_store.h"
#include "fer/report/plot.h"
#include "fer/report/train/train.h"
#include "test_util.h"

namespace {

fer::ScheduleOptions schedule(fer::Schedule kind, double lr, int epochs, int warmup) {
  fer::ScheduleOptions o;
  o.kind = kind;
  o.lr = lr;
  o.epochs = epochs;
  o.warmup_epochs = warmup;
  o.min_lr = 0.0;
  return o;
}

// Image i is the constant (i + 1) / 100, label i: what a mixed image holds tells where it came from.
torch::Tensor constant_images(int64_t n, int64_t side = 48) {
  return (torch::arange(1, n + 1, torch::kFloat32) / 100.0).view({n, 1, 1, 1}).expand({n, 1, side, side}).contiguous();
}

fer::Config tiny_config(const std::string& csv) { return fer_test::tiny_config(csv, 5); }
using fer_test::SyntheticData;

// Every regulariser and hook of the engine on at once.
fer::Config full_recipe(const std::string& csv) {
  auto c = tiny_config(csv);
  c.train.optimizer = "sgd";
  c.train.lr = 0.02;
  c.train.nesterov = true;
  c.train.weight_decay = 1e-4;
  c.train.schedule = "cosine";
  c.train.warmup_epochs = 1;
  c.train.label_smoothing = 0.1;
  c.train.ema_decay = 0.9;
  c.train.early_stopping_monitor = "val_accuracy";
  c.augment.crop_size = 40;
  c.augment.crop_padding = 2;
  c.augment.erase_prob = 0.5;
  c.augment.mixup_alpha = 0.4;
  c.augment.cutmix_alpha = 1.0;
  return c;
}

}  // namespace

TEST(Schedule, CosineWithWarmUpFollowsPyTorchsFormula) {
  const auto o = schedule(fer::Schedule::cosine, 0.1, 10, 0);
  EXPECT_DOUBLE_EQ(fer::scheduled_lr(o, 0), 0.1);
  EXPECT_NEAR(fer::scheduled_lr(o, 3), 0.05 * (1 + std::cos(M_PI * 0.3)), 1e-15);  // 0.0793893
  EXPECT_NEAR(fer::scheduled_lr(o, 5), 0.05, 1e-15);
  EXPECT_NEAR(fer::scheduled_lr(o, 10), 0.0, 1e-15);
  EXPECT_NEAR(fer::scheduled_lr(o, 12), 0.0, 1e-15);  // stays at min_lr past the end
  const auto w = schedule(fer::Schedule::cosine, 0.1, 12, 2);
  EXPECT_NEAR(fer::scheduled_lr(w, 0), 0.1 / 3, 1e-15);
  EXPECT_NEAR(fer::scheduled_lr(w, 1), 0.2 / 3, 1e-15);
  EXPECT_DOUBLE_EQ(fer::scheduled_lr(w, 2), 0.1);
  EXPECT_NEAR(fer::scheduled_lr(w, 7), 0.05, 1e-15);  // half way through the 10 cosine epochs
}

TEST(Schedule, StepDecaysEveryStepSizeEpochs) {
  auto o = schedule(fer::Schedule::step, 0.1, 100, 0);
  o.step_size = 3;
  o.step_gamma = 0.5;
  for (int e : {0, 1, 2}) EXPECT_DOUBLE_EQ(fer::scheduled_lr(o, e), 0.1);
  EXPECT_DOUBLE_EQ(fer::scheduled_lr(o, 3), 0.05);
  EXPECT_DOUBLE_EQ(fer::scheduled_lr(o, 6), 0.025);
  EXPECT_DOUBLE_EQ(fer::scheduled_lr(o, 8), 0.025);
  o.warmup_epochs = 1;
  EXPECT_DOUBLE_EQ(fer::scheduled_lr(o, 0), 0.05);
  EXPECT_DOUBLE_EQ(fer::scheduled_lr(o, 3), 0.1);
  EXPECT_DOUBLE_EQ(fer::scheduled_lr(o, 4), 0.05);
}

TEST(Schedule, PlateauDropsAfterMoreThanPatienceFlatEpochs) {
  auto o = schedule(fer::Schedule::plateau, 1.0, 100, 0);
  o.plateau_patience = 2;
  o.plateau_factor = 0.5;
  o.plateau_min_delta = 0.01;
  o.min_lr = 0.3;
  fer::PlateauRule rule(o);
  double lr = 1.0;
  lr = rule.step(0.50, lr);  // first value: an improvement over "none yet"
  EXPECT_EQ(lr, 1.0);
  lr = rule.step(0.505, lr);  // +0.005 < min_delta: flat 1
  lr = rule.step(0.50, lr);   // flat 2
  EXPECT_EQ(lr, 1.0);
  lr = rule.step(0.50, lr);   // flat 3 > patience: drop
  EXPECT_EQ(lr, 0.5);
  lr = rule.step(0.60, lr);   // improvement
  for (int i = 0; i < 3; ++i) lr = rule.step(0.60, lr);
  EXPECT_EQ(lr, 0.3);         // 0.25 clipped to min_lr
}

TEST(Loss, LabelSmoothingMatchesAHandValue) {
  const auto logits = torch::tensor({{1.0f, 2.0f, 3.0f}});
  const auto target = torch::tensor({int64_t{2}});
  const double lse = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0));
  const double log_p[3] = {1 - lse, 2 - lse, 3 - lse};
  const double s = 0.1;
  // target distribution (1 - s) one-hot + s / 3
  const double expected = -((s / 3) * log_p[0] + (s / 3) * log_p[1] + (1 - s + s / 3) * log_p[2]);
  EXPECT_NEAR(fer::classification_loss(logits, target, s).item<double>(), expected, 1e-6);  // 0.5076059
  EXPECT_NEAR(fer::classification_loss(logits, target, 0.0).item<double>(), -log_p[2], 1e-6);
}

TEST(Optimizer, SgdNesterovStepsMatchAHandComputation) {
  auto w = torch::tensor({1.0, -2.0}, torch::kFloat64).requires_grad_(true);
  fer::OptimizerOptions o;
  o.name = "sgd";
  o.lr = 0.1;
  o.momentum = 0.9;
  o.nesterov = true;
  o.weight_decay = 0.01;
  auto optimizer = fer::make_optimizer({w}, o);
  double hand[2] = {1.0, -2.0}, buf[2] = {0, 0};
  for (int step = 0; step < 2; ++step) {
    optimizer->zero_grad();
    (w * w).sum().backward();  // gradient 2w
    optimizer->step();
    for (int i = 0; i < 2; ++i) {
      const double g = 2 * hand[i] + 0.01 * hand[i];       // weight decay in the gradient
      buf[i] = step == 0 ? g : 0.9 * buf[i] + g;          // momentum buffer (no dampening)
      hand[i] -= 0.1 * (g + 0.9 * buf[i]);                // Nesterov: look ahead along the buffer
    }
    EXPECT_NEAR(w[0].item<double>(), hand[0], 1e-12) << "step " << step;
    EXPECT_NEAR(w[1].item<double>(), hand[1], 1e-12) << "step " << step;
  }
  EXPECT_NEAR(fer::optimizer_lr(*optimizer), 0.1, 1e-15);
  fer::set_optimizer_lr(*optimizer, 0.05);
  EXPECT_NEAR(fer::optimizer_lr(*optimizer), 0.05, 1e-15);
}

TEST(Ema, DecayWarmsUpThenHoldsAtTheConfiguredValue) {
  EXPECT_DOUBLE_EQ(fer::ema_decay_at(0.999, 0), 1.0 / 10);  // the first update takes 90% of the weights
  EXPECT_DOUBLE_EQ(fer::ema_decay_at(0.999, 90), 91.0 / 100);
  EXPECT_DOUBLE_EQ(fer::ema_decay_at(0.9, 1000), 0.9);
  EXPECT_DOUBLE_EQ(fer::ema_decay_at(0.999, 100000), 0.999);
  for (std::int64_t t = 97; t < 20000; t += 97) EXPECT_GE(fer::ema_decay_at(0.999, t), fer::ema_decay_at(0.999, t - 97));
}

TEST(Ema, AveragesParametersAndBatchNormStatisticsAndCopiesCounters) {
  torch::nn::BatchNorm2d average(2), model(2);  // average: weight 1, bias 0, mean 0, var 1, count 0
  {
    torch::NoGradGuard no_grad;
    model->weight.fill_(3);
    model->bias.fill_(2);
    model->running_mean.fill_(4);
    model->running_var.fill_(5);
    model->num_batches_tracked.fill_(7);
  }
  fer::ema_update(*average, *model, 0.75);
  EXPECT_TRUE(torch::allclose(average->weight, torch::full({2}, 0.75 * 1 + 0.25 * 3)));
  EXPECT_TRUE(torch::allclose(average->bias, torch::full({2}, 0.25 * 2)));
  EXPECT_TRUE(torch::allclose(average->running_mean, torch::full({2}, 0.25 * 4)));
  EXPECT_TRUE(torch::allclose(average->running_var, torch::full({2}, 0.75 * 1 + 0.25 * 5)));
  EXPECT_EQ(average->num_batches_tracked.item<int64_t>(), 7);
  torch::nn::Linear other(2, 2);  // has a weight and a bias, of other shapes
  try {
    fer::ema_update(*other, *model, 0.5);
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("weight"), std::string::npos) << e.what();
  }
}

TEST(Regularisers, MixupMixesImagesAndLabelsInTheDrawnProportion) {
  const int64_t n = 16;
  const auto x = constant_images(n);
  const auto labels = torch::arange(n, torch::kInt64);
  fer::MixOptions o;
  o.mixup_alpha = 0.4;
  auto gen = fer::make_cpu_generator(3);
  for (int draw = 0; draw < 5; ++draw) {
    const auto m = fer::mix_batch(x, labels, o, gen);
    ASSERT_GE(m.lam, 0.0);
    ASSERT_LE(m.lam, 1.0);
    EXPECT_TRUE(m.target_a.equal(labels));
    // Each mixed image is lam of its own image and 1 - lam of the image its second label names.
    const auto expected = x * m.lam + x.index_select(0, m.target_b) * (1 - m.lam);
    EXPECT_TRUE(torch::allclose(m.x, expected, 1e-6, 1e-7));
    EXPECT_TRUE(std::get<0>(torch::sort(m.target_b)).equal(labels)) << "the partner labels are a permutation";
  }
}

TEST(Regularisers, CutMixLambdaIsTheShareOfPixelsKept) {
  const int64_t n = 8;
  const auto x = constant_images(n);
  const auto labels = torch::arange(n, torch::kInt64);
  fer::MixOptions o;
  o.cutmix_alpha = 1.0;
  auto gen = fer::make_cpu_generator(4);
  for (int draw = 0; draw < 5; ++draw) {
    const auto m = fer::mix_batch(x, labels, o, gen);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t b = m.target_b[i].item<int64_t>();
      if (b == i) continue;  // paired with itself: nothing tells the pixels apart
      const double kept = m.x[i].eq(x[i]).to(torch::kFloat64).mean().item<double>();
      const double pasted = m.x[i].eq(x[b]).to(torch::kFloat64).mean().item<double>();
      EXPECT_NEAR(kept, m.lam, 1e-9) << "draw " << draw << " image " << i;
      EXPECT_NEAR(pasted, 1 - m.lam, 1e-9);
    }
  }
}

TEST(Regularisers, RandomCropIsAWindowOfThePaddedImage) {
  const auto x = torch::arange(2 * 48 * 48, torch::kFloat32).view({2, 1, 48, 48});
  auto gen = fer::make_cpu_generator(8);
  const auto crops = fer::random_crop(x, 40, 4, gen);
  ASSERT_EQ(crops.sizes(), (std::vector<int64_t>{2, 1, 40, 40}));
  namespace F = torch::nn::functional;
  const auto padded = F::pad(x, F::PadFuncOptions({4, 4, 4, 4}).mode(torch::kReplicate));
  for (int64_t i = 0; i < 2; ++i) {
    bool found = false;  // the crop equals exactly one window of the padded image
    for (int64_t top = 0; top <= 16 && !found; ++top)
      for (int64_t left = 0; left <= 16 && !found; ++left)
        found = padded[i].narrow(1, top, 40).narrow(2, left, 40).equal(crops[i]);
    EXPECT_TRUE(found) << "image " << i;
  }
  // The centre crop of 48 -> 40 starts at (4, 4).
  EXPECT_TRUE(fer::center_crop(x, 40).equal(x.narrow(2, 4, 40).narrow(3, 4, 40)));
}

TEST(Regularisers, RandomErasingBlanksOneBoxOfTheStatedSize) {
  const auto x = torch::full({20, 1, 48, 48}, 0.5f);
  auto gen = fer::make_cpu_generator(9);
  EXPECT_TRUE(fer::random_erase(x, 0.0, gen).equal(x));
  const auto erased = fer::random_erase(x, 1.0, gen);
  for (int64_t i = 0; i < 20; ++i) {
    const auto zero = erased[i][0].eq(0);
    const double share = zero.to(torch::kFloat64).mean().item<double>();
    EXPECT_GE(share, 0.015) << "image " << i;  // 2% of the area, rounded sides
    EXPECT_LE(share, 0.35) << "image " << i;
    const auto rows = zero.any(1).nonzero(), cols = zero.any(0).nonzero();
    const auto h = rows.max().item<int64_t>() - rows.min().item<int64_t>() + 1;
    const auto w = cols.max().item<int64_t>() - cols.min().item<int64_t>() + 1;
    EXPECT_EQ(zero.sum().item<int64_t>(), h * w) << "the erased pixels form one box";
  }
}

TEST(Precision, GradScalerSkipsOverflowingStepsAndAdaptsItsScale) {
  auto w = torch::tensor({1.0f}).requires_grad_(true);
  torch::optim::SGD sgd({w}, torch::optim::SGDOptions(0.1));
  fer::GradScaler scaler(true, 1024.0, 2);
  // A clean step: the gradient is unscaled before the step.
  sgd.zero_grad();
  scaler.scale_loss((w * 3).sum()).backward();
  EXPECT_TRUE(scaler.unscale(sgd));
  EXPECT_NEAR(w.grad().item<float>(), 3.0f, 1e-6);
  EXPECT_TRUE(scaler.step(sgd));
  scaler.update();
  EXPECT_NEAR(w.item<float>(), 0.7f, 1e-6);
  // An overflow: no step, the scale halves.
  sgd.zero_grad();
  scaler.scale_loss((w * std::numeric_limits<float>::infinity()).sum()).backward();
  EXPECT_FALSE(scaler.unscale(sgd));
  EXPECT_FALSE(scaler.step(sgd));
  scaler.update();
  EXPECT_NEAR(w.item<float>(), 0.7f, 1e-6);
  EXPECT_EQ(scaler.scale(), 512.0);
  // growth_interval clean steps double it.
  for (int i = 0; i < 2; ++i) {
    sgd.zero_grad();
    scaler.scale_loss((w * 1).sum()).backward();
    scaler.unscale(sgd);
    scaler.step(sgd);
    scaler.update();
  }
  EXPECT_EQ(scaler.scale(), 1024.0);
  fer::GradScaler off(false);
  EXPECT_EQ(off.scale(), 1.0);
}

TEST(Precision, UnsupportedChoicesAreClearErrors) {
  EXPECT_THROW(fer::parse_precision("fp8"), std::invalid_argument);
  EXPECT_THROW(fer::check_precision_supported(fer::Precision::fp16, torch::kCPU), std::runtime_error);
  EXPECT_NO_THROW(fer::check_precision_supported(fer::Precision::fp32, torch::kCPU));
  if (fer::cpu_has_native_bf16())
    EXPECT_NO_THROW(fer::check_precision_supported(fer::Precision::bf16, torch::kCPU));
  else
    EXPECT_THROW(fer::check_precision_supported(fer::Precision::bf16, torch::kCPU), std::runtime_error);
}

// "auto" never picks a precision that check_precision_supported would refuse.
TEST(Precision, AutoIsBf16ExactlyWhereTheCpuRunsItNatively) {
  const auto chosen = fer::resolve_inference_precision("auto", torch::kCPU);
  EXPECT_EQ(chosen, fer::cpu_has_native_bf16() ? fer::Precision::bf16 : fer::Precision::fp32);
  EXPECT_NO_THROW(fer::check_precision_supported(chosen, torch::kCPU));
  EXPECT_EQ(fer::resolve_inference_precision("fp32", torch::kCPU), fer::Precision::fp32);
  EXPECT_EQ(fer::resolve_inference_precision("bf16", torch::kCPU), fer::Precision::bf16);
  EXPECT_THROW(fer::resolve_inference_precision("fastest", torch::kCPU), std::invalid_argument);
}

TEST(Tta, TenCropOfAConstantImageEqualsASinglePass) {
  torch::manual_seed(1);
  fer::Classifier model = fer::make_model(fer::ModelOptions{});
  const auto images = torch::full({3, 48, 48}, 117, torch::kUInt8);
  fer::PredictOptions plain, ten;
  ten.tta = fer::Tta::tencrop;
  const auto a = fer::predict_probabilities(*model, images, torch::kCPU, plain);
  const auto b = fer::predict_probabilities(*model, images, torch::kCPU, ten);
  EXPECT_TRUE(torch::allclose(a, b, 1e-5, 1e-6));
}

TEST(Tta, TenCropsAreTheCornersAndCentreWithMirrors) {
  const auto x = torch::arange(48 * 48, torch::kFloat32).view({1, 1, 48, 48});
  const auto views = fer::tta_views(x, fer::Tta::tencrop, 40);
  ASSERT_EQ(views.size(), 10u);
  EXPECT_TRUE(views[0].equal(x.narrow(2, 0, 40).narrow(3, 0, 40)));
  EXPECT_TRUE(views[1].equal(views[0].flip({3})));
  EXPECT_TRUE(views[6].equal(x.narrow(2, 8, 40).narrow(3, 8, 40)));   // bottom right
  EXPECT_TRUE(views[8].equal(x.narrow(2, 4, 40).narrow(3, 4, 40)));   // centre
  // A full-size model takes its crops from the image padded by 4: the top-left one starts outside it.
  const auto full = fer::tta_views(x, fer::Tta::tencrop, 48);
  EXPECT_TRUE(full[8].equal(x));                                       // the centre of the padded image is the image
  EXPECT_FLOAT_EQ(full[0][0][0][0][0].item<float>(), 0.0f);            // edge replication of pixel (0, 0)
}

TEST(Ensemble, OfOneModelEqualsThatModelAndOfTwoIsTheMean) {
  torch::manual_seed(2);
  fer::ModelOptions small;
  small.filters = {4, 8, 8};
  small.dense_units = 16;
  fer::LoadedCheckpoint a{fer::make_model(small), {}, {}}, b{fer::make_model(small), {}, {}};
  a.meta.model = b.meta.model = small;
  auto gen = fer::make_cpu_generator(5);
  const auto images = torch::randint(0, 256, {9, 48, 48}, gen, torch::kUInt8);
  const auto pa = fer::predict_probabilities(*a.model, images, torch::kCPU);
  const auto pb = fer::predict_probabilities(*b.model, images, torch::kCPU);
  EXPECT_TRUE(fer::predict_ensemble_probabilities({a}, images, torch::kCPU).equal(pa));
  EXPECT_TRUE(torch::allclose(fer::predict_ensemble_probabilities({a, b}, images, torch::kCPU), (pa + pb) / 2, 1e-6, 1e-7));
  // Bit for bit the mean of the members' own probabilities: the accuracy guard checks ensembles that way.
  EXPECT_TRUE(fer::predict_ensemble_probabilities({a, b}, images, torch::kCPU).equal(fer::mean_probabilities({pa, pb})));
}

TEST(Ensemble, MeanProbabilitiesIsTheHandComputedMeanAndRefusesMismatchedShapes) {
  const auto p = torch::tensor({0.25f, 0.75f, 1.0f, 0.0f}).view({2, 2});
  const auto q = torch::tensor({0.75f, 0.25f, 0.5f, 0.5f}).view({2, 2});
  const auto r = torch::tensor({0.5f, 0.5f, 0.0f, 1.0f}).view({2, 2});
  EXPECT_TRUE(fer::mean_probabilities({p}).equal(p));
  EXPECT_TRUE(fer::mean_probabilities({p, q}).equal(torch::tensor({0.5f, 0.5f, 0.75f, 0.25f}).view({2, 2})));
  EXPECT_TRUE(fer::mean_probabilities({p, q, r}).equal(torch::tensor({0.5f, 0.5f, 0.5f, 0.5f}).view({2, 2})));
  EXPECT_THROW(fer::mean_probabilities({}), std::invalid_argument);
  EXPECT_THROW(fer::mean_probabilities({p, torch::zeros({2, 3})}), std::invalid_argument);
}

// A shipped ensemble's manifest: members relative to its folder, in order; each
// malformed manifest named in the error with what is wrong.
TEST(Ensemble, ManifestMembersResolveBesideItAndEachFaultIsNamed) {
  fer_test::TempDir dir;
  fer_test::fs::create_directories(dir / "a");
  fer_test::fs::create_directories(dir / "b");
  fer_test::fs::create_directories(dir / "ens");
  fer_test::write_file(dir / "a/best.pt", "x");
  fer_test::write_file(dir / "b/best.pt", "x");
  const std::string manifest = dir / "ens/ensemble.json";
  fer_test::write_file(manifest, R"({"members": ["../b/best.pt", "../a/best.pt"]})");
  EXPECT_EQ(fer::read_ensemble_members(manifest),
            (std::vector<std::string>{dir / "b/best.pt", dir / "a/best.pt"}));

  const auto expect_error = [&](const std::string& text, const std::string& says) {
    fer_test::write_file(manifest, text);
    try {
      fer::read_ensemble_members(manifest);
      ADD_FAILURE() << "accepted " << text;
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(manifest), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
    }
  };
  expect_error(R"({"members": ["../a/best.pt"]})", "at least two");
  expect_error(R"({"member": ["../a/best.pt", "../b/best.pt"]})", "\"members\"");
  expect_error(R"({"members": ["../a/best.pt", "../c/best.pt"]})", "'../c/best.pt'");
  expect_error(R"({"members": ["../a/best.pt", "../a/../a/best.pt"]})", "listed twice");
  expect_error(R"({"members": ["../a/best.pt", 3]})", "non-string");
  expect_error(R"({"members": [)", "not valid JSON");
}

TEST(Engine, DivergenceGuardTripsOnAPlantedNanAndKeepsTheLastGoodCheckpoint) {
  SyntheticData data;
  fer_test::TempDir runs;
  auto config = tiny_config(data.csv);
  config.train.epochs = 1;
  fer::train({config, runs / "run", false});
  const auto before = fer::load_checkpoint(runs / "run/last.pt", torch::kCPU);
  const auto bytes_before = fer_test::fs::file_size(runs / "run/last.pt");

  // A hook plants a NaN in one weight during epoch 2: the next step's loss is NaN.
  struct PlantNan : fer::HookBase {
    void after_step(fer::TrainerBase& t) override {
      if (t.progress().epoch == 2 && t.progress().step == 2) {
        torch::NoGradGuard no_grad;
        static_cast<fer::SupervisedTrainer&>(t).model()->parameters()[0].view(-1)[0] = NAN;
      }
    }
  };
  const auto splits = fer::load_configured_splits(config);
  auto model = before.model;
  model->train();
  fer::StepOptions step;
  step.batch_size = config.train.batch_size;
  fer::SupervisedTrainer trainer(model, fer::make_optimizer(model->parameters(), {}),
                                 {fer::images_tensor(splits.train), fer::labels_tensor(splits.train)}, step, torch::kCPU);
  trainer.progress().epoch = 1;
  trainer.progress().max_epochs = 3;
  trainer.register_hook(std::make_shared<fer::DivergenceGuard>());
  trainer.register_hook(std::make_shared<PlantNan>());
  trainer.register_hook(std::make_shared<fer::CheckpointHook>(runs / "run", before.meta));
  try {
    trainer.train();
    FAIL() << "the planted NaN was not caught";
  } catch (const fer::DivergenceError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("epoch 2, batch 4/"), std::string::npos) << what;
    EXPECT_NE(what.find("lr 0.001"), std::string::npos) << what;
    EXPECT_NE(what.find("last.pt (epoch 1)"), std::string::npos) << what;
  }
  EXPECT_EQ(fer_test::fs::file_size(runs / "run/last.pt"), bytes_before);
  const auto after = fer::load_checkpoint(runs / "run/last.pt", torch::kCPU);
  EXPECT_EQ(after.meta.info.at("epoch"), 1);
  for (const auto& p : after.model->parameters()) EXPECT_TRUE(torch::isfinite(p).all().item<bool>());
}

TEST(Engine, AHugeLearningRateStopsInTheFirstEpochWithAClearError) {
  SyntheticData data;
  fer_test::TempDir runs;
  auto config = tiny_config(data.csv);
  config.train.lr = 1e12;
  try {
    fer::train({config, runs / "run", false});
    FAIL() << "lr 1e12 trained without an error";
  } catch (const fer::DivergenceError& e) {
    EXPECT_NE(std::string(e.what()).find("diverged at epoch 1, batch"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fer_test::fs::exists(runs / "run/last.pt"));
}

TEST(Engine, ResumeEqualsAnUninterruptedRunWithEveryHookOn) {
  SyntheticData data;
  fer_test::TempDir runs;
  auto config = full_recipe(data.csv);
  config.train.epochs = 2;
  fer::train({config, runs / "resumed", false});
  config.train.epochs = 3;
  fer::train({config, runs / "resumed", true});
  fer::train({config, runs / "straight", false});
  const auto a = fer::read_history_csv(runs / "resumed/history.csv");
  const auto b = fer::read_history_csv(runs / "straight/history.csv");
  ASSERT_EQ(a.size(), 3u);
  ASSERT_EQ(b.size(), 3u);
  fer_test::expect_same_history(a, b);
  // Cosine with one warm-up epoch over 3: lr/2, then the cosine from its peak.
  EXPECT_NEAR(b[0].lr, 0.01, 1e-9);
  EXPECT_NEAR(b[1].lr, 0.02, 1e-9);
  // The model's input follows the crop.
  EXPECT_EQ(fer::load_checkpoint(runs / "straight/best.pt", torch::kCPU).meta.model.input_size, 40);
}

TEST(Engine, Bf16RunLearnsBeyondChance) {
  if (!fer::cpu_has_native_bf16()) GTEST_SKIP() << "this CPU has no native bf16: the bf16 run did NOT run";
  SyntheticData data(60);
  fer_test::TempDir runs;
  auto config = tiny_config(data.csv);
  config.train.epochs = 4;
  config.train.precision = "bf16";
  config.eval.precision = "bf16";
  const auto summary = fer::train({config, runs / "bf16", false});
  const auto history = fer::read_history_csv(runs / "bf16/history.csv");
  EXPECT_LT(history.back().train_loss, history.front().train_loss);
  EXPECT_GT(summary.final_val_accuracy, 0.5);  // 7 classes: chance is 0.14
}

TEST(Regularisers, MixWeightsFollowTheirBetaDistribution) {
  // Beta(a, a) has mean 1/2 and variance 1 / (4 (2a + 1)); 4,000 draws put the
  // sample mean within 0.025 (over 4 standard errors) and the variance within 15%
  // (over 5) for any correct sampler; the seeded stream only fixes which draws.
  const auto x = constant_images(4, 8);
  const auto labels = torch::arange(4, torch::kInt64);
  for (double alpha : {0.4, 1.0, 4.0}) {
    fer::MixOptions o;
    o.mixup_alpha = alpha;
    auto gen = fer::make_cpu_generator(11);
    const int n = 4000;
    double sum = 0, sum_sq = 0;
    for (int i = 0; i < n; ++i) {
      const double lam = fer::mix_batch(x, labels, o, gen).lam;
      sum += lam;
      sum_sq += lam * lam;
    }
    const double mean = sum / n, variance = sum_sq / n - mean * mean;
    const double expected_variance = 1.0 / (4 * (2 * alpha + 1));
    EXPECT_NEAR(mean, 0.5, 0.025) << "alpha " << alpha;
    EXPECT_NEAR(variance / expected_variance, 1.0, 0.15) << "alpha " << alpha;
  }
}

// Shipped names resolve through the search folders in order (the first that
// has the model wins); a file path is taken as it is; a missing name's error
// lists every folder searched with what it holds.
TEST(ModelStore, NamesResolveInSearchOrderAndTheErrorListsEveryFolder) {
  fer_test::TempDir dir;
  for (const char* folder : {"first/fer2013_shared", "second/shared", "second/only_here", "second/ens"})
    fer_test::fs::create_directories(dir / folder);
  fer_test::write_file(dir / "first/fer2013_shared/best.pt", "x");
  fer_test::write_file(dir / "second/shared/best.pt", "x");
  fer_test::write_file(dir / "second/only_here/best.pt", "x");
  fer_test::write_file(dir / "second/ens/ensemble.json", R"({"members": ["../shared/best.pt", "../only_here/best.pt"]})");
  const std::vector<fer::ModelDir> dirs{{dir / "missing", "one"}, {dir / "first", "two"}, {dir / "second", "three"}};

  EXPECT_EQ(fer::resolve_models("shared", dirs), std::vector<std::string>{dir / "first/fer2013_shared/best.pt"});
  EXPECT_EQ(fer::resolve_models("only_here", dirs), std::vector<std::string>{dir / "second/only_here/best.pt"});
  EXPECT_EQ(fer::resolve_models("ens", dirs),
            (std::vector<std::string>{dir / "second/shared/best.pt", dir / "second/only_here/best.pt"}));
  EXPECT_EQ(fer::resolve_models(dir / "second/shared/best.pt", {}), std::vector<std::string>{dir / "second/shared/best.pt"});
  EXPECT_EQ(fer::shipped_model_names(dir / "second"), (std::vector<std::string>{"ens", "only_here", "shared"}));

  try {
    fer::resolve_models("absent", dirs);
    ADD_FAILURE() << "resolved a model that is nowhere";
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("'absent'"), std::string::npos) << what;
    EXPECT_NE(what.find(dir / "missing" + " (one: no such folder)"), std::string::npos) << what;
    EXPECT_NE(what.find(dir / "first" + " (two: shared)"), std::string::npos) << what;
    EXPECT_NE(what.find(dir / "second" + " (three: ens, only_here, shared)"), std::string::npos) << what;
  }
}

// A folder with models.txt offers exactly the folders it lists: a run folder
// left beside them (best.pt and all) is no shipped model; a listed folder
// without a model is an error naming the manifest's line.
TEST(ModelStore, AManifestListsExactlyTheShippedFolders) {
  fer_test::TempDir dir;
  for (const char* folder : {"models/fer2013_listed", "models/smoke"}) fer_test::fs::create_directories(dir / folder);
  fer_test::write_file(dir / "models/fer2013_listed/best.pt", "x");
  fer_test::write_file(dir / "models/smoke/best.pt", "x");
  fer_test::write_file(dir / "models/models.txt", "# shipped\n\nfer2013_listed  # the one\n");
  const std::vector<fer::ModelDir> dirs{{dir / "models", "source tree"}};

  EXPECT_EQ(fer::shipped_model_folders(dir / "models"), std::vector<std::string>{"fer2013_listed"});
  EXPECT_EQ(fer::shipped_model_names(dir / "models"), std::vector<std::string>{"listed"});
  EXPECT_EQ(fer::resolve_models("listed", dirs), std::vector<std::string>{dir / "models/fer2013_listed/best.pt"});
  EXPECT_THROW(fer::resolve_models("smoke", dirs), std::runtime_error);
  fer_test::fs::remove(dir / "models/models.txt");  // without a manifest: every folder holding a model
  EXPECT_EQ(fer::shipped_model_names(dir / "models"), (std::vector<std::string>{"listed", "smoke"}));

  fer_test::write_file(dir / "models/models.txt", "fer2013_listed\nfer2013_gone\n");
  try {
    fer::shipped_model_folders(dir / "models");
    ADD_FAILURE() << "a listed folder without a model was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("models.txt:2: 'fer2013_gone' holds no best.pt"), std::string::npos) << e.what();
  }
}

// Every model the source tree ships carries its record: the metrics the
// accuracy guard holds it to and the README that describes it.
TEST(ModelStore, EveryShippedModelCarriesItsRecord) {
  const auto experiments = fer_test::fs::path(fer_test::source_dir()) / "experiments";
  const auto folders = fer::shipped_model_folders(experiments);
  EXPECT_NE(std::find(folders.begin(), folders.end(), "fer2013_paper_cnn"), folders.end());
  for (const auto& folder : folders)
    for (const char* file : {"metrics.json", "README.md"})
      EXPECT_TRUE(fer_test::fs::exists(experiments / folder / file)) << folder << " lacks " << file;
}

// $FER_MODEL_DIR comes first, then the source tree this build came from
// (whose experiments/ holds the shipped default model).
TEST(ModelStore, EnvironmentFolderComesFirstThenTheSourceTree) {
  fer_test::TempDir dir;
  setenv("FER_MODEL_DIR", dir.path().c_str(), 1);
  const auto dirs = fer::shipped_model_dirs();
  unsetenv("FER_MODEL_DIR");
  ASSERT_GE(dirs.size(), 2u);
  EXPECT_EQ(dirs[0].path, dir.path().string());
  EXPECT_EQ(fer_test::fs::path(dirs[1].path), fer_test::fs::path(fer_test::source_dir()) / "experiments");
  EXPECT_EQ(fer::resolve_models("paper_cnn_long").front(),
            (fer_test::fs::path(fer_test::source_dir()) / "experiments/fer2013_paper_cnn_long/best.pt").string());
}

TEST(Distillation, LossIsTSquaredTimesTheKlOfTheSoftenedDistributions) {
  // Teacher logits (ln 9, 0) at T = 2 soften to (3/4, 1/4); the student's (0, 0) to (1/2, 1/2).
  const auto student = torch::zeros({1, 2}, torch::kFloat32);
  const auto teacher = torch::tensor({{std::log(9.0f), 0.0f}});
  const double kl = 0.75 * std::log(1.5) + 0.25 * std::log(0.5);
  EXPECT_NEAR(fer::distillation_loss(student, teacher, 2.0).item<double>(), 4 * kl, 1e-6);
  EXPECT_NEAR(fer::distillation_loss(student, torch::tensor({{std::log(3.0f), 0.0f}}), 1.0).item<double>(), kl, 1e-6);
  EXPECT_NEAR(fer::distillation_loss(teacher, teacher, 3.0).item<double>(), 0.0, 1e-7);
  EXPECT_THROW(fer::distillation_loss(student, torch::zeros({1, 3}), 2.0), c10::Error);
}

TEST(Distillation, GradientIsTTimesTheGapOfTheSoftenedProbabilitiesOverTheBatch) {
  torch::manual_seed(3);
  const auto teacher = torch::randn({4, 7}) * 3;
  const auto student = (torch::randn({4, 7}) * 3).requires_grad_(true);
  const double T = 4.0;
  fer::distillation_loss(student, teacher, T).backward();
  const auto expected = (torch::softmax(student.detach() / T, 1) - torch::softmax(teacher / T, 1)) * T / 4;
  EXPECT_LT((student.grad() - expected).abs().max().item<double>(), 1e-6);
}

namespace {

// Records progress().loss as it stands when this hook's before_backward runs (step 0 only).
struct LossProbe : fer::HookBase {
  double loss = NAN;
  torch::Tensor inputs, logits;
  void before_backward(fer::TrainerBase& t) override {
    if (t.progress().step != 0) return;
    loss = t.progress().loss.item<double>();
    inputs = t.progress().inputs.detach().clone();
    logits = t.progress().logits.detach().clone();
  }
};

fer::Classifier tiny_model(int64_t input_size, int seed) {
  torch::manual_seed(seed);
  fer::ModelOptions o;
  o.filters = {4, 8, 8};
  o.dense_units = 16;
  o.input_size = input_size;
  return fer::make_model(o);
}

}  // namespace

TEST(Distillation, TheStepLossIsTheWeightedSumOfHardLossAndTheTeachersTermOnTheCroppedBatch) {
  SyntheticData data;
  const auto splits = fer::load_configured_splits(tiny_config(data.csv));
  auto student = tiny_model(48, 1);
  auto teacher = tiny_model(40, 2);  // a smaller input: it sees the centre crop
  fer::StepOptions step;
  step.batch_size = 16;
  step.augment.crop_padding = 2;  // the batch is augmented: the teacher must see the same draw
  fer::SupervisedTrainer trainer(student, fer::make_optimizer(student->parameters(), {}),
                                 {fer::images_tensor(splits.train), fer::labels_tensor(splits.train)}, step, torch::kCPU);
  trainer.progress().max_epochs = 1;
  auto hard = std::make_shared<LossProbe>(), combined = std::make_shared<LossProbe>();
  const fer::DistillOptions options{0.7, 3.0};
  trainer.register_hook(hard);
  trainer.register_hook(std::make_shared<fer::DistillationHook>(teacher, 40, options, "tiny teacher"));
  trainer.register_hook(combined);
  trainer.train();

  torch::NoGradGuard no_grad;
  teacher->eval();
  const auto teacher_logits = teacher->forward(fer::center_crop(combined->inputs, 40));
  const double soft = fer::distillation_loss(combined->logits, teacher_logits, 3.0).item<double>();
  EXPECT_GT(soft, 1e-4);  // the two networks disagree: the term is not vacuous
  EXPECT_NEAR(combined->loss, 0.3 * hard->loss + 0.7 * soft, 1e-5);
  EXPECT_TRUE(torch::equal(hard->inputs, combined->inputs));
}

TEST(Distillation, ResumeEqualsAStraightRunAndAnotherTeacherIsRefused) {
  SyntheticData data;
  fer_test::TempDir runs;
  auto teacher_config = tiny_config(data.csv);
  teacher_config.train.epochs = 1;
  fer::train({teacher_config, runs / "teacher", false});
  teacher_config.train.seed = 6;
  fer::train({teacher_config, runs / "other_teacher", false});

  auto config = tiny_config(data.csv);
  config.augment.crop_size = 44;  // the teacher (48 px) must not be bigger than the student: an error
  config.distill.teacher = runs / "teacher/best.pt";
  EXPECT_THROW(fer::train({config, runs / "too_small", false}), std::invalid_argument);

  config.augment.crop_size = 48;
  config.train.epochs = 1;
  fer::train({config, runs / "resumed", false});
  config.train.epochs = 2;
  fer::train({config, runs / "resumed", true});
  fer::train({config, runs / "straight", false});
  fer_test::expect_same_history(fer::read_history_csv(runs / "resumed/history.csv"),
                                fer::read_history_csv(runs / "straight/history.csv"));

  // Another teacher under the same path passes the config check; the hook's fingerprint refuses it.
  config.train.epochs = 3;
  std::filesystem::copy_file(runs / "other_teacher/best.pt", runs / "teacher/best.pt",
                             std::filesystem::copy_options::overwrite_existing);
  try {
    fer::train({config, runs / "resumed", true});
    FAIL() << "resumed with another teacher";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("last.pt was distilled from"), std::string::npos) << e.what();
  }
}
