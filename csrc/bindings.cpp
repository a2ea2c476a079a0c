// Thin torch binding for the fused kernels: checks arguments, makes inputs
// contiguous and 16-byte aligned, allocates outputs and calls the plain launchers
// declared in fused_kernels.h on the current CUDA stream. No kernel logic here.
#include <torch/extension.h>

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <cstdint>

#include "fused_kernels.h"

namespace {

plmscale::DType kernel_dtype(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat:
      return plmscale::DType::kFloat32;
    case at::kHalf:
      return plmscale::DType::kFloat16;
    case at::kBFloat16:
      return plmscale::DType::kBFloat16;
    default:
      TORCH_CHECK(false, "plmscale fused kernels support float32, float16 and bfloat16, got ",
                  t.scalar_type());
  }
}

void check_status(int code, const char* what) {
  TORCH_CHECK(code == 0, "plmscale fused kernel ", what, " failed: ", plmscale::error_string(code));
}

// The kernels use 16-byte vector accesses from the aligned base: a view with an
// odd storage offset gets copied to a fresh (aligned) allocation.
at::Tensor aligned_contiguous(const at::Tensor& t) {
  at::Tensor c = t.contiguous();
  if (c.numel() > 0 && reinterpret_cast<uintptr_t>(c.data_ptr()) % 16 != 0) {
    c = c.clone(at::MemoryFormat::Contiguous);
  }
  return c;
}

void check_cuda_pair(const at::Tensor& a, const at::Tensor& b, const char* an, const char* bn) {
  TORCH_CHECK(a.is_cuda(), an, " must be a CUDA tensor");
  TORCH_CHECK(b.device() == a.device(), bn, " must be on ", a.device(), ", got ", b.device());
  TORCH_CHECK(b.scalar_type() == a.scalar_type(), bn, " must have dtype ", a.scalar_type(),
              ", got ", b.scalar_type());
}

void* current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

// A fresh output shaped like `like`, or the caller's `out` (tests pass poisoned
// buffers this way). `out` must not alias an input.
at::Tensor output_like(const at::Tensor& like, const c10::optional<at::Tensor>& out,
                       const char* what) {
  if (!out.has_value() || !out->defined()) return at::empty(like.sizes(), like.options());
  const at::Tensor& o = *out;
  TORCH_CHECK(o.sizes() == like.sizes() && o.scalar_type() == like.scalar_type() &&
                  o.device() == like.device(),
              what, ": out must be ", like.scalar_type(), " ", like.sizes(), " on ", like.device());
  TORCH_CHECK(o.is_contiguous() && reinterpret_cast<uintptr_t>(o.data_ptr()) % 16 == 0, what,
              ": out must be contiguous and 16-byte aligned");
  return o;
}

// ---- bias + GELU ---------------------------------------------------------
void check_bias(const at::Tensor& x, const at::Tensor& bias) {
  check_cuda_pair(x, bias, "x", "bias");
  TORCH_CHECK(x.dim() >= 1, "x must have at least one dimension");
  TORCH_CHECK(bias.dim() == 1 && bias.size(0) == x.size(-1), "bias must have shape [",
              x.size(-1), "], got ", bias.sizes());
}

at::Tensor bias_gelu_forward(const at::Tensor& x, const at::Tensor& bias, bool tanh_form,
                             const c10::optional<at::Tensor>& out) {
  check_bias(x, bias);
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor xc = aligned_contiguous(x);
  const at::Tensor bc = aligned_contiguous(bias);
  at::Tensor y = output_like(xc, out, "bias_gelu_forward");
  if (xc.numel() == 0) return y;
  check_status(plmscale::bias_gelu_forward(kernel_dtype(xc), xc.data_ptr(), bc.data_ptr(),
                                           y.data_ptr(), xc.numel(), bc.numel(), tanh_form,
                                           current_stream()),
               "bias_gelu_forward");
  return y;
}

// Returns (dx, dbias); dbias is undefined unless need_dbias.
std::vector<at::Tensor> bias_gelu_backward(const at::Tensor& dy, const at::Tensor& x,
                                           const at::Tensor& bias, bool tanh_form,
                                           bool need_dbias,
                                           const c10::optional<at::Tensor>& out) {
  check_bias(x, bias);
  check_cuda_pair(x, dy, "x", "dy");
  TORCH_CHECK(dy.sizes() == x.sizes(), "dy must have the shape of x");
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor xc = aligned_contiguous(x);
  const at::Tensor gc = aligned_contiguous(dy);
  const at::Tensor bc = aligned_contiguous(bias);
  const plmscale::DType dt = kernel_dtype(xc);
  const int64_t n = xc.numel(), hidden = bc.numel();
  at::Tensor dx = output_like(xc, out, "bias_gelu_backward");
  at::Tensor dbias;
  if (n == 0) {
    if (need_dbias) dbias = at::zeros_like(bias);
    return {dx, dbias};
  }
  // Partial bias gradients come out of the same pass when the shape allows.
  const int64_t partial_rows =
      need_dbias ? plmscale::bias_gelu_dbias_partial_rows(dt, n, hidden, tanh_form) : 0;
  at::Tensor partial;
  if (partial_rows > 0) partial = at::empty({partial_rows, hidden}, xc.options().dtype(at::kFloat));
  check_status(plmscale::bias_gelu_backward(dt, gc.data_ptr(), xc.data_ptr(), bc.data_ptr(),
                                            dx.data_ptr(),
                                            partial_rows > 0 ? partial.data_ptr<float>() : nullptr,
                                            n, hidden, tanh_form, current_stream()),
               "bias_gelu_backward");
  if (need_dbias) {
    at::Tensor acc = partial_rows > 0 ? partial.sum(0)
                                      : dx.reshape({-1, hidden}).sum(0, false, at::kFloat);
    dbias = acc.to(bias.scalar_type());
  }
  return {dx, dbias};
}

// ---- scaled masked softmax -----------------------------------------------
plmscale::SoftmaxShape softmax_shape(const at::Tensor& t) {
  TORCH_CHECK(t.dim() == 4, "scores must be [batch, heads, sq, sk], got ", t.sizes());
  return plmscale::SoftmaxShape{t.size(0), t.size(1), t.size(2), t.size(3)};
}

at::Tensor softmax_forward(const at::Tensor& scores, const c10::optional<at::Tensor>& mask,
                           double scale, bool causal, const c10::optional<at::Tensor>& out) {
  TORCH_CHECK(scores.is_cuda(), "scores must be a CUDA tensor");
  const plmscale::SoftmaxShape shape = softmax_shape(scores);
  const c10::cuda::CUDAGuard guard(scores.device());
  const at::Tensor x = aligned_contiguous(scores);
  at::Tensor y = output_like(x, out, "scaled_masked_softmax_forward");
  if (x.numel() == 0) return y;

  plmscale::MaskArgs margs{nullptr, 0, 0, 0};
  at::Tensor m;  // keeps a converted mask alive until the launch is queued
  if (mask.has_value() && mask->defined()) {
    m = *mask;
    TORCH_CHECK(m.device() == x.device(), "mask must be on ", x.device(), ", got ", m.device());
    TORCH_CHECK(m.dim() <= 4, "mask must broadcast to [b, h, sq, sk], got ", m.sizes());
    if (m.scalar_type() != at::kBool && m.scalar_type() != at::kByte) m = m.ne(0);
    // Broadcast dims get stride 0: padding and general masks are read in place.
    m = m.expand({shape.batch, shape.heads, shape.sq, shape.sk});
    if (shape.sk > 1 && m.stride(3) != 1) m = m.contiguous();
    margs.ptr = static_cast<const uint8_t*>(m.data_ptr());
    margs.stride_b = m.stride(0);
    margs.stride_h = m.stride(1);
    margs.stride_q = m.stride(2);
  }
  check_status(plmscale::scaled_masked_softmax_forward(kernel_dtype(x), x.data_ptr(), y.data_ptr(),
                                                       shape, margs, static_cast<float>(scale),
                                                       causal, current_stream()),
               "scaled_masked_softmax_forward");
  return y;
}

at::Tensor softmax_backward(const at::Tensor& dy, const at::Tensor& y, double scale, bool causal,
                            const c10::optional<at::Tensor>& out) {
  check_cuda_pair(y, dy, "y", "dy");
  TORCH_CHECK(dy.sizes() == y.sizes(), "dy must have the shape of y");
  const plmscale::SoftmaxShape shape = softmax_shape(y);
  const c10::cuda::CUDAGuard guard(y.device());
  const at::Tensor yc = aligned_contiguous(y);
  const at::Tensor gc = aligned_contiguous(dy);
  at::Tensor dx = output_like(yc, out, "scaled_masked_softmax_backward");
  if (yc.numel() == 0) return dx;
  check_status(plmscale::scaled_masked_softmax_backward(kernel_dtype(yc), gc.data_ptr(),
                                                        yc.data_ptr(), dx.data_ptr(), shape,
                                                        static_cast<float>(scale), causal,
                                                        current_stream()),
               "scaled_masked_softmax_backward");
  return dx;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "plmscale fused CUDA kernels (bias-GELU, scaled masked softmax)";
  m.def("bias_gelu_forward", &bias_gelu_forward, "gelu(x + bias)", py::arg("x"), py::arg("bias"),
        py::arg("tanh_form"), py::arg("out") = py::none());
  m.def("bias_gelu_backward", &bias_gelu_backward, "(dx, dbias) of gelu(x + bias)", py::arg("dy"),
        py::arg("x"), py::arg("bias"), py::arg("tanh_form"), py::arg("need_dbias"),
        py::arg("out") = py::none());
  m.def("scaled_masked_softmax_forward", &softmax_forward, "softmax(scores * scale) with masks",
        py::arg("scores"), py::arg("mask"), py::arg("scale"), py::arg("causal"),
        py::arg("out") = py::none());
  m.def("scaled_masked_softmax_backward", &softmax_backward, "scale * y * (dy - sum(dy * y))",
        py::arg("dy"), py::arg("y"), py::arg("scale"), py::arg("causal"),
        py::arg("out") = py::none());
}
