// Scaled masked softmax backward launcher (kernels in softmax.cuh).
#include "softmax.cuh"

namespace plmscale {

int scaled_masked_softmax_backward(DType dtype, const void* dy, const void* y, void* dx,
                                   SoftmaxShape shape, float scale, bool causal, void* stream) {
  return softmax_impl::dispatch<true>(
      dtype, softmax_impl::Args{dy, y, dx, shape, MaskArgs{nullptr, 0, 0, 0}, scale, causal,
                                static_cast<cudaStream_t>(stream), 0});
}

}  // namespace plmscale
