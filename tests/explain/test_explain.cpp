// DeepSHAP and LIME: checked by the properties of the published algorithms.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <nlohmann/json.hpp>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/videoio.hpp>

#include "fer/common/io.h"
#include "fer/data/augment.h"
#include "fer/explain/deepshap.h"
#include "fer/explain/lime.h"
#include "fer/models/checkpoint.h"
#include "fer/models/model.h"
#include "fer/report/explain/batch.h"
#include "test_util.h"

namespace {

// A sequential test model built from explicit layers.
class SequentialImpl : public fer::ClassifierImpl {
 public:
  explicit SequentialImpl(std::vector<std::pair<std::string, std::shared_ptr<torch::nn::Module>>> layers) {
    for (auto& [name, m] : layers) {
      register_module(name, m);
      layers_.push_back(m);
    }
    seq_ = torch::nn::Sequential();
    for (auto& m : layers_) seq_->push_back(torch::nn::AnyModule(wrap(m)));
  }
  torch::Tensor forward(torch::Tensor x) override { return seq_->forward(x); }
  std::vector<std::shared_ptr<torch::nn::Module>> sequential_layers() const override { return layers_; }

 private:
  // AnyModule needs the concrete holder; the test uses few types.
  static torch::nn::AnyModule wrap(const std::shared_ptr<torch::nn::Module>& m) {
    if (auto l = std::dynamic_pointer_cast<torch::nn::LinearImpl>(m)) return torch::nn::AnyModule(torch::nn::Linear(l));
    if (auto l = std::dynamic_pointer_cast<torch::nn::FlattenImpl>(m)) return torch::nn::AnyModule(torch::nn::Flatten(l));
    if (auto l = std::dynamic_pointer_cast<torch::nn::ReLUImpl>(m)) return torch::nn::AnyModule(torch::nn::ReLU(l));
    if (auto l = std::dynamic_pointer_cast<torch::nn::MaxPool2dImpl>(m)) return torch::nn::AnyModule(torch::nn::MaxPool2d(l));
    if (auto l = std::dynamic_pointer_cast<torch::nn::TanhImpl>(m)) return torch::nn::AnyModule(torch::nn::Tanh(l));
    if (auto l = std::dynamic_pointer_cast<torch::nn::Conv2dImpl>(m)) return torch::nn::AnyModule(torch::nn::Conv2d(l));
    throw std::invalid_argument("test wrap: unsupported");
  }
  std::vector<std::shared_ptr<torch::nn::Module>> layers_;
  torch::nn::Sequential seq_{nullptr};
};

torch::Tensor rand_images(int64_t n, uint64_t seed) {
  auto gen = fer::make_cpu_generator(seed);
  return torch::rand({n, 1, 48, 48}, gen, torch::kFloat32);
}

// n uniform-noise faces (label 0) as a Dataset: references for DeepSHAP.
fer::Dataset random_faces(int64_t n, uint64_t seed) {
  fer::Dataset faces;
  const auto pixels = (rand_images(n, seed) * 255).to(torch::kUInt8).contiguous();
  for (int64_t i = 0; i < n; ++i) faces.add(pixels[i].data_ptr<std::uint8_t>(), 0, "ref");
  return faces;
}

fer::Classifier paper_cnn_with_batchnorm_statistics(uint64_t seed) {
  torch::manual_seed(seed);
  auto model = fer::make_model(fer::ModelOptions{});
  model->train();
  torch::NoGradGuard no_grad;
  for (int i = 0; i < 3; ++i) model->forward(rand_images(16, seed + i));
  model->eval();
  return model;
}

void expect_additive(const fer::DeepShapResult& r, double tolerance = 1e-3) {
  for (std::size_t i = 0; i < r.classes.size(); ++i) {
    const double f = r.outputs[r.classes[i]].item<double>();
    const double target = f - r.expected[r.classes[i]].item<double>();
    EXPECT_NEAR(r.attributions[i].sum().item<double>(), target, tolerance * std::max(1.0, std::abs(f)))
        << "class " << r.classes[i];
  }
  EXPECT_LT(r.additivity_error, tolerance);
}

const std::vector<int64_t> kAll{0, 1, 2, 3, 4, 5, 6};

}  // namespace

TEST(DeepShap, AdditivityHoldsOnThePaperCnnWithRandomWeights) {
  auto model = paper_cnn_with_batchnorm_statistics(1);
  fer::DeepShapExplainer shap(model, rand_images(20, 50), torch::kCPU);
  for (uint64_t s = 0; s < 3; ++s) {
    const auto r = shap.explain(rand_images(1, 100 + s)[0], kAll);
    EXPECT_EQ(r.attributions.sizes(), (std::vector<int64_t>{7, 48, 48}));
    expect_additive(r);
  }
  fer::DeepShapExplainer probs(model, rand_images(8, 60), torch::kCPU, fer::DeepShapOptions{true});
  expect_additive(probs.explain(rand_images(1, 7)[0], {0, 3}));
}

TEST(DeepShap, AdditivityHoldsWithTrainedWeights) {
  // Trained weights: the shipped reference model when present, else a few Adam steps on synthetic faces.
  const auto shipped = fer_test::fs::path(fer_test::source_dir()) / "experiments/fer2013_paper_cnn/best.pt";
  fer::Classifier model;
  if (fer_test::fs::exists(shipped)) {
    model = fer::load_checkpoint(shipped.string(), torch::kCPU).model;
  } else {
    model = paper_cnn_with_batchnorm_statistics(2);
    model->train();
    torch::optim::Adam opt(model->parameters(), 1e-3);
    for (int step = 0; step < 5; ++step) {
      auto x = rand_images(32, 200 + step);
      auto y = (x.mean({1, 2, 3}) * 7).clamp_max(6).to(torch::kInt64);
      opt.zero_grad();
      torch::nn::functional::cross_entropy(model->forward(x), y).backward();
      opt.step();
    }
    model->eval();
  }
  fer::DeepShapExplainer shap(model, rand_images(16, 70), torch::kCPU);
  expect_additive(shap.explain(rand_images(1, 71)[0], kAll));
}

TEST(DeepShap, LinearModelAttributionsAreWeightTimesInputMinusMeanReference) {
  torch::manual_seed(4);
  auto linear = torch::nn::Linear(4, 3);
  auto model = std::make_shared<SequentialImpl>(std::vector<std::pair<std::string, std::shared_ptr<torch::nn::Module>>>{
      {"flatten", torch::nn::Flatten().ptr()}, {"fc", linear.ptr()}});
  auto gen = fer::make_cpu_generator(5);
  const auto refs = torch::rand({5, 1, 2, 2}, gen);
  const auto x = torch::rand({1, 2, 2}, gen);
  fer::DeepShapExplainer shap(model, refs, torch::kCPU);
  const auto r = shap.explain(x, {0, 1, 2});
  const auto expected = linear->weight.detach().view({3, 2, 2}) * (x - refs.mean(0));
  EXPECT_TRUE(torch::allclose(r.attributions, expected, 1e-6, 1e-6)) << r.attributions << expected;
}

TEST(DeepShap, ModelThatIgnoresItsInputGetsZeroAttributions) {
  auto linear = torch::nn::Linear(4, 2);
  {
    torch::NoGradGuard no_grad;
    linear->weight.zero_();
    linear->bias.fill_(0.7);
  }
  auto model = std::make_shared<SequentialImpl>(std::vector<std::pair<std::string, std::shared_ptr<torch::nn::Module>>>{
      {"flatten", torch::nn::Flatten().ptr()}, {"fc", linear.ptr()}, {"relu", torch::nn::ReLU().ptr()}});
  fer::DeepShapExplainer shap(model, torch::rand({3, 1, 2, 2}), torch::kCPU);
  const auto r = shap.explain(torch::rand({1, 2, 2}), {0, 1});
  EXPECT_EQ(r.attributions.abs().max().item<float>(), 0.0f);
}

TEST(DeepShap, MaxPoolAndReluRulesMatchAHandComputedCase) {
  // x = [[1,3],[2,0]]; refs r1 = [[2,0],[0,1]], r2 = [[0,0],[0,4]];
  // f = ReLU(maxpool(x) - 2.5). f(x) = 0.5, f(r1) = 0, f(r2) = 1.5.
  // r1: pool rule routes (3-2)*m to x's max (0,1); ReLU multiplier m = 0.5/1 -> attribution 0.5 at (0,1).
  // r2: the reference's max (1,1) takes (3-4)*1 -> attribution -1 at (1,1).
  // Mean over references: +0.25 at (0,1), -0.5 at (1,1), 0 elsewhere (a plain gradient would give 3 at (0,1)).
  auto fc = torch::nn::Linear(1, 1);
  {
    torch::NoGradGuard no_grad;
    fc->weight.fill_(1.0);
    fc->bias.fill_(-2.5);
  }
  auto model = std::make_shared<SequentialImpl>(std::vector<std::pair<std::string, std::shared_ptr<torch::nn::Module>>>{
      {"pool", torch::nn::MaxPool2d(torch::nn::MaxPool2dOptions(2)).ptr()},
      {"flatten", torch::nn::Flatten().ptr()},
      {"fc", fc.ptr()},
      {"relu", torch::nn::ReLU().ptr()}});
  const auto refs = torch::tensor({2.f, 0.f, 0.f, 1.f, 0.f, 0.f, 0.f, 4.f}).view({2, 1, 2, 2});
  const auto x = torch::tensor({1.f, 3.f, 2.f, 0.f}).view({1, 2, 2});
  fer::DeepShapExplainer shap(model, refs, torch::kCPU);
  const auto r = shap.explain(x, {0});
  const auto expected = torch::tensor({0.f, 0.25f, 0.f, -0.5f}).view({1, 2, 2});
  EXPECT_TRUE(torch::allclose(r.attributions, expected, 1e-6, 1e-6)) << r.attributions;
  EXPECT_NEAR(r.outputs[0].item<double>(), 0.5, 1e-6);
  EXPECT_NEAR(r.expected[0].item<double>(), 0.75, 1e-6);
}

TEST(DeepShap, UnsupportedLayerIsAnErrorNamingIt) {
  auto model = std::make_shared<SequentialImpl>(std::vector<std::pair<std::string, std::shared_ptr<torch::nn::Module>>>{
      {"flatten", torch::nn::Flatten().ptr()}, {"tanh", torch::nn::Tanh().ptr()}});
  try {
    fer::DeepShapExplainer shap(model, torch::rand({2, 1, 2, 2}), torch::kCPU);
    ADD_FAILURE() << "Tanh accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("Tanh"), std::string::npos) << e.what();
  }
}

TEST(Ridge, WeightedRidgeMatchesHandComputation) {
  // x = 0,1,2; y = 1,3,5; alpha = 1: beta = 4/3, intercept = 5/3, R^2 = 8/9.
  const auto fit = fer::weighted_ridge({0, 1, 2}, 3, 1, {1, 3, 5}, {1, 1, 1}, 1.0);
  EXPECT_NEAR(fit.coef[0], 4.0 / 3, 1e-12);
  EXPECT_NEAR(fit.intercept, 5.0 / 3, 1e-12);
  EXPECT_NEAR(fit.score, 8.0 / 9, 1e-12);
  // A zero weight removes a sample: only (0,1) and (1,3) count -> slope 2/(0.5+1) = 4/3... centre 0.5, 2.
  const auto weighted = fer::weighted_ridge({0, 1, 2}, 3, 1, {1, 3, 100}, {1, 1, 0}, 1.0);
  EXPECT_NEAR(weighted.coef[0], 1.0 / 1.5, 1e-12);  // sum w x_c y_c = 0.5, sum w x_c^2 = 0.5
  EXPECT_NEAR(weighted.intercept, 2.0 - 0.5 / 1.5, 1e-12);
}

TEST(Lime, RecoversTheCoefficientsOfALinearSuperpixelModel) {
  // 16 superpixels (12x12 blocks); the model's class-0 score is b + sum_s w_s [s on].
  std::vector<int32_t> segments(48 * 48);
  for (int r = 0; r < 48; ++r)
    for (int c = 0; c < 48; ++c) segments[r * 48 + c] = (r / 12) * 4 + c / 12;
  std::vector<double> w(16);
  for (int s = 0; s < 16; ++s) w[s] = 0.05 * (s - 7.5);
  const fer::BatchPredictor model = [&](const std::vector<float>& images, int n) {
    std::vector<float> out;
    for (int i = 0; i < n; ++i) {
      double score = 0.2;
      for (int s = 0; s < 16; ++s) {
        const int pixel = (s / 4) * 12 * 48 + (s % 4) * 12;  // top-left pixel of block s
        score += w[s] * images[static_cast<std::size_t>(i) * 2304 + pixel];
      }
      out.push_back(static_cast<float>(score));
      out.push_back(0.0f);
    }
    return out;
  };
  fer::LimeOptions options;
  options.fill_value = 0.0f;
  const std::vector<float> image(48 * 48, 1.0f);
  const auto e = fer::explain_lime(image, 48, 48, model, 0, options, &segments);
  ASSERT_EQ(e.num_segments, 16);
  for (int s = 0; s < 16; ++s) EXPECT_NEAR(e.weights[s], w[s], 0.03 * std::abs(w[s]) + 2e-3) << "superpixel " << s;
  EXPECT_NEAR(e.intercept, 0.2, 0.02);
  EXPECT_GT(e.score, 0.99);
  EXPECT_EQ(e.top_positive(1), std::vector<int>{15});
  EXPECT_EQ(e.top_negative(1), std::vector<int>{0});
}

TEST(Lime, SameSeedSameResultAndFirstSampleIsTheUnperturbedImage) {
  auto gen = fer::make_cpu_generator(9);
  const auto t = torch::rand({48 * 48}, gen);
  const std::vector<float> image(t.data_ptr<float>(), t.data_ptr<float>() + t.numel());
  std::vector<float> first_seen;
  const fer::BatchPredictor model = [&](const std::vector<float>& images, int n) {
    if (first_seen.empty()) first_seen.assign(images.begin(), images.begin() + 2304);
    std::vector<float> out;
    for (int i = 0; i < n; ++i) {
      double left = 0;
      for (int r = 0; r < 48; ++r)
        for (int c = 0; c < 24; ++c) left += images[static_cast<std::size_t>(i) * 2304 + r * 48 + c];
      const float p = static_cast<float>(1 / (1 + std::exp(-(left / 576 - 0.5) * 8)));
      out.push_back(p);
      out.push_back(1 - p);
    }
    return out;
  };
  fer::LimeOptions options;
  options.num_samples = 300;
  options.seed = 4;
  const auto a = fer::explain_lime(image, 48, 48, model, -1, options);
  EXPECT_EQ(first_seen, image);
  const auto b = fer::explain_lime(image, 48, 48, model, -1, options);
  EXPECT_EQ(a.weights, b.weights);
  EXPECT_EQ(a.segments, b.segments);
  options.seed = 5;
  const auto c = fer::explain_lime(image, 48, 48, model, -1, options);
  EXPECT_NE(a.weights, c.weights);
  EXPECT_GE(a.num_segments, 30);
  EXPECT_LE(a.num_segments, 60);
}

TEST(Lime, RealFacesGetThirtyToSixtySuperpixels) {
  const auto csv = fer_test::real_fer2013();
  if (csv.empty()) GTEST_SKIP() << "FER-2013 not found: superpixel count on real faces not checked";
  const auto items = fer::collect_explain_inputs({csv}, "val", 20, fer::emotion_names());
  ASSERT_EQ(items.size(), 20u);
  for (const auto& item : items) {
    std::vector<float> image(item.pixels.begin(), item.pixels.end());
    for (auto& v : image) v /= 255.0f;
    int n = 0;
    fer::segment_superpixels(image, 48, 48, fer::LimeOptions{}, &n);
    EXPECT_GE(n, 30) << item.source;
    EXPECT_LE(n, 60) << item.source;
  }
}

TEST(Explain, NpyFilesHaveNumpysHeader) {
  fer_test::TempDir dir;
  fer::write_npy(dir / "a.npy", std::vector<float>(2 * 48 * 48, 1.5f), {2, 48, 48});
  const std::string bytes = fer_test::read_text(dir / "a.npy");
  ASSERT_GT(bytes.size(), 128u);
  EXPECT_EQ(bytes.substr(0, 6), "\x93NUMPY");
  const auto header_len = static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8);
  EXPECT_EQ((10 + header_len) % 64, 0);
  EXPECT_NE(bytes.find("'shape': (2, 48, 48)"), std::string::npos);
  EXPECT_EQ(bytes.size(), 10 + header_len + 2 * 48 * 48 * 4);
  if (std::system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") == 0) {
    const std::string check = "/usr/bin/python3 -c \"import numpy as np; a = np.load('" + (dir / "a.npy") +
                              "'); assert a.shape == (2, 48, 48) and a.dtype == np.float32 and (a == 1.5).all()\"";
    EXPECT_EQ(std::system(check.c_str()), 0) << "numpy could not read the file back";
  }
}

TEST(Explain, BatchWritesPngsManifestAndRecordsBadItems) {
  fer_test::TempDir dir;
  torch::manual_seed(0);
  fer::ModelOptions o;
  auto model = paper_cnn_with_batchnorm_statistics(3);
  fer::save_checkpoint(dir / "m.pt", *model, {o, {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"}, {}});
  fer::Dataset pool;
  std::vector<std::uint8_t> px(2304);
  for (int i = 0; i < 12; ++i) {
    for (int p = 0; p < 2304; ++p) px[p] = static_cast<std::uint8_t>((p * (i + 3)) % 256);
    pool.add(px.data(), i % 7, "bg" + std::to_string(i));
  }
  auto items = std::vector<fer::ExplainItem>{{"good", std::vector<std::uint8_t>(px), 3, ""},
                                              {"bad.png", {}, -1, "cannot decode image"}};
  fer::ExplainOptions options;
  options.classes = "top:2";
  options.lime_samples = 200;
  options.save_raw = true;
  options.progress = false;
  const auto summary = fer::explain_batch(dir / "m.pt", items, fer::background_from_images(fer::sample_background(pool, 8, 1)), dir / "out", options);
  EXPECT_EQ(summary.explained, 1);
  EXPECT_EQ(summary.failed, 1);
  EXPECT_LT(summary.worst_additivity_error, 1e-3);
  for (const char* f : {"out/manifest.csv", "out/global_mean_abs_shap.png", "out/global_mean_abs_shap.npy",
                        "out/00000_good/face.png", "out/00000_good/lime.png", "out/00000_good/summary.png",
                        "out/00000_good/shap.npy"})
    EXPECT_TRUE(fer_test::fs::exists(dir / f)) << f;
  std::ifstream manifest(dir / "out/manifest.csv");
  std::string header, row1, row2;
  std::getline(manifest, header);
  std::getline(manifest, row1);
  std::getline(manifest, row2);
  EXPECT_NE(row1.find(",ok,"), std::string::npos) << row1;
  EXPECT_NE(row2.find(",error,cannot decode image"), std::string::npos) << row2;
  // Faithfulness: per-image AUCs of each method in the manifest, the summary beside it, the gallery.
  const auto columns = fer::parse_csv_row(header), values = fer::parse_csv_row(row1);
  ASSERT_EQ(columns.size(), values.size()) << row1;
  for (const char* method : {"shap", "lime", "random"})
    for (const char* curve : {"_deletion_auc", "_insertion_auc"}) {
      const auto at = std::find(columns.begin(), columns.end(), std::string(method) + curve);
      ASSERT_NE(at, columns.end()) << method << curve;
      const double auc = std::stod(values[at - columns.begin()]);
      EXPECT_TRUE(auc >= 0 && auc <= 1) << method << curve << " = " << auc;
    }
  std::ifstream json_file(dir / "out/faithfulness.json");
  const auto json = nlohmann::json::parse(json_file);
  EXPECT_EQ(json["methods"]["lime"]["insertion_auc"]["n"], 1);
  EXPECT_EQ(json["baseline"], "mean of the 8 background references");
  const std::string page = fer_test::read_text(dir / "out/index.html");
  EXPECT_NE(page.find(R"("image":"00000_good/summary.png")"), std::string::npos);
  EXPECT_NE(page.find(R"("true":"happy")"), std::string::npos);  // item 0's label 3
  EXPECT_NE(page.find(R"("error":"cannot decode image")"), std::string::npos);
  EXPECT_NE(page.find(R"(<img src="global_mean_abs_shap.png")"), std::string::npos);
  if (fer::gnuplot_available()) EXPECT_TRUE(fer_test::fs::exists(dir / "out/faithfulness.png"));

  options.faithfulness = false;
  options.methods = fer::parse_explain_methods("lime");
  fer::explain_batch(dir / "m.pt", {items[0]}, {}, dir / "fast", options);
  EXPECT_FALSE(fer_test::fs::exists(dir / "fast/faithfulness.json"));
  EXPECT_TRUE(fer_test::fs::exists(dir / "fast/index.html"));
}

// Every method's panel and raw map per face, its AUCs in the manifest, and
// the methods ranked by faithfulness in faithfulness.json and the gallery.
TEST(Explain, EveryMethodWritesItsPanelsAndIsRankedInTheGallery) {
  fer_test::TempDir dir;
  torch::manual_seed(0);
  auto model = paper_cnn_with_batchnorm_statistics(3);
  fer::save_checkpoint(dir / "m.pt", *model, {fer::ModelOptions{}, {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"}, {}});
  std::vector<std::uint8_t> px(2304);
  for (int p = 0; p < 2304; ++p) px[p] = static_cast<std::uint8_t>((p * 7) % 256);
  const std::vector<fer::ExplainItem> items{{"a", px, 3, ""}, {"b", std::vector<std::uint8_t>(px.rbegin(), px.rend()), -1, ""}};
  fer::ExplainOptions options;
  options.methods = fer::parse_explain_methods("lime,integrated_gradients,gradcam++,occlusion");
  options.lime_samples = 100;
  options.faithfulness_steps = 5;
  options.save_raw = true;
  options.progress = false;
  const auto summary = fer::explain_batch(dir / "m.pt", items, {}, dir / "out", options);
  ASSERT_EQ(summary.explained, 2);
  for (const char* f : {"00000_a/lime.png", "00000_a/integrated_gradients.png", "00000_a/gradcam_plus_plus.png",
                        "00000_a/gradcam_plus_plus.npy", "00001_b/occlusion.png", "00001_b/occlusion.npy"})
    EXPECT_TRUE(fer_test::fs::exists(fer_test::fs::path(dir / "out") / f)) << f;
  std::ifstream manifest(dir / "out/manifest.csv");
  std::string header, row;
  std::getline(manifest, header);
  std::getline(manifest, row);
  const auto columns = fer::parse_csv_row(header), values = fer::parse_csv_row(row);
  ASSERT_EQ(columns.size(), values.size());
  for (const char* column : {"gradcam++_deletion_auc", "occlusion_insertion_auc", "ig_completeness_error"}) {
    const auto at = std::find(columns.begin(), columns.end(), column);
    ASSERT_NE(at, columns.end()) << column;
    EXPECT_GE(std::stod(values[at - columns.begin()]), 0.0) << column;
  }
  EXPECT_EQ(std::find(columns.begin(), columns.end(), "shap_deletion_auc"), columns.end());  // shap did not run
  std::ifstream json_file(dir / "out/faithfulness.json");
  const auto ranking = nlohmann::json::parse(json_file)["ranking"];
  ASSERT_EQ(ranking.size(), 5u);  // four methods and random
  for (std::size_t i = 1; i < ranking.size(); ++i)
    EXPECT_GE(ranking[i - 1]["score"].get<double>(), ranking[i]["score"].get<double>());
  const std::string page = fer_test::read_text(dir / "out/index.html");
  EXPECT_NE(page.find(R"(<table class="ranking">)"), std::string::npos);
  EXPECT_NE(page.find("<td>gradcam++</td>"), std::string::npos);
}

TEST(DeepShap, FastPathMatchesTheAutogradReferencePath) {
  auto model = paper_cnn_with_batchnorm_statistics(8);
  for (bool probabilities : {false, true}) {
    fer::DeepShapExplainer shap(model, rand_images(12, 80), torch::kCPU, fer::DeepShapOptions{probabilities});
    const auto x = rand_images(1, 81)[0];
    const auto fast = shap.explain(x, {6, 0, 3});
    const auto reference = shap.explain_reference(x, {6, 0, 3});
    EXPECT_EQ(fast.classes, reference.classes);
    EXPECT_TRUE(torch::allclose(fast.outputs, reference.outputs, 1e-5, 1e-6));
    const double scale = reference.attributions.abs().max().item<double>();
    EXPECT_LT((fast.attributions - reference.attributions).abs().max().item<double>(), 1e-4 * scale + 1e-7)
        << "probabilities=" << probabilities;
  }
}

// DeepSHAP explains the registry's other architecture (Conv -> BatchNorm -> ReLU order) as well.
TEST(DeepShap, VggFerKeepsAdditivityAndMatchesTheReferencePath) {
  torch::manual_seed(9);
  fer::ModelOptions o;
  o.architecture = "vgg_fer";
  o.input_size = 48;
  o.filters = {8, 16};
  o.dense_units = 32;
  o.conv_dropout = 0;
  auto model = fer::make_model(o);
  model->train();
  {
    torch::NoGradGuard no_grad;
    for (int i = 0; i < 3; ++i) model->forward(rand_images(16, 90 + i));  // BatchNorm statistics
  }
  model->eval();
  fer::DeepShapExplainer shap(model, rand_images(10, 95), torch::kCPU);
  const auto x = rand_images(1, 96)[0];
  const auto fast = shap.explain(x, kAll);
  expect_additive(fast, 1e-4);
  const auto reference = shap.explain_reference(x, kAll);
  const double scale = reference.attributions.abs().max().item<double>();
  EXPECT_LT((fast.attributions - reference.attributions).abs().max().item<double>(), 1e-4 * scale + 1e-7);
}

// Overlapping windows (stride < kernel) pick some input positions more than
// once: the max-pool rule must add their shares. Keeping one of them (as
// max_unpool2d does) loses part of the output difference, which additivity catches.
TEST(DeepShap, OverlappingMaxPoolWindowsKeepAdditivityAndMatchTheReferencePath) {
  torch::manual_seed(5);
  auto model = std::make_shared<SequentialImpl>(std::vector<std::pair<std::string, std::shared_ptr<torch::nn::Module>>>{
      {"pool", torch::nn::MaxPool2d(torch::nn::MaxPool2dOptions(3).stride(1).padding(1)).ptr()},
      {"pool2", torch::nn::MaxPool2d(torch::nn::MaxPool2dOptions(3).stride(2).padding(1)).ptr()},
      {"flatten", torch::nn::Flatten().ptr()},
      {"fc1", torch::nn::Linear(24 * 24, 16).ptr()},
      {"relu", torch::nn::ReLU().ptr()},
      {"fc2", torch::nn::Linear(16, 7).ptr()}});
  fer::DeepShapExplainer shap(model, rand_images(6, 50), torch::kCPU);
  const auto x = rand_images(1, 51)[0];
  const auto fast = shap.explain(x, kAll);
  expect_additive(fast, 1e-4);
  const auto reference = shap.explain_reference(x, kAll);
  expect_additive(reference, 1e-4);
  const double scale = reference.attributions.abs().max().item<double>();
  EXPECT_LT((fast.attributions - reference.attributions).abs().max().item<double>(), 1e-4 * scale + 1e-7);
}

// The shipped model explains a user's full photos (frames of the real clip) with
// no FER-2013 anywhere: SHAP's background comes from the checkpoint.
TEST(Explain, TheShippedModelExplainsFullPhotosWithNoDatasetPresent) {
  const auto clip = fer_test::real_clip();
  if (clip.empty()) GTEST_SKIP() << "../shared/data/video/face_clip_640x360.mp4 not found: skipping the real clip";
  fer_test::TempDir dir;
  cv::VideoCapture video(clip);
  cv::Mat frame;
  fer_test::fs::create_directories(dir / "photos");
  // Every 25th frame: the clip cuts between a speaker and the audience, some frames have no face.
  for (int i = 0; video.read(frame); ++i)
    if (i % 25 == 0) cv::imwrite(dir / ("photos/frame" + std::to_string(i) + ".png"), frame);
  // Run from an empty folder with $FER2013_CSV pointing nowhere: no dataset can be found.
  const std::string command = "cd " + dir.path().string() + " && FER2013_CSV=" + (dir / "absent.csv") + " " +
                              std::string(fer_test::bin_dir()) + "/fer-explain --input photos --detect-faces --method shap" +
                              " --classes all --out out --threads 2 > log.txt 2>&1";
  const int status = std::system(command.c_str());
  const std::string log = fer_test::read_text(dir / "log.txt");
  ASSERT_EQ(status, 0) << log;
  EXPECT_NE(log.find("k-means centroids"), std::string::npos) << log;
  int explained = 0;
  for (const auto& entry : fer_test::fs::directory_iterator(dir / "out"))
    explained += fer_test::fs::exists(entry.path() / "summary.png");
  EXPECT_GE(explained, 3) << log;  // the speaker's face in most sampled frames
  EXPECT_TRUE(fer_test::fs::exists(dir / "out/global_mean_abs_shap.png")) << log;
  // The gallery renders in a real browser with a card per photo, faces found or not.
  const auto chromium = fer_test::find_chromium();
  if (chromium.empty()) GTEST_SKIP() << "no chromium on PATH (set FER_CHROMIUM): the gallery is not rendered";
  std::size_t photos = 0;
  for (const auto& entry : fer_test::fs::directory_iterator(dir / "photos")) photos += entry.is_regular_file();
  const auto dom = fer_test::rendered_dom(chromium, "file://" + (dir / "out/index.html"), dir.path());
  std::size_t cards = 0;
  for (auto at = dom.find("<div class=\"card"); at != std::string::npos; at = dom.find("<div class=\"card", at + 1)) ++cards;
  EXPECT_EQ(cards, photos);
  EXPECT_NE(dom.find(std::to_string(photos) + " of " + std::to_string(photos) + " shown"), std::string::npos);
}

// fer-explain --shard 0/2 and 1/2, merged, against one unsharded run.
TEST(Explain, TwoShardsMergeToTheUnshardedBatch) {
  fer_test::SyntheticData data(2, 1);  // 14 Training rows (the background), 42 PublicTest rows
  fer_test::TempDir dir;
  fer::ModelOptions o;
  fer::save_checkpoint(dir / "m.pt", *paper_cnn_with_batchnorm_statistics(5),
                       {o, {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"}, {}});
  const std::string bin = std::string(fer_test::bin_dir()) + "/fer-explain";
  const std::string common = bin + " --model " + (dir / "m.pt") + " --input " + data.csv +
                             " --limit 7 --samples 64 --background 6 --save-raw --threads 1";
  for (const char* shard : {"0/2", "1/2"})
    ASSERT_EQ(std::system((common + " --shard " + shard + " --out " + (dir / "sharded") + " > /dev/null 2>&1").c_str()), 0);
  ASSERT_EQ(std::system((bin + " --merge " + (dir / "sharded/shard-1-of-2") + " " + (dir / "sharded/shard-0-of-2") +
                         " --out " + (dir / "merged") + " > /dev/null 2>&1").c_str()), 0);
  ASSERT_EQ(std::system((common + " --out " + (dir / "whole") + " > /dev/null 2>&1").c_str()), 0);

  const auto text = fer_test::read_text;
  EXPECT_EQ(text(dir / "merged/manifest.csv"), text(dir / "whole/manifest.csv"));
  const auto files = [](const fer_test::fs::path& root) {
    std::vector<std::string> names;
    for (const auto& e : fer_test::fs::recursive_directory_iterator(root))
      if (e.is_regular_file()) names.push_back(fer_test::fs::relative(e.path(), root).string());
    std::sort(names.begin(), names.end());
    return names;
  };
  EXPECT_EQ(files(dir / "merged"), files(dir / "whole"));
  const auto a = fer::parse_npy_float32(text(dir / "merged/global_mean_abs_shap.npy"), "merged");
  const auto b = fer::parse_npy_float32(text(dir / "whole/global_mean_abs_shap.npy"), "whole");
  ASSERT_EQ(a.values.size(), b.values.size());
  double worst = 0;
  for (std::size_t i = 0; i < a.values.size(); ++i) worst = std::max(worst, double(std::abs(a.values[i] - b.values[i])));
  EXPECT_LT(worst, 1e-6);
  const auto fa = nlohmann::json::parse(text(dir / "merged/faithfulness.json"));
  const auto fb = nlohmann::json::parse(text(dir / "whole/faithfulness.json"));
  for (const auto& [method, summary] : fb.at("methods").items()) {
    EXPECT_NEAR(fa["methods"][method]["deletion_auc"]["mean"].get<double>(), summary["deletion_auc"]["mean"].get<double>(), 1e-6);
    EXPECT_NEAR(fa["methods"][method]["insertion_auc"]["std"].get<double>(), summary["insertion_auc"]["std"].get<double>(), 1e-6);
    EXPECT_EQ(fa["methods"][method]["deletion_auc"]["n"], summary["deletion_auc"]["n"]);
  }
  EXPECT_EQ(text(dir / "merged/index.html"), text(dir / "whole/index.html"));
}

// The fused CPU loops (ReLU and tiling max-pool multipliers) compute the same
// floats as the tensor-op version other devices run, and explain_batch gives
// each image what explain() gives it, whether images share a pass or not.
// Images sharing a pass go through convolutions of another batch shape, whose
// kernels round differently (~1e-7); a unit whose |x - r| sits at DeepLIFT's
// 1e-6 switch may then take the gradient instead of the ratio, which moves
// the attributions of its receptive field (seen: 0.14% of the map's L1 on one
// image of four). So shared passes are held to additivity and a 1% relative
// L1 distance (swapped images or references would be ~100%), one-image
// passes to the floats.
TEST(DeepShap, FusedKernelsAndBatchedPassesMatchTheOneImagePath) {
  auto model = paper_cnn_with_batchnorm_statistics(8);
  const auto background = rand_images(9, 82);
  const auto images = rand_images(4, 83);
  const std::vector<std::vector<int64_t>> classes = {{6, 0}, {1, 2}, {3, 3}, {5, 4}};
  fer::DeepShapOptions tensor_ops;
  tensor_ops.fused_cpu_kernels = false;
  fer::DeepShapOptions shared_passes;
  shared_passes.max_rows_per_pass = 1024;
  fer::DeepShapExplainer fused(model, background, torch::kCPU, shared_passes);
  fer::DeepShapExplainer plain(model, background, torch::kCPU, tensor_ops);
  fer::DeepShapExplainer single(model, background, torch::kCPU);  // CPU default: one image per pass
  EXPECT_EQ(fused.images_per_pass(2), 1024 / 18);
  EXPECT_EQ(single.images_per_pass(2), 1);
  const auto batched = fused.explain_batch(images, classes), unbatched = single.explain_batch(images, classes);
  ASSERT_EQ(batched.size(), 4u);
  ASSERT_EQ(unbatched.size(), 4u);
  for (int64_t i = 0; i < 4; ++i) {
    const auto one = plain.explain(images[i], classes[i]);
    const double scale = one.attributions.abs().max().item<double>();
    for (const auto* r : {&batched[i], &unbatched[i]}) {
      EXPECT_EQ(r->classes, classes[i]);
      EXPECT_TRUE(torch::allclose(r->outputs, one.outputs, 1e-5, 1e-6));
      EXPECT_LT(r->additivity_error, 1e-4);
    }
    EXPECT_LT((unbatched[i].attributions - one.attributions).abs().max().item<double>(), 1e-5 * scale + 1e-8)
        << "image " << i;
    const double relative_l1 =
        ((batched[i].attributions - one.attributions).abs().sum() / one.attributions.abs().sum()).item<double>();
    EXPECT_LT(relative_l1, 1e-2) << "image " << i;
  }
  EXPECT_THROW(fused.explain_batch(images, {{0}, {1}, {2}}), std::invalid_argument);
  EXPECT_THROW(fused.explain_batch(images, {{0}, {1}, {2}, {3, 4}}), std::invalid_argument);
}

// bf16 convs in the backward pass: the maps stay close to fp32's (bf16 keeps 8
// bits of mantissa: a few 1e-3 of the map's scale here), and additivity still holds.
TEST(DeepShap, Bf16ConvBackwardStaysCloseToFp32) {
  auto model = paper_cnn_with_batchnorm_statistics(8);
  const auto background = rand_images(10, 84);
  fer::DeepShapOptions bf16;
  bf16.bf16_convs = true;
  fer::DeepShapExplainer exact(model, background, torch::kCPU), fast(model, background, torch::kCPU, bf16);
  for (int s = 0; s < 3; ++s) {
    const auto x = rand_images(1, 85 + s)[0];
    const auto a = exact.explain(x, kAll), b = fast.explain(x, kAll);
    const double scale = a.attributions.abs().max().item<double>();
    const double deviation = (a.attributions - b.attributions).abs().max().item<double>();
    EXPECT_LT(deviation, 2e-2 * scale);
    EXPECT_GT(deviation, 0.0);  // bf16 did run
    const double sum_scale = a.attributions.abs().sum().item<double>() / a.attributions.size(0);
    for (int64_t c = 0; c < 7; ++c)
      EXPECT_NEAR(b.attributions[c].sum().item<double>(), a.attributions[c].sum().item<double>(), 1e-2 * sum_scale);
  }
}

// A 2x2 pool over an odd-sized input leaves the last row and column in no
// window: the fused loops give them nothing, as the tensor-op and reference paths do.
TEST(DeepShap, FusedMaxPoolLeavesUncoveredPositionsAtZero) {
  torch::manual_seed(12);
  auto model = std::make_shared<SequentialImpl>(std::vector<std::pair<std::string, std::shared_ptr<torch::nn::Module>>>{
      {"conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 3, 1)).ptr()},  // 1x1: row 6 reaches only row 6
      {"relu", torch::nn::ReLU().ptr()},
      {"pool", torch::nn::MaxPool2d(2).ptr()},
      {"flatten", torch::nn::Flatten().ptr()},
      {"fc", torch::nn::Linear(3 * 3 * 3, 4).ptr()}});
  const auto background = torch::rand({5, 1, 7, 7});
  fer::DeepShapOptions tensor_ops;
  tensor_ops.fused_cpu_kernels = false;
  fer::DeepShapExplainer fused(model, background, torch::kCPU), plain(model, background, torch::kCPU, tensor_ops);
  const auto x = torch::rand({1, 7, 7});
  const auto a = fused.explain(x, {0, 1, 2, 3}), b = plain.explain(x, {0, 1, 2, 3});
  const auto reference = fused.explain_reference(x, {0, 1, 2, 3});
  expect_additive(a, 1e-5);
  EXPECT_TRUE(torch::allclose(a.attributions, b.attributions, 1e-5, 1e-7));
  EXPECT_TRUE(torch::allclose(a.attributions, reference.attributions, 1e-4, 1e-6));
  EXPECT_EQ(a.attributions.select(1, 6).abs().max().item<float>(), 0.0f);  // the last row: in no window
  EXPECT_EQ(a.attributions.select(2, 6).abs().max().item<float>(), 0.0f);  // the last column
  EXPECT_GT(a.attributions.select(1, 5).abs().max().item<float>(), 0.0f);
}

// fer-explain with several images per DeepSHAP pass writes what it writes
// with one image per pass: the same maps (to float rounding), the same manifest.
TEST(Explain, ImagesSharingADeepShapPassGiveTheOneImageResults) {
  fer_test::TempDir dir;
  fer::ModelOptions o;
  fer::save_checkpoint(dir / "m.pt", *paper_cnn_with_batchnorm_statistics(6),
                       {o, {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"}, {}});
  std::vector<fer::ExplainItem> items;
  const auto faces = (rand_images(5, 97) * 255).to(torch::kUInt8).contiguous();
  for (int64_t i = 0; i < 5; ++i) {
    const auto* p = faces[i].data_ptr<std::uint8_t>();
    items.push_back({"face" + std::to_string(i), std::vector<std::uint8_t>(p, p + 2304), static_cast<int>(i), ""});
  }
  items.insert(items.begin() + 2, fer::ExplainItem{"bad.png", {}, -1, "cannot decode image"});
  fer::ExplainOptions options;
  options.methods = fer::parse_explain_methods("shap");
  options.classes = "top:2";
  options.save_raw = true;
  options.faithfulness = false;
  options.progress = false;
  const auto references = random_faces(6, 98);
  const auto background = fer::background_from_images(references);
  fer::explain_batch(dir / "m.pt", items, background, dir / "single", options);
  options.shap_pass_rows = 3 * 2 * 6;  // three images per pass: passes of 3 and 2 images
  const auto shared = fer::explain_batch(dir / "m.pt", items, background, dir / "shared", options);
  EXPECT_EQ(shared.explained, 5);
  EXPECT_EQ(shared.failed, 1);
  const auto text = fer_test::read_text;
  const auto rows = [&](const std::string& path) {  // the manifest without its additivity column
    std::istringstream in(text(path));
    std::vector<std::vector<std::string>> out;
    for (std::string line; std::getline(in, line);) out.push_back(fer::parse_csv_row(line));
    const auto column = std::find(out[0].begin(), out[0].end(), "shap_additivity_error") - out[0].begin();
    for (auto& r : out) r.erase(r.begin() + column);
    return out;
  };
  EXPECT_EQ(rows(dir / "shared/manifest.csv"), rows(dir / "single/manifest.csv"));
  for (int i : {0, 1, 3, 4, 5}) {
    const auto name = "0000" + std::to_string(i) + "_face" + std::to_string(i < 2 ? i : i - 1) + "/shap.npy";
    const auto a = fer::parse_npy_float32(text(dir / "single" + "/" + name), "single");
    const auto b = fer::parse_npy_float32(text(dir / "shared" + "/" + name), "shared");
    ASSERT_EQ(a.values.size(), 2u * 2304) << name;
    ASSERT_EQ(b.values.size(), a.values.size()) << name;
    float scale = 0, worst = 0;
    for (std::size_t p = 0; p < a.values.size(); ++p) {
      scale = std::max(scale, std::abs(a.values[p]));
      worst = std::max(worst, std::abs(a.values[p] - b.values[p]));
    }
    EXPECT_LT(worst, 1e-5f * scale + 1e-8f) << name;
  }
}

// A model of input 40 (as the shipped vgg_fer_cosine) sees the centre 40x40
// crop of each face, as fer-eval predicts: DeepSHAP explains that crop, and
// the 4-pixel border, which cannot change the output, gets exactly 0.
TEST(Explain, AModelWithSmallerInputIsExplainedOnItsCentreCrop) {
  fer_test::TempDir dir;
  torch::manual_seed(11);
  fer::ModelOptions o;
  o.input_size = 40;
  auto model = fer::make_model(o);
  model->train();
  {
    torch::NoGradGuard no_grad;
    for (int i = 0; i < 3; ++i) model->forward(fer::center_crop(rand_images(16, 60 + i), 40));
  }
  model->eval();
  fer::save_checkpoint(dir / "m.pt", *model, {o, {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"}, {}});
  const auto face = (rand_images(1, 70) * 255).to(torch::kUInt8).contiguous();
  const auto* p = face.data_ptr<std::uint8_t>();
  const auto references = random_faces(5, 71);
  const auto background = fer::background_from_images(references);
  fer::ExplainOptions options;
  options.methods = fer::parse_explain_methods("shap");
  options.classes = "pred";
  options.save_raw = true;
  options.faithfulness = false;
  options.progress = false;
  const auto summary = fer::explain_batch(dir / "m.pt", {{"face", std::vector<std::uint8_t>(p, p + 2304), 0, ""}},
                                          background, dir / "out", options);
  ASSERT_EQ(summary.explained, 1);
  EXPECT_LT(summary.worst_additivity_error, 1e-4);
  const auto saved = fer::parse_npy_float32(fer_test::read_text(dir / "out/00000_face/shap.npy"), "shap.npy");
  ASSERT_EQ(saved.values.size(), 2304u);
  const auto map = torch::tensor(saved.values).view({48, 48});
  const auto inside = map.slice(0, 4, 44).slice(1, 4, 44);
  auto border = map.clone();
  border.slice(0, 4, 44).slice(1, 4, 44).zero_();
  // Element by element (a difference of two sums depends on the summation order of the kernel).
  EXPECT_EQ(border.abs().max().item<float>(), 0.0f) << "the border outside the crop has attribution";
  EXPECT_GT(inside.abs().sum().item<float>(), 0.0f);
  // The crop's map is DeepSHAP's on the cropped face against the cropped references.
  auto loaded = fer::load_checkpoint(dir / "m.pt", torch::kCPU);
  fer::DeepShapOptions shap_options;
  shap_options.explain_probabilities = options.probabilities;
  shap_options.background_weights = background.weights;
  fer::DeepShapExplainer direct(loaded.model, fer::center_crop(background.centroids, 40).contiguous(), torch::kCPU,
                                shap_options);
  const auto image = fer::center_crop(face.to(torch::kFloat32).div(255).view({1, 1, 48, 48}), 40).contiguous();
  const int64_t predicted = loaded.model->forward(image).argmax(1).item<int64_t>();
  const auto expected = direct.explain(image[0], {predicted}).attributions[0];
  EXPECT_LT((inside - expected).abs().max().item<float>(), 1e-5f * expected.abs().max().item<float>() + 1e-8f);
}

// LIME uses a background only as the faithfulness curves' baseline: a given
// --background N is that baseline; without one (and none stored) it is mid-grey.
TEST(Explain, LimeTakesTheGivenBackgroundAsItsFaithfulnessBaseline) {
  fer_test::SyntheticData data(2, 1);
  fer_test::TempDir dir;
  fer::ModelOptions o;
  fer::save_checkpoint(dir / "m.pt", *paper_cnn_with_batchnorm_statistics(7),
                       {o, {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"}, {}});
  const std::string common = std::string(fer_test::bin_dir()) + "/fer-explain --model " + (dir / "m.pt") + " --input " +
                             data.csv + " --limit 2 --samples 64 --method lime --threads 1";
  ASSERT_EQ(std::system((common + " --background 6 --out " + (dir / "given") + " > /dev/null 2>&1").c_str()), 0);
  ASSERT_EQ(std::system((common + " --out " + (dir / "none") + " > /dev/null 2>&1").c_str()), 0);
  const auto baseline = [](const std::string& path) {
    std::ifstream in(path);
    return nlohmann::json::parse(in).at("baseline").get<std::string>();
  };
  EXPECT_EQ(baseline(dir / "given/faithfulness.json"), "mean of the 6 background references");
  EXPECT_EQ(baseline(dir / "none/faithfulness.json"), "mid-grey (0.5): no background");
}
