#include "deepshap_kernels.h"

namespace fer::deepshap_kernels {

void relu_rescale_row(const float* __restrict x, const float* __restrict ref, float* __restrict out, std::int64_t n) {
  // Branch-free, so that it vectorises (both sides of each choice are computed).
  for (std::int64_t i = 0; i < n; ++i) {
    const float dx = x[i] - ref[i];
    const bool small = (dx < 0 ? -dx : dx) < 1e-6f;
    const float y = x[i] > 0 ? x[i] : 0.0f, y_ref = ref[i] > 0 ? ref[i] : 0.0f;
    const float ratio = (y - y_ref) / (small ? 1.0f : dx);
    out[i] = small ? (x[i] > 0 ? 1.0f : 0.0f) : ratio;
  }
}

namespace {
// share / delta, or 0 where |delta| < 1e-7 (as safe_reciprocal in deepshap.cpp).
float share_over_delta(float share, float delta) {
  return share * ((delta < 0 ? -delta : delta) < 1e-7f ? 0.0f : 1.0f / delta);
}
}  // namespace

void tiled_max_pool_row(const float* x, const float* ref, const float* y, const float* y_ref, const std::int64_t* idx,
                        const std::int64_t* idx_ref, float* out, std::int64_t windows, std::int64_t channels) {
  for (std::int64_t w = 0; w < windows; ++w) {
    for (std::int64_t c = 0; c < channels; ++c) {
      const std::int64_t at = w * channels + c;
      const float cross = y[at] > y_ref[at] ? y[at] : y_ref[at];
      const float own = cross - y_ref[at], theirs = y[at] - cross;  // routed to the input's / reference's argmax
      const std::int64_t in = idx[at] * channels + c, rf = idx_ref[at] * channels + c;
      if (in == rf) {
        out[in] = share_over_delta(own + theirs, x[in] - ref[in]);
      } else {
        out[in] = share_over_delta(own + 0.0f, x[in] - ref[in]);
        out[rf] = share_over_delta(0.0f + theirs, x[rf] - ref[rf]);
      }
    }
  }
}

void spread_times_row(const float* __restrict g, const float* __restrict m, float* __restrict out, std::int64_t height,
                      std::int64_t width, std::int64_t channels, std::int64_t kernel) {
  const std::int64_t out_h = height / kernel, out_w = width / kernel;
  for (std::int64_t h = 0; h < height; ++h) {
    for (std::int64_t w = 0; w < width; ++w) {
      float* to = out + (h * width + w) * channels;
      const float* by = m + (h * width + w) * channels;
      if (h / kernel >= out_h || w / kernel >= out_w) {
        for (std::int64_t c = 0; c < channels; ++c) to[c] = 0.0f;
        continue;
      }
      const float* from = g + ((h / kernel) * out_w + w / kernel) * channels;
      for (std::int64_t c = 0; c < channels; ++c) to[c] = from[c] * by[c];
    }
  }
}

}  // namespace fer::deepshap_kernels
