// The ONNX export run by OpenCV's DNN module gives libfer's probabilities.
#include <gtest/gtest.h>

#include <opencv2/dnn.hpp>

#include "deploy/export_fixture.h"
#include "fer/deploy/export.h"

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
