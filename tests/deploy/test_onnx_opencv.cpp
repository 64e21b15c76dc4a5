// The ONNX export run by OpenCV's DNN module gives libfer's probabilities.
#include <gtest/gtest.h>

#include <opencv2/dnn.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>

#include "deploy/export_fixture.h"
#include "fer/config/config.h"
#include "fer/data/augment.h"
#include "fer/deploy/export.h"
#include "fer/live/live_session.h"

TEST(DeployOnnx, OpenCvDnnGivesLibTorchsProbabilitiesOnPublicTestFaces) {
  const auto faces = fer_test::public_test_faces(512);
  if (!faces.defined()) GTEST_SKIP() << "FER-2013 not found";
  fer_test::TempDir dir;
  for (const auto& name : fer_test::export_models()) {
    SCOPED_TRACE(name);
    const auto ckpt = fer_test::shipped_checkpoint(name);
    const auto expected = fer_test::libfer_probabilities(ckpt, faces);
    fer::save_onnx(dir / (name + ".onnx"), ckpt);
    cv::dnn::Net net = cv::dnn::readNetFromONNX(dir / (name + ".onnx"));
    const auto x = fer_test::export_input(faces);
    const int shape[] = {static_cast<int>(x.size(0)), 1, 48, 48};
    net.setInput(cv::Mat(4, shape, CV_32F, x.data_ptr<float>()));
    const cv::Mat out = net.forward();
    ASSERT_EQ(out.rows, faces.size(0));
    ASSERT_EQ(out.cols, 7);
    const auto got = torch::from_blob(const_cast<float*>(out.ptr<float>()), {out.rows, out.cols}, torch::kFloat32);
    EXPECT_LT((got - expected).abs().max().item<float>(), 1e-4f);
    EXPECT_TRUE(torch::equal(got.argmax(1), expected.argmax(1)));
  }
}

namespace {
std::vector<fer::FaceObservation> observations(const std::vector<fer::Face>& faces) {
  std::vector<fer::FaceObservation> out(faces.size());
  for (std::size_t i = 0; i < faces.size(); ++i) out[i].face = faces[i];
  return out;
}

// Two analyzers on every 15th frame of the 9-second clip: the same faces with
// the same probabilities (within 1e-4). Returns how many faces were compared.
int faces_read_alike(fer::FaceAnalyzer& reference, fer::FaceAnalyzer& other, const std::string& clip) {
  cv::VideoCapture video(clip);
  int classified = 0;
  cv::Mat frame;
  for (int i = 0; video.read(frame); ++i) {
    if (i % 15) continue;
    auto a = observations(reference.detect(frame, true, {}));
    auto b = observations(other.detect(frame, true, {}));
    EXPECT_EQ(a.size(), b.size()) << "frame " << i;
    if (a.size() != b.size()) continue;
    reference.classify(frame, a);
    other.classify(frame, b);
    for (std::size_t f = 0; f < a.size(); ++f, ++classified) {
      EXPECT_EQ(a[f].probabilities.size(), 7u);
      for (std::size_t c = 0; c < a[f].probabilities.size(); ++c)
        EXPECT_NEAR(b[f].probabilities[c], a[f].probabilities[c], 1e-4);
    }
  }
  return classified;
}
}  // namespace

// fer-live's analyzer on an exported .onnx file: the checkpoint's faces and
// probabilities on frames of the real clip, with no LibTorch in the loop.
TEST(DeployOnnx, LiveAnalyzerOnAnOnnxFileMatchesTheCheckpointOnTheClip) {
  const auto clip = fer_test::real_clip();
  if (clip.empty()) GTEST_SKIP() << "../shared/data/video/face_clip_640x360.mp4 not found";
  fer_test::TempDir dir;
  const std::string checkpoint = (fer_test::fs::path(fer_test::source_dir()) / "experiments" /
                                  "fer2013_paper_cnn_long" / "best.pt").string();
  fer::save_onnx(dir / "m.onnx", fer::load_checkpoint(checkpoint, torch::kCPU));
  const fer::Config config;
  auto reference = fer::make_model_analyzer(checkpoint, config, torch::kCPU);
  auto onnx = fer::make_model_analyzer(dir / "m.onnx", config, torch::kCPU);
  EXPECT_EQ(onnx->class_names(), reference->class_names());
  EXPECT_EQ(onnx->describe().at("backend"), "opencv_dnn");
  EXPECT_GE(faces_read_alike(*reference, *onnx, clip), 3) << "the clip's speaker was not found";
}

// The ONNX path of fer-live equalises crops with OpenCV, checkpoints with
// equalize_histogram: the two must be one mapping, level for level.
TEST(DeployOnnx, EqualizeHistogramIsOpenCvsEqualizeHist) {
  auto gen = fer::make_cpu_generator(11);
  for (const auto& [low, high] : std::vector<std::pair<int, int>>{{0, 255}, {12, 40}, {200, 255}, {90, 91}, {7, 7}}) {
    SCOPED_TRACE(std::to_string(low) + ".." + std::to_string(high));
    const auto faces = torch::randint(low, high + 1, {4, 48, 48}, gen, torch::kInt64).to(torch::kUInt8).contiguous();
    const auto got = fer::equalize_histogram(faces);
    for (int64_t i = 0; i < faces.size(0); ++i) {
      const cv::Mat face(48, 48, CV_8U, faces[i].data_ptr<std::uint8_t>());
      cv::Mat expected;
      cv::equalizeHist(face, expected);
      const auto mine = got[i].contiguous();
      EXPECT_EQ(cv::countNonZero(cv::Mat(48, 48, CV_8U, mine.data_ptr<std::uint8_t>()) != expected), 0);
    }
  }
}

// An equalising model exported to ONNX gives fer-live the checkpoint's probabilities on the real clip.
TEST(DeployOnnx, AnEqualisingModelReadsTheClipAlikeAsCheckpointAndOnnx) {
  const auto clip = fer_test::real_clip();
  if (clip.empty()) GTEST_SKIP() << "../shared/data/video/face_clip_640x360.mp4 not found";
  fer_test::TempDir dir;
  torch::manual_seed(3);
  auto ckpt = fer_test::random_paper_cnn();
  ckpt.meta.model.normalize = "equalize";
  ckpt.model->set_input_normalization(fer::InputNormalization::equalize);
  fer::save_checkpoint(dir / "m.pt", *ckpt.model, ckpt.meta);
  fer::save_onnx(dir / "m.onnx", fer::load_checkpoint(dir / "m.pt", torch::kCPU));
  const fer::Config config;
  auto reference = fer::make_model_analyzer(dir / "m.pt", config, torch::kCPU);
  auto onnx = fer::make_model_analyzer(dir / "m.onnx", config, torch::kCPU);
  EXPECT_EQ(onnx->describe().at("normalize"), "equalize");
  EXPECT_GE(faces_read_alike(*reference, *onnx, clip), 3) << "the clip's speaker was not found";
}
