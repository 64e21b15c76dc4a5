// Uses the installed package: builds the paper CNN and checks its output shape
// and parameter count (5,016,167 for the paper's CNN).
#include <torch/torch.h>

#include <cstdio>

#include "fer/models/model.h"

int main() {
  fer::Classifier net = fer::make_model(fer::ModelOptions{});
  const auto logits = net->forward(torch::zeros({2, 1, 48, 48}));
  const bool ok = logits.size(0) == 2 && logits.size(1) == 7 && fer::count_parameters(*net) == 5016167;
  std::printf("consumer: logits %ldx%ld, %ld parameters: %s\n", static_cast<long>(logits.size(0)),
              static_cast<long>(logits.size(1)), static_cast<long>(fer::count_parameters(*net)), ok ? "ok" : "WRONG");
  return ok ? 0 : 1;
}
