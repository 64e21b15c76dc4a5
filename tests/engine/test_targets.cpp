// Training on annotator votes: the four targets of Barsoum et al. against
// hand-computed values, and a FER+-shaped folder trained end to end.
#include <gtest/gtest.h>

#include <numeric>
#include <torch/torch.h>

#include <cmath>

#if FER_WITH_OPENCV
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <fstream>
#include <numeric>
#endif

#include "fer/engine/engine.h"
#include "fer/engine/optim.h"
#include "fer/inference/inference.h"
#include "fer/inference/metrics.h"
#include "fer/models/checkpoint.h"
#include "fer/report/train/train.h"
#include "test_util.h"

namespace {

// Captures the first step's loss and logits.
struct FirstStep : fer::HookBase {
  double loss = NAN;
  torch::Tensor logits;
  void before_backward(fer::TrainerBase& t) override {
    if (t.progress().step != 0 || t.progress().epoch != 1) return;
    loss = t.progress().loss.item<double>();
    logits = t.progress().logits.detach().clone();
  }
};

// One step over `votes`' rows, all on the same image (so every row's logits
// are equal and the batch order cannot matter), with no dropout or augmentation.
FirstStep first_step(fer::TrainTarget target, const torch::Tensor& votes, double smoothing = 0) {
  torch::manual_seed(3);
  fer::ModelOptions o;
  o.filters = {4};
  o.dense_units = 8;
  o.conv_dropout = o.dense_dropout = 0;
  o.num_classes = votes.size(1);
  auto model = fer::make_model(o);
  const auto n = votes.size(0);
  fer::StepOptions step;
  step.batch_size = n;
  fer::AugmentConfig no_augmentation;
  no_augmentation.enabled = false;
  step.augment = fer::AugmentOptions::from_config(no_augmentation);
  step.target = target;
  step.label_smoothing = smoothing;
  const auto labels = votes.argmax(1);
  auto images = torch::full({n, 48, 48}, 90, torch::kUInt8);
  fer::SupervisedTrainer trainer(model, fer::make_optimizer(model->parameters(), {}), {images, labels, votes}, step,
                                 torch::kCPU);
  trainer.progress().max_epochs = 1;
  auto probe = std::make_shared<FirstStep>();
  trainer.register_hook(probe);
  trainer.train();
  return *probe;
}

}  // namespace

TEST(VoteTargets, SoftTargetLossEqualsHardLossOnOneHotAndAHandValue) {
  const auto logits = torch::tensor({{1.0f, 2.0f, 3.0f}, {0.5f, -1.0f, 2.0f}});
  const auto hard = torch::tensor({int64_t{2}, int64_t{0}});
  const auto one_hot = torch::nn::functional::one_hot(hard, 3).to(torch::kFloat32);
  for (double s : {0.0, 0.1})
    EXPECT_NEAR(fer::soft_target_loss(logits, one_hot, s).item<double>(),
                fer::classification_loss(logits, hard, s).item<double>(), 1e-6);
  // Logits (0, ln 3) give p = (1/4, 3/4); the target (0.6, 0.4): -(0.6 ln 1/4 + 0.4 ln 3/4).
  const auto two = torch::tensor({{0.0f, static_cast<float>(std::log(3.0))}});
  const double expected = -(0.6 * std::log(0.25) + 0.4 * std::log(0.75));
  EXPECT_NEAR(fer::soft_target_loss(two, torch::tensor({{0.6f, 0.4f}}), 0).item<double>(), expected, 1e-6);
  // Weights scale each class's term: w = (2, 1).
  const double weighted = -(2 * 0.6 * std::log(0.25) + 0.4 * std::log(0.75));
  EXPECT_NEAR(fer::soft_target_loss(two, torch::tensor({{0.6f, 0.4f}}), 0, torch::tensor({2.0f, 1.0f})).item<double>(),
              weighted, 1e-6);
}

TEST(VoteTargets, MultiTargetLossIsMinusLogOfTheBestAcceptedProbability) {
  // Logits (0, ln 2, ln 3): p = (1/6, 2/6, 3/6).
  const auto logits = torch::tensor({{0.0f, static_cast<float>(std::log(2.0)), static_cast<float>(std::log(3.0))}});
  EXPECT_NEAR(fer::multi_target_loss(logits, torch::tensor({{4.0f, 6.0f, 0.0f}})).item<double>(), -std::log(2.0 / 6),
              1e-6);
  EXPECT_NEAR(fer::multi_target_loss(logits, torch::tensor({{1.0f, 0.0f, 9.0f}})).item<double>(), -std::log(0.5), 1e-6);
  EXPECT_NEAR(fer::multi_target_loss(logits, torch::tensor({{1.0f, 0.0f, 0.0f}})).item<double>(), -std::log(1.0 / 6),
              1e-6);
  EXPECT_THROW(fer::multi_target_loss(logits, torch::zeros({1, 3})), c10::Error);
}

TEST(VoteTargets, DrawnLabelsFollowTheVoteDistributionAndTheSeed) {
  const int n = 20000;
  const auto distribution = torch::tensor({0.5f, 0.3f, 0.2f, 0.0f}).repeat({n, 1});
  const auto a = fer::draw_labels(distribution, 11), b = fer::draw_labels(distribution, 11);
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_FALSE(torch::equal(a, fer::draw_labels(distribution, 12)));
  const auto counts = torch::bincount(a, {}, 4).to(torch::kFloat64) / n;
  // Standard errors are below 0.0036: 0.015 is over 4 of them.
  EXPECT_NEAR(counts[0].item<double>(), 0.5, 0.015);
  EXPECT_NEAR(counts[1].item<double>(), 0.3, 0.015);
  EXPECT_NEAR(counts[2].item<double>(), 0.2, 0.015);
  EXPECT_EQ(counts[3].item<double>(), 0.0);  // a class nobody voted for is never drawn
}

TEST(VoteTargets, EachTargetModeTrainsOnItsLossOfTheVotes) {
  const auto votes = torch::tensor({{6.0f, 4.0f, 0.0f}, {0.0f, 2.0f, 8.0f}, {3.0f, 3.0f, 4.0f}, {10.0f, 0.0f, 0.0f}});
  const auto distribution = votes / votes.sum(1, true);
  const auto labels = votes.argmax(1);

  const auto majority = first_step(fer::TrainTarget::majority, votes, 0.1);
  EXPECT_NEAR(majority.loss, fer::classification_loss(majority.logits, labels, 0.1).item<double>(), 1e-5);
  const auto probability = first_step(fer::TrainTarget::probability, votes, 0.1);
  EXPECT_NEAR(probability.loss, fer::soft_target_loss(probability.logits, distribution, 0.1).item<double>(), 1e-5);
  EXPECT_GT(std::abs(probability.loss - majority.loss), 1e-3);  // the soft target is another loss
  const auto multi = first_step(fer::TrainTarget::multi_target, votes);
  EXPECT_NEAR(multi.loss, fer::multi_target_loss(multi.logits, votes).item<double>(), 1e-5);
  // crossentropy on unanimous votes draws the only voted class: the majority loss.
  const auto unanimous = torch::tensor({{0.0f, 10.0f, 0.0f}, {10.0f, 0.0f, 0.0f}});
  EXPECT_NEAR(first_step(fer::TrainTarget::crossentropy, unanimous).loss,
              first_step(fer::TrainTarget::majority, unanimous).loss, 1e-6);
  // Without votes, only majority trains.
  EXPECT_THROW(first_step(fer::TrainTarget::probability, torch::Tensor()), c10::Error);
}

#if FER_WITH_OPENCV
// A FER+-shaped folder (eight classes, votes) trains with soft targets: the
// model has eight outputs, the checkpoint names the classes, and the
// evaluation reports the majority rule's figures on the faces with a majority
// and the agreement with the annotators on all of them.
// Face i's ten vote counts: 7-3 over its class and the next, or in the
// validation split for every fourth face 4-3-3 (no majority label).
static std::vector<int> fixture_votes(int i, bool validation) {
  const int cls = i % 8;
  std::vector<int> counts(10, 0);
  const bool split_vote = validation && i % 4 == 3;
  counts[cls] = split_vote ? 4 : 7;
  counts[(cls + 1) % 8] = 3;
  if (split_vote) counts[(cls + 2) % 8] = 3;
  return counts;
}

TEST(VoteTargets, AFerplusFolderTrainsOnVoteDistributionsEndToEnd) {
  fer_test::TempDir dir;
  const auto root = dir.path() / "ferplus";
  for (const char* split : {"FER2013Train", "FER2013Valid"}) {
    fer_test::fs::create_directories(root / split);
    std::string labels;
    for (int i = 0; i < (split[7] == 'T' ? 96 : 32); ++i) {
      const int cls = i % 8;
      cv::Mat image(48, 48, CV_8UC1, cv::Scalar(20 + 25 * cls));
      const auto name = "fer" + std::to_string(1000000 + i) + ".png";
      cv::imwrite((root / split / name).string(), image);
      const auto counts = fixture_votes(i, split[7] == 'V');
      labels += name + ",\"(0, 0, 48, 48)\"";
      for (int c : counts) labels += "," + std::to_string(c);
      labels += "\n";
    }
    fer_test::write_file((root / split / "label.csv").string(), labels);
  }
  auto config = fer_test::tiny_config(root.string(), 5);
  config.train.epochs = 2;
  config.train.target = "probability";
  config.train.background_k = 0;
  const auto run = fer::train({config, dir / "run", false});
  const auto checkpoint = fer::load_checkpoint(run.best_checkpoint, torch::kCPU);
  EXPECT_EQ(checkpoint.meta.class_names,
            (std::vector<std::string>{"neutral", "happy", "surprise", "sad", "angry", "disgust", "fear", "contempt"}));
  EXPECT_EQ(checkpoint.meta.model.num_classes, 8);
  std::ifstream metrics(dir / "run/metrics.json");
  const auto json = nlohmann::json::parse(metrics);
  EXPECT_EQ(json.at("n"), 24);  // the majority rule's figures: faces with a majority label
  EXPECT_EQ(json.at("votes").at("n"), 32);  // the annotators' agreement: every voted face
  EXPECT_EQ(json.at("votes").at("without_majority"), 8);
  const auto shares = json.at("votes").at("vote_share").get<std::vector<double>>();
  const auto mean_p = json.at("votes").at("mean_probability").get<std::vector<double>>();
  ASSERT_EQ(shares.size(), 8u);
  ASSERT_EQ(mean_p.size(), 8u);
  EXPECT_NEAR(std::accumulate(shares.begin(), shares.end(), 0.0), 1.0, 1e-9);
  EXPECT_NEAR(std::accumulate(mean_p.begin(), mean_p.end(), 0.0), 1.0, 1e-5);
  std::vector<double> expected_shares(8, 0.0);
  for (int i = 0; i < 32; ++i) {
    const auto counts = fixture_votes(i, true);
    for (int c = 0; c < 8; ++c) expected_shares[c] += counts[c] / 10.0 / 32;
  }
  for (int c = 0; c < 8; ++c) EXPECT_NEAR(shares[c], expected_shares[c], 1e-6) << c;
  EXPECT_EQ(fer_test::fs::exists(dir / "run/votes.png"), fer_test::fs::exists(dir / "run/confusion_matrix.png"));

  fer_test::SyntheticData single;
  config.data.path = single.csv;  // single labels: soft targets are refused, naming the key
  try {
    fer::train({config, dir / "run2", false});
    ADD_FAILURE() << "probability targets accepted on single-label data";
  } catch (const fer::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("train.target: probability"), std::string::npos) << e.what();
  }
}
#endif
