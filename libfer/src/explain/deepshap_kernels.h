// DeepSHAP's per-(image, reference) multiplier loops on raw float rows, for
// the CPU fast path (deepshap.cpp runs them over all pairs in parallel). They
// compute the same floats as the tensor-op rules in deepshap.cpp; this file is
// compiled without trapping math so that the ReLU loop vectorises.
#pragma once

#include <cstdint>

namespace fer::deepshap_kernels {

// ReLU's rescale multiplier of every element: (relu(x) - relu(ref)) / (x - ref),
// or the derivative (x > 0) where |x - ref| < 1e-6. n floats each.
void relu_rescale_row(const float* x, const float* ref, float* out, std::int64_t n);

// The max-pool rule for windows that tile the input, one pair: every array is
// channels-last (position-major, `channels` innermost). y/idx: the input's
// window maxima and their flat input positions, y_ref/idx_ref the reference's,
// `windows` positions each; x/ref: the inputs. Writes the multiplier at the
// argmax positions of `out` (which must hold zeros elsewhere).
void tiled_max_pool_row(const float* x, const float* ref, const float* y, const float* y_ref, const std::int64_t* idx,
                        const std::int64_t* idx_ref, float* out, std::int64_t windows, std::int64_t channels);

// The tiling max-pool's backward for one row: each output multiplier g
// [out_h, out_w, channels] spread over its kernel x kernel window and times
// the per-position multiplier m [height, width, channels] into out (same
// shape as m); positions no window covers get 0. Channels-last throughout.
void spread_times_row(const float* g, const float* m, float* out, std::int64_t height, std::int64_t width,
                      std::int64_t channels, std::int64_t kernel);

}  // namespace fer::deepshap_kernels
