// TorchScript export against libfer's own predict, in C++ and in Python
// PyTorch; the exporters' refusals; ONNX metadata and the onnx checker.
#include <gtest/gtest.h>
#include <torch/script.h>

#include <nlohmann/json.hpp>

#include "deploy/export_fixture.h"
#include "fer/deploy/export.h"

namespace {

constexpr int64_t kFaces = 256;

void write_floats(const std::string& path, const torch::Tensor& t) {
  const auto c = t.contiguous();
  fer_test::write_file(path, std::string(static_cast<const char*>(c.data_ptr()), c.numel() * sizeof(float)));
}

bool python_has(const std::string& module) {
  return std::system(("/usr/bin/python3 -c 'import " + module + "' >/dev/null 2>&1").c_str()) == 0;
}

// A chain with a layer no exporter knows (Tanh).
class WithTanhImpl : public fer::SequentialClassifierImpl {
 public:
  WithTanhImpl() {
    add("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 2, 3).padding(1)));
    add("squash", torch::nn::Tanh());
    add("flatten", torch::nn::Flatten());
    add("fc", torch::nn::Linear(2 * 48 * 48, 7));
  }
};

}  // namespace

TEST(DeployExport, TorchScriptForwardIsLibfersPredictInCppAndPython) {
  const auto faces = fer_test::public_test_faces(kFaces);
  if (!faces.defined()) GTEST_SKIP() << "FER-2013 not found";
  const bool python = python_has("torch");
  fer_test::TempDir dir;
  for (const auto& name : fer_test::export_models()) {
    SCOPED_TRACE(name);
    const auto ckpt = fer_test::shipped_checkpoint(name);
    const auto expected = fer_test::libfer_probabilities(ckpt, faces);
    fer::save_torchscript(dir / (name + ".pt"), ckpt);
    auto module = torch::jit::load(dir / (name + ".pt"));
    torch::NoGradGuard no_grad;
    const auto got = module.forward({fer_test::export_input(faces)}).toTensor();
    ASSERT_EQ(got.sizes(), expected.sizes());
    EXPECT_LT((got - expected).abs().max().item<float>(), 1e-5f);
    if (!python) continue;
    write_floats(dir / "x.f32", fer_test::export_input(faces));
    write_floats(dir / "p.f32", expected);
    const std::string command = "/usr/bin/python3 " + std::string(fer_test::source_dir()) +
                                "/tests/deploy/check_torchscript.py " + dir / (name + ".pt") + " " + dir / "x.f32" + " " +
                                dir / "p.f32" + " " + std::to_string(kFaces) + " 7";
    EXPECT_EQ(std::system(command.c_str()), 0) << command;
  }
  if (!python) GTEST_SKIP() << "python3-torch not installed: the Python half did NOT run";
}

TEST(DeployExport, LogitsOutputIsTheModelsForwardOnTheCentreCrop) {
  auto ckpt = fer_test::random_paper_cnn(40);
  fer_test::TempDir dir;
  fer::ExportOptions options;
  options.output = fer::ExportOutput::logits;
  fer::save_torchscript(dir / "m.pt", ckpt, options);
  auto module = torch::jit::load(dir / "m.pt");
  torch::NoGradGuard no_grad;
  const auto x = torch::rand({5, 1, 48, 48});
  const auto got = module.forward({x}).toTensor();
  const auto expected = ckpt.model->forward(x.narrow(2, 4, 40).narrow(3, 4, 40).contiguous());
  EXPECT_LT((got - expected).abs().max().item<float>(), 1e-5f);
}

TEST(DeployExport, RefusesLayersWithoutAnExporterAndTooSmallImages) {
  fer::LoadedCheckpoint c = fer_test::random_paper_cnn();
  c.model = std::make_shared<WithTanhImpl>();
  try {
    fer::onnx_model_bytes(c);
    FAIL() << "exported a Tanh";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("'squash'"), std::string::npos) << e.what();
  }
  fer::ExportOptions small;
  small.image_size = 40;
  EXPECT_THROW(fer::onnx_model_bytes(fer_test::random_paper_cnn(48), small), std::invalid_argument);
  EXPECT_THROW(fer::parse_export_output("softmax"), std::invalid_argument);
}

// A model of 64x64 faces takes 64x64 images by default (its image_size), and
// crops its 56x56 input inside; --image-size still sets another side.
TEST(DeployExport, TheGraphTakesTheModelsFaceSize) {
  auto c = fer_test::random_paper_cnn(56);
  c.meta.model.image_size = 64;
  c.model = fer::make_model(c.meta.model);
  c.model->eval();
  fer_test::TempDir dir;
  fer::save_onnx(dir / "m.onnx", c);
  const auto meta = nlohmann::json::parse(fer::onnx_metadata(dir / "m.onnx").at("libfer_meta"));
  EXPECT_EQ(meta.at("export").at("input_shape"), nlohmann::json({"N", 1, 64, 64}));
  EXPECT_EQ(meta.at("preprocessing").at("height"), 64);
  fer::ExportOptions wider;
  wider.image_size = 72;
  fer::save_onnx(dir / "w.onnx", c, wider);
  const auto wide = nlohmann::json::parse(fer::onnx_metadata(dir / "w.onnx").at("libfer_meta"));
  EXPECT_EQ(wide.at("export").at("input_shape"), nlohmann::json({"N", 1, 72, 72}));
}

TEST(DeployExport, OnnxCarriesTheMetadataAndPassesTheOnnxChecker) {
  fer_test::TempDir dir;
  const auto ckpt = fer_test::random_paper_cnn(44);
  for (const auto output : {fer::ExportOutput::probabilities, fer::ExportOutput::logits}) {
    fer::ExportOptions options;
    options.output = output;
    const std::string path = dir / (fer::export_output_name(output) + ".onnx");
    fer::save_onnx(path, ckpt, options);
    const auto meta = nlohmann::json::parse(fer::onnx_metadata(path).at("libfer_meta"));
    EXPECT_EQ(meta.at("class_names"), nlohmann::json(ckpt.meta.class_names));
    EXPECT_EQ(meta.at("model").at("input_size"), 44);
    EXPECT_EQ(meta.at("export").at("output"), fer::export_output_name(output));
    if (!python_has("onnx")) GTEST_SKIP() << "python3-onnx not installed: the checker did NOT run";
    const std::string command = "/usr/bin/python3 " + std::string(fer_test::source_dir()) +
                                "/tests/deploy/check_onnx.py " + path + " 7 " + fer::export_output_name(output);
    EXPECT_EQ(std::system(command.c_str()), 0) << command;
  }
  EXPECT_THROW(fer::onnx_metadata(dir / "missing.onnx"), std::runtime_error);
  fer_test::write_file(dir / "bad.onnx", std::string("\x0a\x7f", 2));
  EXPECT_THROW(fer::onnx_metadata(dir / "bad.onnx"), std::runtime_error);
}
