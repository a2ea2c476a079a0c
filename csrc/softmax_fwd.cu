// Scaled masked softmax forward launcher (kernels in softmax.cuh).
#include "softmax.cuh"

namespace plmscale {

int scaled_masked_softmax_forward(DType dtype, const void* x, void* y, SoftmaxShape shape,
                                  MaskArgs mask, float scale, bool causal, void* stream) {
  return softmax_impl::dispatch<false>(
      dtype, softmax_impl::Args{x, nullptr, y, shape, mask, scale, causal,
                                static_cast<cudaStream_t>(stream), 0});
}

}  // namespace plmscale
