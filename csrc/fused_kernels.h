// Host-side launchers for plmscale's fused CUDA kernels.
//
// Plain C++ on purpose: the torch binding (bindings.cpp) includes this header
// without any CUDA headers, and the kernels (*.cu) compile with nvcc alone,
// without torch. Every launcher returns 0 on success or a cudaError_t code
// (see error_string). Streams are passed as void* (a cudaStream_t).
//
// Requirements the binding guarantees: tensors contiguous, data pointers 16-byte
// aligned (the kernels use 16-byte vector loads), element counts below 2^62,
// softmax rows shorter than 2^31 keys.
#pragma once

#include <cstdint>

namespace plmscale {

enum class DType : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2 };

const char* error_string(int code);

// ---- bias + GELU ---------------------------------------------------------
// x: n elements viewed as [n / hidden, hidden]; bias: [hidden].
// y = gelu(x + bias), tanh_form selects the tanh approximation, else erf.
int bias_gelu_forward(DType dtype, const void* x, const void* bias, void* y, int64_t n,
                      int64_t hidden, bool tanh_form, void* stream);

// Number of fp32 rows of partial bias gradients bias_gelu_backward writes when
// given a workspace ([rows, hidden] fp32, summed over rows by the caller), or 0
// when this shape has no fused bias-gradient path (the caller sums dx instead).
int64_t bias_gelu_dbias_partial_rows(DType dtype, int64_t n, int64_t hidden, bool tanh_form);

// dx = dy * gelu'(x + bias). With dbias_partial non-null (sized by
// bias_gelu_dbias_partial_rows) also writes per-thread-row partial sums of dx.
int bias_gelu_backward(DType dtype, const void* dy, const void* x, const void* bias, void* dx,
                       float* dbias_partial, int64_t n, int64_t hidden, bool tanh_form,
                       void* stream);

// ---- scaled masked softmax -----------------------------------------------
struct SoftmaxShape {
  int64_t batch, heads, sq, sk;  // scores are [batch, heads, sq, sk]
};

// Optional byte mask (nonzero = masked out), addressed as
// ptr[b * stride_b + h * stride_h + i * stride_q + j]: broadcast dims have stride 0.
struct MaskArgs {
  const uint8_t* ptr;  // nullptr: no mask tensor
  int64_t stride_b, stride_h, stride_q;
};

// y = softmax(x * scale) over sk, masked keys (mask, and with causal j > i + sk - sq)
// give 0, fully masked rows give all zeros.
int scaled_masked_softmax_forward(DType dtype, const void* x, void* y, SoftmaxShape shape,
                                  MaskArgs mask, float scale, bool causal, void* stream);

// dx = scale * y * (dy - sum_j(dy * y)).
int scaled_masked_softmax_backward(DType dtype, const void* dy, const void* y, void* dx,
                                   SoftmaxShape shape, float scale, bool causal, void* stream);

}  // namespace plmscale
