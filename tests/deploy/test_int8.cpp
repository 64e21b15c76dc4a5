// The int8 export (post-training static quantization) against the float
// model it came from, and fer-export's TorchScript files loaded back as
// checkpoints (what fer-eval and fer-live run).
#include <gtest/gtest.h>
#include <torch/script.h>

#include "deploy/export_fixture.h"
#include "fer/common/precision.h"
#include "fer/deploy/export.h"

namespace {

double accuracy(const torch::Tensor& probabilities, const torch::Tensor& labels) {
  return probabilities.argmax(1).eq(labels).to(torch::kFloat64).mean().item<double>();
}

}  // namespace

// Every PublicTest face of both shipped architectures (48 px, and 40 px
// cropped inside), calibrated on Training faces only.
TEST(DeployInt8, ShippedModelsKeepTheirPublicTestAccuracyWithinAPoint) {
  const std::string csv = fer_test::real_fer2013();
  if (csv.empty()) GTEST_SKIP() << "FER-2013 not found";
  const auto data = fer::load_dataset(csv);
  const auto calibration = fer::calibration_images(data.train, 1000);
  const auto faces = fer::images_tensor(data.val);
  const auto labels = torch::tensor(data.val.labels);
  fer_test::TempDir dir;
  for (const auto& name : fer_test::export_models()) {
    SCOPED_TRACE(name);
    const auto ckpt = fer_test::shipped_checkpoint(name);
    const auto fp32 = fer_test::libfer_probabilities(ckpt, faces);
    fer::save_int8(dir / (name + ".pt"), ckpt, calibration);
    const auto int8 = fer::load_checkpoint(dir / (name + ".pt"), torch::kCPU);
    EXPECT_EQ(int8.meta.class_names, ckpt.meta.class_names);
    ASSERT_EQ(int8.meta.model.input_size, 48);  // the crop to the model's size is inside
    const auto got = fer::predict_probabilities(*int8.model, faces, torch::kCPU);
    EXPECT_NEAR(accuracy(got, labels), accuracy(fp32, labels), 0.01);
    EXPECT_GT(got.argmax(1).eq(fp32.argmax(1)).to(torch::kFloat64).mean().item<double>(), 0.95);
    EXPECT_LT((got - fp32).abs().mean().item<float>(), 0.02f);

    // The file alone (no libfer types): torch::jit::load with a quantized engine, probabilities out.
    auto module = torch::jit::load(dir / (name + ".pt"));
    torch::NoGradGuard no_grad;
    const auto plain = module.forward({fer_test::export_input(faces.slice(0, 0, 64))}).toTensor();
    EXPECT_LT((plain - got.slice(0, 0, 64)).abs().max().item<float>(), 1e-5f);
  }
}

TEST(DeployInt8, RefusesBadCalibrationAndDevicesOtherThanTheCpu) {
  const auto ckpt = fer_test::random_paper_cnn();
  fer_test::TempDir dir;
  EXPECT_THROW(fer::save_int8(dir / "a.pt", ckpt, torch::Tensor()), std::invalid_argument);
  EXPECT_THROW(fer::save_int8(dir / "a.pt", ckpt, torch::zeros({0, 48, 48}, torch::kUInt8)), std::invalid_argument);
  EXPECT_THROW(fer::save_int8(dir / "a.pt", ckpt, torch::zeros({4, 48, 48})), std::invalid_argument);
  EXPECT_THROW(fer::calibration_images(fer::Dataset{}, 10), std::invalid_argument);
  EXPECT_FALSE(std::filesystem::exists(dir / "a.pt"));

  fer::save_int8(dir / "m.pt", ckpt, torch::randint(0, 256, {8, 48, 48}, torch::kUInt8));
  try {
    fer::load_checkpoint(dir / "m.pt", torch::Device(torch::kCUDA, 0));
    FAIL() << "an int8 model loaded onto CUDA";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("CPU only"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(fer::load_checkpoint(dir / "m.pt", torch::kCPU).model->sequential_layers().empty());
}

TEST(DeployInt8, CalibrationImagesAreEvenlySpacedThroughTheSplit) {
  fer::Dataset split;
  std::vector<std::uint8_t> image(fer::kImagePixels);
  for (int i = 0; i < 10; ++i) {
    std::fill(image.begin(), image.end(), static_cast<std::uint8_t>(i));
    split.add(image.data(), 0, "row" + std::to_string(i));
  }
  const auto picked = fer::calibration_images(split, 4);  // 0, 3, 6, 9
  ASSERT_EQ(picked.sizes(), (std::vector<int64_t>{4, 48, 48}));
  EXPECT_TRUE(torch::equal(picked.select(2, 0).select(1, 0), torch::tensor({0, 3, 6, 9}, torch::kUInt8)));
  EXPECT_EQ(fer::calibration_images(split, 50).size(0), 10);
}

// fer-export's float TorchScript, either output, read back by load_checkpoint
// is the model it came from (fer-eval and fer-live take such files by path).
TEST(DeployExport, TorchScriptFilesLoadBackAsTheModel) {
  const auto ckpt = fer_test::random_paper_cnn(44);
  const auto faces = torch::randint(0, 256, {9, 48, 48}, torch::kUInt8);
  const auto expected = fer_test::libfer_probabilities(ckpt, faces);
  fer_test::TempDir dir;
  for (const auto output : {fer::ExportOutput::probabilities, fer::ExportOutput::logits}) {
    fer::ExportOptions options;
    options.output = output;
    fer::save_torchscript(dir / "m.pt", ckpt, options);
    const auto loaded = fer::load_checkpoint(dir / "m.pt", torch::kCPU);
    EXPECT_EQ(loaded.meta.model.input_size, 48);
    EXPECT_EQ(loaded.meta.model.architecture, "paper_cnn");
    const auto got = fer::predict_probabilities(*loaded.model, faces, torch::kCPU);
    EXPECT_LT((got - expected).abs().max().item<float>(), 1e-5f) << fer::export_output_name(output);
  }
}
