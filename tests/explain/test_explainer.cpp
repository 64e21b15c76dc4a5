// FaceExplainer: a face's explanation equals what its building blocks give
// one by one (DeepSHAP, LIME, the curves), and a failure stays with its face.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "fer/config/config.h"
#include "fer/data/augment.h"
#include "fer/explain/attribution.h"
#include "fer/explain/deepshap.h"
#include "fer/explain/explainer.h"
#include "fer/explain/sanity.h"
#include "fer/explain/sanity_check.h"
#include "fer/inference/inference.h"
#include "fer/models/checkpoint.h"
#include "fer/models/model.h"
#include "test_util.h"

namespace face_explainer_test {

const std::vector<std::string> kSeven{"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"};

torch::Tensor random_faces_tensor(int64_t n, uint64_t seed) {
  auto gen = fer::make_cpu_generator(seed);
  return torch::rand({n, 1, 48, 48}, gen, torch::kFloat32);
}

// A paper CNN with BatchNorm statistics from a few random batches, saved.
fer::Classifier saved_model(const std::string& path) {
  torch::manual_seed(5);
  auto model = fer::make_model(fer::ModelOptions{});
  model->train();
  {
    torch::NoGradGuard no_grad;
    for (int i = 0; i < 3; ++i) model->forward(random_faces_tensor(16, 10 + i));
  }
  model->eval();
  fer::save_checkpoint(path, *model, {fer::ModelOptions{}, kSeven, {}});
  return fer::load_checkpoint(path, torch::kCPU).model;
}

// Two constant references, 0.2 and 0.6, weighted 1:3: their mean is 0.5.
fer::BackgroundSummary two_constant_references() {
  fer::BackgroundSummary b;
  b.centroids = torch::cat({torch::full({1, 1, 48, 48}, 0.2f), torch::full({1, 1, 48, 48}, 0.6f)});
  b.weights = torch::tensor({0.25f, 0.75f});
  b.faces = 4;
  return b;
}

std::vector<float> as_vector(const torch::Tensor& image) {
  const auto c = image.contiguous();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

void expect_same_curves(const fer::FaithfulnessCurves& a, const fer::FaithfulnessCurves& b) {
  ASSERT_EQ(a.deletion.size(), b.deletion.size());
  for (std::size_t i = 0; i < a.deletion.size(); ++i) {
    EXPECT_NEAR(a.deletion[i], b.deletion[i], 1e-6);
    EXPECT_NEAR(a.insertion[i], b.insertion[i], 1e-6);
  }
}

TEST(FaceExplainer, ItsPartsEqualTheBuildingBlocksRunOneByOne) {
  fer_test::TempDir dir;
  auto model = saved_model(dir / "m.pt");
  const auto background = two_constant_references();
  fer::ExplainerOptions o;
  o.classes = "all";
  o.lime_samples = 150;
  o.precision = fer::Precision::fp32;
  o.faithfulness_steps = 8;
  fer::FaceExplainer explainer(dir / "m.pt", background, o);
  ASSERT_EQ(explainer.baseline().size(), 2304u);
  EXPECT_NEAR(explainer.baseline()[0], 0.5f, 1e-6);  // 0.25 * 0.2 + 0.75 * 0.6
  EXPECT_NEAR(explainer.baseline()[2303], 0.5f, 1e-6);

  const auto image = as_vector(random_faces_tensor(1, 3)[0]);
  const auto e = explainer.explain({image}, {41}).at(0);
  ASSERT_TRUE(e.error.empty()) << e.error;

  const auto probs = torch::softmax(model->forward(torch::tensor(image).view({1, 1, 48, 48})), 1)[0];
  ASSERT_EQ(e.probs.size(), 7u);
  for (int c = 0; c < 7; ++c) EXPECT_NEAR(e.probs[c], probs[c].item<float>(), 1e-5);
  EXPECT_EQ(e.predicted, probs.argmax().item<int64_t>());
  EXPECT_EQ(e.classes, (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6}));

  fer::DeepShapOptions shap_options;
  shap_options.background_weights = background.weights;
  fer::DeepShapExplainer shap(model, background.centroids, torch::kCPU, shap_options);
  const auto reference = shap.explain(torch::tensor(image).view({1, 48, 48}), e.classes);
  ASSERT_TRUE(e.shap.defined());
  EXPECT_EQ(e.shap.sizes(), (std::vector<int64_t>{7, 48, 48}));
  EXPECT_LT((e.shap - reference.attributions).abs().max().item<float>(), 1e-5);
  EXPECT_NEAR(e.additivity, reference.additivity_error, 1e-6);

  const auto predictor = fer::probability_predictor(*model, torch::kCPU);
  fer::LimeOptions lime_options;
  lime_options.num_samples = 150;
  lime_options.seed = 41;
  const auto lime = fer::explain_lime(image, 48, 48, predictor, e.predicted, lime_options);
  ASSERT_TRUE(e.lime.has_value());
  EXPECT_EQ(e.lime->label, e.predicted);
  EXPECT_EQ(e.lime->segments, lime.segments);
  ASSERT_EQ(e.lime->weights.size(), lime.weights.size());
  for (std::size_t i = 0; i < lime.weights.size(); ++i) EXPECT_NEAR(e.lime->weights[i], lime.weights[i], 1e-4);

  const auto map = e.shap[e.predicted].contiguous();
  const std::vector<float> predicted_map(map.data_ptr<float>(), map.data_ptr<float>() + 2304);
  ASSERT_EQ(e.faithfulness.size(), 3u);
  expect_same_curves(e.faithfulness.at("shap"), fer::deletion_insertion_curves(image, explainer.baseline(), predicted_map,
                                                                                 e.predicted, predictor, 8));
  expect_same_curves(e.faithfulness.at("random"),
                     fer::deletion_insertion_curves(image, explainer.baseline(), fer::random_pixel_scores(2304, 41),
                                                    e.predicted, predictor, 8));
}

TEST(FaceExplainer, AFailedFaceKeepsItsErrorAndTheOthersTheirExplanations) {
  fer_test::TempDir dir;
  saved_model(dir / "m.pt");
  fer::ExplainerOptions o;
  o.classes = "top:2";
  o.lime_samples = 64;
  o.faithfulness = false;
  fer::FaceExplainer explainer(dir / "m.pt", two_constant_references(), o);
  const auto a = as_vector(random_faces_tensor(1, 1)[0]), b = as_vector(random_faces_tensor(1, 2)[0]);
  const auto together = explainer.explain({a, std::vector<float>(100, 0.5f), b}, {1, 2, 3});
  ASSERT_EQ(together.size(), 3u);
  EXPECT_NE(together[1].error.find("100 values"), std::string::npos) << together[1].error;
  EXPECT_TRUE(together[1].probs.empty());
  const auto alone = explainer.explain({b}, {3}).at(0);
  ASSERT_TRUE(together[0].error.empty() && together[2].error.empty());
  EXPECT_EQ(together[2].classes, alone.classes);
  EXPECT_EQ(together[2].classes.size(), 2u);
  EXPECT_EQ(together[2].classes[0], together[2].predicted);
  EXPECT_LT((together[2].shap - alone.shap).abs().max().item<float>(), 1e-5);
  EXPECT_EQ(together[2].lime->segments, alone.lime->segments);
  EXPECT_TRUE(together[2].faithfulness.empty());

  EXPECT_THROW(explainer.explain({a}, {}), std::invalid_argument);
}

TEST(FaceExplainer, RefusesWhatItCannotExplain) {
  fer_test::TempDir dir;
  saved_model(dir / "m.pt");
  fer::ExplainerOptions o;
  EXPECT_THROW(fer::FaceExplainer(dir / "m.pt", fer::BackgroundSummary{}, o), std::invalid_argument);  // SHAP, no references
  o.classes = "top:8";
  EXPECT_THROW(fer::FaceExplainer(dir / "m.pt", two_constant_references(), o), std::invalid_argument);
  o.classes = "pred";
  o.methods = fer::parse_explain_methods("lime");
  fer::FaceExplainer lime_only(dir / "m.pt", fer::BackgroundSummary{}, o);
  EXPECT_FALSE(lime_only.explains_shap());
  EXPECT_EQ(lime_only.baseline_description(), "mid-grey (0.5): no background");
}

TEST(ExplainMethods, ListsBothAllAndRefusesUnknownOrRepeatedNames) {
  const auto both = fer::parse_explain_methods("both");
  EXPECT_TRUE(both.shap && both.lime && both.maps.empty());
  EXPECT_EQ(fer::explain_methods_text(both), "shap,lime");
  const auto all = fer::parse_explain_methods("all");
  EXPECT_EQ(fer::explain_method_names(all), fer::explain_method_list());
  // The run order (shap, lime, the maps in the list's order) whatever the order given.
  const auto some = fer::parse_explain_methods("occlusion,gradcam++,lime");
  EXPECT_FALSE(some.shap);
  EXPECT_EQ(some.maps, (std::vector<std::string>{"gradcam++", "occlusion"}));
  EXPECT_EQ(fer::parse_explain_methods(fer::explain_methods_text(some)), some);
  try {
    fer::parse_explain_methods("shap,gradcum");
    FAIL() << "an unknown method was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("'gradcum'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("integrated_gradients"), std::string::npos) << e.what();
  }
  EXPECT_THROW(fer::parse_explain_methods("lime,lime"), std::invalid_argument);
  EXPECT_THROW(fer::parse_explain_methods(""), std::invalid_argument);
}

TEST(ExplainMethods, TheExplainKeysBecomeTheAttributionSettings) {
  fer::Config config;
  fer::apply_override(config, "explain.ig_steps=7");
  fer::apply_override(config, "explain.ig_rule=trapezoid");
  fer::apply_override(config, "explain.ig_baseline=blur");
  fer::apply_override(config, "explain.smoothgrad_base=integrated_gradients");
  fer::apply_override(config, "explain.occlusion_patch=6");
  fer::apply_override(config, "explain.cam_layer=block2_conv_1");
  const auto o = fer::with_explain_config({}, config.explain);
  EXPECT_EQ(o.attribution.ig_steps, 7);
  EXPECT_EQ(o.attribution.ig_rule, fer::IntegrationRule::trapezoid);
  EXPECT_EQ(o.ig_baseline, fer::IgBaseline::blur);
  EXPECT_EQ(o.smoothgrad_base, fer::AttributionMethod::integrated_gradients);
  EXPECT_EQ(o.attribution.occlusion_patch, 6);
  EXPECT_EQ(o.attribution.cam_layer, "block2_conv_1");
  EXPECT_THROW(fer::apply_override(config, "explain.ig_baseline=grey"), fer::ConfigError);  // the key's rule
  config.explain.ig_baseline = "grey";  // set in code, past the rule
  EXPECT_THROW(fer::with_explain_config({}, config.explain), std::invalid_argument);
}

// Each map is fer::attribute's on the predicted class, its curves are the
// building block's, and SmoothGrad's noise is the face's seed.
TEST(FaceExplainer, ItsMapsAreTheAttributionsOfThePredictedClass) {
  fer_test::TempDir dir;
  auto model = saved_model(dir / "m.pt");
  fer::ExplainerOptions o;
  o.methods = fer::parse_explain_methods("integrated_gradients,smoothgrad,gradcam,occlusion");
  o.precision = fer::Precision::fp32;
  o.faithfulness_steps = 6;
  o.attribution.ig_steps = 16;
  o.attribution.smoothgrad_samples = 3;
  o.ig_baseline = fer::IgBaseline::mean;
  fer::FaceExplainer explainer(dir / "m.pt", two_constant_references(), o);
  EXPECT_FALSE(explainer.explains_shap());
  const auto images = random_faces_tensor(2, 8);
  const auto e = explainer.explain({as_vector(images[0]), as_vector(images[1])}, {5, 6});
  auto predictor = fer::probability_predictor(*model, torch::kCPU, fer::Precision::fp32, 48);
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(e[i].error.empty()) << e[i].error;
    const auto x = images[i].unsqueeze(0);
    const auto label = torch::tensor({static_cast<int64_t>(e[i].predicted)});
    auto a = o.attribution;
    a.smoothgrad_samples = 0;
    a.baseline = torch::full({1, 1, 48, 48}, 0.5f);  // the references' weighted mean
    const auto ig = fer::attribute(*model, x, label, fer::AttributionMethod::integrated_gradients, a);
    EXPECT_LT((e[i].maps.at("integrated_gradients") - ig.maps[0]).abs().max().item<float>(), 1e-5);
    const double difference = ig.maps.sum().item<double>() - ig.completeness_error[0].item<double>();
    // The two maps' sums differ by at most the summed gap of their pixels (a batch of two against one face
    // rounds differently; on AMX that moved the ratio by 2e-4), and the logits by a few ulps.
    const double sum_gap = (e[i].maps.at("integrated_gradients") - ig.maps[0]).abs().sum().item<double>();
    EXPECT_NEAR(e[i].ig_completeness, std::abs(ig.completeness_error[0].item<double>()) / std::abs(difference),
                (sum_gap + 1e-5) / std::abs(difference));
    const auto cam = fer::attribute(*model, x, label, fer::AttributionMethod::gradcam, a);
    EXPECT_LT((e[i].maps.at("gradcam") - cam.maps[0]).abs().max().item<float>(), 1e-5);
    const auto occlusion = fer::attribute(*model, x, label, fer::AttributionMethod::occlusion, a);
    EXPECT_LT((e[i].maps.at("occlusion") - occlusion.maps[0]).abs().max().item<float>(), 1e-5);
    a.smoothgrad_samples = 3;
    a.seed = 5 + i;
    const auto smooth = fer::attribute(*model, x, label, fer::AttributionMethod::saliency, a);
    EXPECT_LT((e[i].maps.at("smoothgrad") - smooth.maps[0]).abs().max().item<float>(), 1e-5);
    const auto gradcam_map = as_vector(cam.maps[0]);
    expect_same_curves(e[i].faithfulness.at("gradcam"),
                       fer::deletion_insertion_curves(as_vector(images[i]), explainer.baseline(), gradcam_map,
                                                      e[i].predicted, predictor, 6));
    EXPECT_EQ(e[i].faithfulness.size(), 5u);  // the four maps and random
  }
}

TEST(FaceExplainer, ACamLayerItLacksIsAnErrorListingItsLayers) {
  fer_test::TempDir dir;
  saved_model(dir / "m.pt");
  fer::ExplainerOptions o;
  o.methods = fer::parse_explain_methods("gradcam");
  o.attribution.cam_layer = "fc1";  // not a feature map
  try {
    fer::FaceExplainer(dir / "m.pt", fer::BackgroundSummary{}, o);
    FAIL() << "a layer without feature maps was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("explain.cam_layer 'fc1'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("block3_conv_2"), std::string::npos) << e.what();
  }
  o.attribution.cam_layer = "block2_conv_1";
  EXPECT_NO_THROW(fer::FaceExplainer(dir / "m.pt", fer::BackgroundSummary{}, o));
}

TEST(FaceExplainer, AGivenTargetIsTheClassEveryMethodExplains) {
  fer_test::TempDir dir;
  auto model = saved_model(dir / "m.pt");
  fer::ExplainerOptions o;
  o.methods = fer::parse_explain_methods("shap,lime,gradcam");
  o.classes = "top:2";
  o.lime_samples = 64;
  o.faithfulness_steps = 4;
  fer::FaceExplainer explainer(dir / "m.pt", two_constant_references(), o);
  const auto image = random_faces_tensor(1, 4)[0];
  const auto plain = explainer.explain({as_vector(image)}, {1}).at(0);
  const int target = (plain.predicted + 3) % 7;
  const auto e = explainer.explain({as_vector(image)}, {1}, {target}).at(0);
  ASSERT_TRUE(e.error.empty()) << e.error;
  EXPECT_EQ(e.predicted, plain.predicted);  // the prediction stays the model's
  EXPECT_EQ(e.explained, target);
  EXPECT_EQ(e.classes.front(), target);  // top:2 is the target and the most probable other
  EXPECT_EQ(e.classes.back(), plain.predicted);
  EXPECT_EQ(e.lime->label, target);
  const auto cam = fer::attribute(*model, image.unsqueeze(0), torch::tensor({static_cast<int64_t>(target)}),
                                  fer::AttributionMethod::gradcam, o.attribution);
  EXPECT_LT((e.maps.at("gradcam") - cam.maps[0]).abs().max().item<float>(), 1e-5);
  EXPECT_THROW(explainer.explain({as_vector(image)}, {1}, {7}), std::invalid_argument);
}

TEST(SanityCheck, RandomisesEveryLayerInTurnAndScoresEachMethod) {
  fer_test::TempDir dir;
  saved_model(dir / "m.pt");
  fer::SanityCheckOptions o;
  o.explainer.methods = fer::parse_explain_methods("saliency,gradcam");
  o.seed = 9;
  o.work_dir = dir / "work";
  o.strip_faces = 1;
  const auto faces = random_faces_tensor(2, 12);
  const std::vector<std::vector<float>> images{as_vector(faces[0]), as_vector(faces[1])};
  struct CountingSink : fer::ProgressSink {
    std::int64_t* steps;
    explicit CountingSink(std::int64_t* s) : steps(s) {}
    void advance(std::int64_t n, std::int64_t, const std::string&) override { *steps += n; }
    void finish() override {}
  };
  std::int64_t total = 0, steps = 0;
  const auto check = fer::sanity_check(dir / "m.pt", {}, images, {1, 2}, o, [&](std::int64_t t, const std::string&) {
    total = t;
    return std::make_unique<CountingSink>(&steps);
  });
  ASSERT_EQ(check.layers.size(), 8u);
  EXPECT_EQ(check.layers.front(), "fc2");
  EXPECT_EQ(total, 1 + 2 * 8);  // the trained model, 8 cascading steps, 8 layers alone
  EXPECT_EQ(steps, total);
  for (const auto& method : {"saliency", "gradcam"}) {
    ASSERT_EQ(check.cascading.at(method).size(), 8u);
    ASSERT_EQ(check.independent.at(method).size(), 8u);
    // Cascading's first step and independent's first randomise the same layer with the same seed.
    EXPECT_EQ(check.cascading.at(method)[0].spearman, check.independent.at(method)[0].spearman);
    for (const auto& s : check.cascading.at(method)) {
      EXPECT_EQ(s.faces, 2);
      EXPECT_TRUE(s.spearman_abs >= -1 && s.spearman_abs <= 1) << method;
      EXPECT_TRUE(s.ssim >= -1 && s.ssim <= 1) << method;
    }
    ASSERT_EQ(check.strip.at(method).size(), 9u);  // the trained model, then each cascading step
    EXPECT_EQ(check.strip.at(method)[0].size(), 1u);
  }
  // The strip's first row is the trained model's map.
  fer::FaceExplainer trained(dir / "m.pt", {}, o.explainer);
  const auto alone = fer::explained_map(trained.explain({images[0]}, {1}).at(0), "saliency");
  ASSERT_EQ(check.strip.at("saliency")[0][0].size(), alone.size());
  const float scale = *std::max_element(alone.begin(), alone.end());  // saliency is >= 0
  for (std::size_t p = 0; p < alone.size(); ++p)  // one face or two in a batch: float rounding apart
    ASSERT_NEAR(check.strip.at("saliency")[0][0][p], alone[p], 1e-5 * scale) << p;
  EXPECT_FALSE(fer_test::fs::exists(dir / "work/randomised.pt"));
  // Seeded: the same check again gives the same scores.
  const auto again = fer::sanity_check(dir / "m.pt", {}, images, {1, 2}, o);
  EXPECT_EQ(again.cascading.at("gradcam")[5].ssim, check.cascading.at("gradcam")[5].ssim);
  // With every layer redrawn, the saliency maps are another network's: no longer the same ranking.
  const auto verdict = fer::sanity_verdict(check, "saliency", 0.99);
  EXPECT_EQ(verdict.spearman_abs, check.cascading.at("saliency").back().spearman_abs);
  EXPECT_TRUE(verdict.passes) << verdict.spearman_abs;
  EXPECT_FALSE(fer::sanity_verdict(check, "saliency", verdict.spearman_abs).passes);  // strictly below
  EXPECT_THROW(fer::sanity_verdict(check, "lime", 0.5), std::invalid_argument);
}

// A model reading the centre 40x40 of the face: the maps are 0 around it for
// every model, and those ties must not count as agreement.
TEST(SanityCheck, ScoresOnlyThePartOfTheFaceTheModelSees) {
  fer_test::TempDir dir;
  fer::ModelOptions small;
  small.filters = {4, 8};
  small.dense_units = 16;
  small.input_size = 40;
  torch::manual_seed(3);
  auto model = fer::make_model(small);
  model->eval();
  fer::save_checkpoint(dir / "m.pt", *model, {small, kSeven, {}});
  fer::SanityCheckOptions o;
  o.explainer.methods = fer::parse_explain_methods("saliency");
  o.independent = false;
  o.work_dir = dir / "work";
  o.strip_faces = 2;  // every face: the strip holds all the maps scored
  const auto faces = random_faces_tensor(2, 13);
  const auto check = fer::sanity_check(dir / "m.pt", {}, {as_vector(faces[0]), as_vector(faces[1])}, {1, 2}, o);
  const auto& strip = check.strip.at("saliency");
  for (std::size_t k = 0; k < check.layers.size(); ++k) {
    double in_view = 0, whole = 0;
    for (std::size_t f = 0; f < 2; ++f) {
      const auto crop = [&](const std::vector<float>& m) {
        const auto t = torch::tensor(m).view({48, 48}).narrow(0, 4, 40).narrow(1, 4, 40).contiguous();
        return std::vector<float>(t.data_ptr<float>(), t.data_ptr<float>() + t.numel());
      };
      in_view += fer::spearman_correlation(crop(strip[0][f]), crop(strip[k + 1][f])) / 2;
      whole += fer::spearman_correlation(strip[0][f], strip[k + 1][f]) / 2;
    }
    EXPECT_NEAR(check.cascading.at("saliency")[k].spearman_abs, in_view, 1e-9) << check.layers[k];
    EXPECT_GT(whole, in_view) << "the zero border agrees: " << check.layers[k];
  }
}

}  // namespace face_explainer_test
