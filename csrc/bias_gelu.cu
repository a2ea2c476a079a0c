// Fused bias + GELU, forward and backward, fp32/fp16/bf16, math in fp32.
//
// Forward reads x once and writes y once. Backward recomputes gelu'(x + bias)
// from the saved x (no activation saved), reads dy and x once, writes dx once,
// and, when hidden is a multiple of the pack width, also accumulates the bias
// gradient in registers: each thread owns one 16-byte column slice, keeps its
// bias slice and partial dbias in registers and walks down the rows.
#include "common.cuh"

namespace plmscale {
namespace {

using detail::from_float;
using detail::load_pack;
using detail::Pack;
using detail::store_pack;
using detail::to_float;

// The math is fp32 for every dtype. fp32 tensors use the accurate erff/expf/tanhf.
// 16-bit tensors move half the bytes per element, which at H100/H200 bandwidth
// leaves only ~30 instructions per element: accurate erff alone (~25) would make
// the kernel compute-bound, so they use cheaper forms whose error (< 2e-7
// absolute) is far below 16-bit output resolution.
constexpr float kInvSqrt2 = 0.70710678118654752f;
constexpr float kInvSqrt2Pi = 0.39894228040143268f;
constexpr float kBeta = 0.79788456080286536f;  // sqrt(2 / pi)
constexpr float kKappa = 0.044715f;

// Exact GELU: z * Phi(z).
template <bool kFast>
struct GeluErf {
  // Phi(z) and phi(z).
  __device__ __forceinline__ static void cdf_pdf(float z, float& cdf, float& pdf) {
    if constexpr (kFast) {
      // erfc(x) = t P(t) exp(-x^2), t = 1 / (1 + p x), x = |z| / sqrt(2): Abramowitz &
      // Stegun 7.1.26, |error| <= 1.5e-7. exp(-x^2) is also what phi needs.
      const float x = fabsf(z) * kInvSqrt2;
      const float t = __fdividef(1.0f, 1.0f + 0.3275911f * x);
      const float poly =
          t * (0.254829592f +
               t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
      const float e = __expf(-x * x);
      const float half_erfc = 0.5f * poly * e;
      cdf = z >= 0.0f ? 1.0f - half_erfc : half_erfc;
      pdf = kInvSqrt2Pi * e;
    } else {
      cdf = 0.5f * (1.0f + erff(z * kInvSqrt2));
      pdf = kInvSqrt2Pi * expf(-0.5f * z * z);
    }
  }
  __device__ __forceinline__ static float fwd(float z) {
    if constexpr (kFast) {
      float cdf, pdf;
      cdf_pdf(z, cdf, pdf);
      return z * cdf;
    } else {
      return 0.5f * z * (1.0f + erff(z * kInvSqrt2));
    }
  }
  // Phi(z) + z * phi(z)
  __device__ __forceinline__ static float grad(float z) {
    float cdf, pdf;
    cdf_pdf(z, cdf, pdf);
    return cdf + z * pdf;
  }
};

// 0.5 z (1 + tanh(u)), u = sqrt(2/pi) (z + 0.044715 z^3). The fast form uses the
// identity 0.5 (1 + tanh(u)) = sigmoid(2u), which also avoids 1 + tanh cancelling
// for negative z.
template <bool kFast>
struct GeluTanh {
  // s = 0.5 (1 + tanh(u)) and du/dz.
  __device__ __forceinline__ static float half_one_plus_tanh(float z, float& du) {
    const float z2 = z * z;
    du = kBeta * (1.0f + 3.0f * kKappa * z2);
    const float u = kBeta * z * (1.0f + kKappa * z2);
    if constexpr (kFast) {
      // exp overflowing to inf for very negative z gives s = 0, as it should.
      return __fdividef(1.0f, 1.0f + __expf(-2.0f * u));
    } else {
      return 0.5f * (1.0f + tanhf(u));
    }
  }
  __device__ __forceinline__ static float fwd(float z) {
    float du;
    return z * half_one_plus_tanh(z, du);
  }
  // s + z ds/dz, ds/dz = 2 s (1 - s) du/dz
  __device__ __forceinline__ static float grad(float z) {
    float du;
    const float s = half_one_plus_tanh(z, du);
    return s + 2.0f * z * s * (1.0f - s) * du;
  }
};

constexpr int kThreads = 256;

// hidden % Pack<T>::kN == 0: 2-D grid, x over 16-byte column slices, y over rows.
template <typename T, typename Form, bool kBackward>
__global__ void __launch_bounds__(kThreads)
    bias_gelu_rows_kernel(const T* __restrict__ dy, const T* __restrict__ x,
                          const T* __restrict__ bias, T* __restrict__ out,
                          float* __restrict__ dbias_partial, int64_t rows, int packs_per_row) {
  constexpr int N = Pack<T>::kN;
  const int col = blockIdx.x * blockDim.x + threadIdx.x;
  if (col >= packs_per_row) return;  // no barriers below, so an early exit is fine
  const int64_t hidden = static_cast<int64_t>(packs_per_row) * N;
  const int64_t col_off = static_cast<int64_t>(col) * N;

  const Pack<T> bp = load_pack(bias + col_off);
  float b[N], acc[N];
#pragma unroll
  for (int k = 0; k < N; ++k) {
    b[k] = to_float(bp.v[k]);
    acc[k] = 0.0f;
  }

  const int64_t row0 = static_cast<int64_t>(blockIdx.y) * blockDim.y + threadIdx.y;
  const int64_t row_step = static_cast<int64_t>(gridDim.y) * blockDim.y;
  // kUnroll rows per iteration, loads issued before any math, so each thread has
  // several 16-byte loads in flight (one per row is too few to cover DRAM latency).
  constexpr int kUnroll = 2;
  for (int64_t r = row0; r < rows; r += kUnroll * row_step) {
    Pack<T> xp[kUnroll], gp[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t rr = r + u * row_step;
      if (rr < rows) {
        xp[u] = load_pack(x + rr * hidden + col_off);
        if constexpr (kBackward) gp[u] = load_pack(dy + rr * hidden + col_off);
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t rr = r + u * row_step;
      if (rr >= rows) break;
      Pack<T> o;
      if constexpr (kBackward) {
#pragma unroll
        for (int k = 0; k < N; ++k) {
          const float g = to_float(gp[u].v[k]) * Form::grad(to_float(xp[u].v[k]) + b[k]);
          o.v[k] = from_float<T>(g);
          acc[k] += g;
        }
      } else {
#pragma unroll
        for (int k = 0; k < N; ++k) o.v[k] = from_float<T>(Form::fwd(to_float(xp[u].v[k]) + b[k]));
      }
      store_pack(out + rr * hidden + col_off, o);
    }
  }

  if constexpr (kBackward) {
    if (dbias_partial != nullptr) {
      // Every (row0, col) slot is written, also by threads that saw no rows, so
      // the caller can sum the workspace without zeroing it first.
      float4* p = reinterpret_cast<float4*>(dbias_partial + row0 * hidden + col_off);
#pragma unroll
      for (int k = 0; k < N / 4; ++k) p[k] = make_float4(acc[4 * k], acc[4 * k + 1], acc[4 * k + 2], acc[4 * k + 3]);
    }
  }
}

// Any hidden size: flat grid-stride loop over 16-byte packs, per-element bias
// index (packs may straddle rows), scalar loop for the last n % kN elements.
template <typename T, typename Form, bool kBackward>
__global__ void __launch_bounds__(kThreads)
    bias_gelu_flat_kernel(const T* __restrict__ dy, const T* __restrict__ x,
                          const T* __restrict__ bias, T* __restrict__ out, int64_t n,
                          int64_t hidden) {
  constexpr int N = Pack<T>::kN;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t n_packs = n / N;
  for (int64_t p = tid; p < n_packs; p += step) {
    const int64_t e = p * N;
    int64_t c = e % hidden;
    const Pack<T> xp = load_pack(x + e);
    Pack<T> gp;
    if constexpr (kBackward) gp = load_pack(dy + e);
    Pack<T> o;
#pragma unroll
    for (int k = 0; k < N; ++k) {
      const float z = to_float(xp.v[k]) + to_float(bias[c]);
      if constexpr (kBackward) {
        o.v[k] = from_float<T>(to_float(gp.v[k]) * Form::grad(z));
      } else {
        o.v[k] = from_float<T>(Form::fwd(z));
      }
      if (++c == hidden) c = 0;
    }
    store_pack(out + e, o);
  }
  for (int64_t e = n_packs * N + tid; e < n; e += step) {
    const float z = to_float(x[e]) + to_float(bias[e % hidden]);
    if constexpr (kBackward) {
      out[e] = from_float<T>(to_float(dy[e]) * Form::grad(z));
    } else {
      out[e] = from_float<T>(Form::fwd(z));
    }
  }
}

struct RowsConfig {
  bool use_rows;  // false: flat kernel
  dim3 grid, block;
};

int next_pow2(int v) {
  int p = 1;
  while (p < v) p *= 2;
  return p;
}

int pack_width(DType dtype) { return dtype == DType::kFloat32 ? 4 : 8; }

// One place decides the launch shape, so bias_gelu_dbias_partial_rows and the
// backward launcher always agree on the workspace size. The grid is one wave of
// resident blocks (the row loop does the rest): several waves of equally long
// blocks would leave the device partly idle during the last one.
template <typename T, typename Form, bool kBackward>
RowsConfig rows_config(int64_t n, int64_t hidden) {
  constexpr int N = Pack<T>::kN;
  RowsConfig cfg{false, dim3(1), dim3(kThreads)};
  if (hidden <= 0 || hidden % N != 0 || n % hidden != 0 || hidden / N > (1 << 30)) return cfg;
  const int packs = static_cast<int>(hidden / N);
  const int64_t rows = n / hidden;
  const int bx = next_pow2(packs) < 128 ? next_pow2(packs) : 128;
  const int by = kThreads / bx;
  const int64_t gx = (packs + bx - 1) / bx;
  if (gx > 0x7fffffff) return cfg;
  int per_sm = 0;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(
          &per_sm, bias_gelu_rows_kernel<T, Form, kBackward>, kThreads, 0) != cudaSuccess ||
      per_sm < 1) {
    cudaGetLastError();  // clear it; fall back to a reasonable guess
    per_sm = 4;
  }
  const int64_t want = static_cast<int64_t>(detail::sm_count()) * per_sm;
  int64_t gy = (rows + by - 1) / by;
  const int64_t gy_cap = want / gx > 1 ? want / gx : 1;
  if (gy > gy_cap) gy = gy_cap;
  if (gy > 65535) gy = 65535;
  if (gy < 1) gy = 1;
  cfg.use_rows = true;
  cfg.block = dim3(bx, by);
  cfg.grid = dim3(static_cast<unsigned>(gx), static_cast<unsigned>(gy));
  return cfg;
}

dim3 flat_grid(DType dtype, int64_t n) {
  const int64_t packs = n / pack_width(dtype) + 1;
  int64_t blocks = (packs + kThreads - 1) / kThreads;
  const int64_t cap = static_cast<int64_t>(detail::sm_count()) * 8;
  if (blocks > cap) blocks = cap;
  return dim3(static_cast<unsigned>(blocks < 1 ? 1 : blocks));
}

template <typename T, typename Form, bool kBackward>
int launch(const void* dy, const void* x, const void* bias, void* out, float* dbias_partial,
           int64_t n, int64_t hidden, DType dtype, cudaStream_t stream) {
  if (n == 0) return 0;
  if (hidden <= 0 || !detail::aligned16(x) || !detail::aligned16(out) ||
      (kBackward && !detail::aligned16(dy)))
    return detail::status(cudaErrorInvalidValue);
  const auto* dyp = static_cast<const T*>(dy);
  const auto* xp = static_cast<const T*>(x);
  const auto* bp = static_cast<const T*>(bias);
  auto* op = static_cast<T*>(out);
  const RowsConfig cfg = rows_config<T, Form, kBackward>(n, hidden);
  if (cfg.use_rows && detail::aligned16(bias)) {
    bias_gelu_rows_kernel<T, Form, kBackward><<<cfg.grid, cfg.block, 0, stream>>>(
        dyp, xp, bp, op, dbias_partial, n / hidden, static_cast<int>(hidden / Pack<T>::kN));
  } else {
    if (dbias_partial != nullptr) return detail::status(cudaErrorInvalidValue);
    bias_gelu_flat_kernel<T, Form, kBackward>
        <<<flat_grid(dtype, n), kThreads, 0, stream>>>(dyp, xp, bp, op, n, hidden);
  }
  return detail::status(cudaGetLastError());
}

template <bool kBackward>
int dispatch(DType dtype, bool tanh_form, const void* dy, const void* x, const void* bias,
             void* out, float* dbias_partial, int64_t n, int64_t hidden, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
#define PLMSCALE_GELU_CASE(T)                                                             \
  return tanh_form ? launch<T, GeluTanh<sizeof(T) == 2>, kBackward>(dy, x, bias, out,       \
                                                                    dbias_partial, n, hidden, \
                                                                    dtype, s)                 \
                   : launch<T, GeluErf<sizeof(T) == 2>, kBackward>(dy, x, bias, out,        \
                                                                   dbias_partial, n, hidden,  \
                                                                   dtype, s);
  switch (dtype) {
    case DType::kFloat32:
      PLMSCALE_GELU_CASE(float)
    case DType::kFloat16:
      PLMSCALE_GELU_CASE(__half)
    case DType::kBFloat16:
      PLMSCALE_GELU_CASE(__nv_bfloat16)
  }
#undef PLMSCALE_GELU_CASE
  return detail::status(cudaErrorInvalidValue);
}

}  // namespace

int bias_gelu_forward(DType dtype, const void* x, const void* bias, void* y, int64_t n,
                      int64_t hidden, bool tanh_form, void* stream) {
  return dispatch<false>(dtype, tanh_form, nullptr, x, bias, y, nullptr, n, hidden, stream);
}

int64_t bias_gelu_dbias_partial_rows(DType dtype, int64_t n, int64_t hidden, bool tanh_form) {
  if (n == 0) return 0;
  RowsConfig cfg{};
  switch (dtype) {
    case DType::kFloat32:
      cfg = tanh_form ? rows_config<float, GeluTanh<false>, true>(n, hidden)
                      : rows_config<float, GeluErf<false>, true>(n, hidden);
      break;
    case DType::kFloat16:
      cfg = tanh_form ? rows_config<__half, GeluTanh<true>, true>(n, hidden)
                      : rows_config<__half, GeluErf<true>, true>(n, hidden);
      break;
    case DType::kBFloat16:
      cfg = tanh_form ? rows_config<__nv_bfloat16, GeluTanh<true>, true>(n, hidden)
                      : rows_config<__nv_bfloat16, GeluErf<true>, true>(n, hidden);
      break;
  }
  return cfg.use_rows ? static_cast<int64_t>(cfg.grid.y) * cfg.block.y : 0;
}

int bias_gelu_backward(DType dtype, const void* dy, const void* x, const void* bias, void* dx,
                       float* dbias_partial, int64_t n, int64_t hidden, bool tanh_form,
                       void* stream) {
  return dispatch<true>(dtype, tanh_form, dy, x, bias, dx, dbias_partial, n, hidden, stream);
}

}  // namespace plmscale
