// Kernels and launch ladder of the scaled masked softmax (instantiated by
// softmax_fwd.cu and softmax_bwd.cu, split so they compile in parallel).
//
// Scaled masked softmax over the last dim of [b, h, sq, sk] scores, forward and
// backward, fp32/fp16/bf16 with fp32 math.
//
// Mask kinds: none, a byte mask addressed through (b, h, i) strides (so padding
// [b,1,1,sk] and general [b,1,sq,sk] masks are read in place, broadcast dims
// having stride 0), and an implicit causal mask (key j masked when
// j > i + sk - sq) that needs no tensor; the kinds combine.
//
// Layout of a row across the threads of its group: the row is cut into 16-byte
// packs counted from the aligned address at or before the row start, so rows of
// any length (odd sk included) get aligned vector accesses for their body; only
// the first and last pack of a row, which straddle neighbouring rows, fall back to
// scalar accesses. `head` is how many elements of that first pack precede the row.
// Consecutive threads own consecutive packs, so a warp's accesses coalesce.
//
// Rows up to 4096 packs (16k fp32 / 32k fp16 keys) live in registers: one
// global read and one global write per element. Longer rows use a streaming
// kernel that reads twice (online max/sum, then normalise-and-write).
// Causally masked keys are never read. Every output element is written, so
// outputs need no initialisation.
//
// The forward works in base 2: its `scale` arrives multiplied by log2(e), so
// exp(x * scale - max) is one exp2f (cheaper than expf at the same accuracy).
#pragma once

#include <numeric>
#include <type_traits>

#include "common.cuh"

namespace plmscale {
namespace softmax_impl {

using detail::from_float;
using detail::load_pack;
using detail::MaxOp;
using detail::Pack;
using detail::raw_get;
using detail::store_pack;
using detail::SumOp;
using detail::to_float;

constexpr int kStreamThreads = 1024;

struct RowInfo {
  int64_t offset;       // element offset of the row: row * sk
  int head;             // elements of the row's first pack that belong to the previous row
  int lim;              // keys [lim, sk) are causally masked (lim = sk without causal)
  const uint8_t* mask;  // this row's mask bytes, or nullptr
};

template <int N>
__device__ __forceinline__ RowInfo row_info(int64_t row, const SoftmaxShape& s, const MaskArgs& m,
                                            bool causal) {
  RowInfo r;
  r.offset = row * s.sk;
  r.head = static_cast<int>(r.offset % N);
  const int64_t i = row % s.sq;
  int64_t lim = s.sk;
  if (causal) {
    lim = i + s.sk - s.sq + 1;  // keys j <= i + sk - sq are visible
    lim = lim < 0 ? 0 : (lim > s.sk ? s.sk : lim);
  }
  r.lim = static_cast<int>(lim);
  r.mask = nullptr;
  if (m.ptr != nullptr) {
    const int64_t bh = row / s.sq;
    r.mask = m.ptr + (bh / s.heads) * m.stride_b + (bh % s.heads) * m.stride_h + i * m.stride_q;
  }
  return r;
}

// N mask bytes starting at p, as one 4- or 8-byte load when p allows it.
template <int N>
__device__ __forceinline__ void load_mask(const uint8_t* __restrict__ p, bool (&masked)[N]) {
  using Word = typename std::conditional<N == 8, unsigned long long, unsigned int>::type;
  static_assert(N == 4 || N == 8, "pack widths are 4 (fp32) or 8 (fp16/bf16)");
  if (reinterpret_cast<uintptr_t>(p) % N == 0) {
    const Word w = __ldg(reinterpret_cast<const Word*>(p));
#pragma unroll
    for (int k = 0; k < N; ++k) masked[k] = ((w >> (8 * k)) & 0xff) != 0;
  } else {
#pragma unroll
    for (int k = 0; k < N; ++k) masked[k] = p[k] != 0;
  }
}

// Keys [j0, j0 + N) of a row, times scale; masked keys and keys outside [0, lim)
// are -inf and not read.
template <typename T>
__device__ __forceinline__ void load_scores(const T* __restrict__ rowx,
                                            const uint8_t* __restrict__ rowmask, int j0, int lim,
                                            float scale, float (&v)[Pack<T>::kN]) {
  constexpr int N = Pack<T>::kN;
  if (j0 >= 0 && j0 + N <= lim) {
    const Pack<T> p = load_pack(rowx + j0);
#pragma unroll
    for (int k = 0; k < N; ++k) v[k] = to_float(p.v[k]) * scale;
    if (rowmask != nullptr) {
      bool masked[N];
      load_mask<N>(rowmask + j0, masked);
#pragma unroll
      for (int k = 0; k < N; ++k) v[k] = masked[k] ? -INFINITY : v[k];
    }
  } else {
#pragma unroll
    for (int k = 0; k < N; ++k) {
      const int j = j0 + k;
      const bool visible = j >= 0 && j < lim && (rowmask == nullptr || rowmask[j] == 0);
      v[k] = visible ? to_float(rowx[j]) * scale : -INFINITY;
    }
  }
}

// y and dy at keys [j0, j0 + N) as raw packs; zeros outside [0, lim) (y is 0
// there anyway, so they add nothing to the dot product).
template <typename T>
__device__ __forceinline__ void load_pair(const T* __restrict__ rowy, const T* __restrict__ rowg,
                                          int j0, int lim, uint4& ry, uint4& rg) {
  constexpr int N = Pack<T>::kN;
  if (j0 >= 0 && j0 + N <= lim) {
    ry = detail::load_raw(rowy + j0);
    rg = detail::load_raw(rowg + j0);
  } else {
    auto in = [&](int k) { return j0 + k >= 0 && j0 + k < lim; };
    ry = detail::load_raw_partial(rowy, j0, in);
    rg = detail::load_raw_partial(rowg, j0, in);
  }
}

// Writes v * mul to keys [j0, j0 + N) that lie in [0, sk).
template <typename T>
__device__ __forceinline__ void store_scaled(T* __restrict__ rowp, int j0, int sk,
                                             const float (&v)[Pack<T>::kN], float mul) {
  constexpr int N = Pack<T>::kN;
  if (j0 >= 0 && j0 + N <= sk) {
    Pack<T> p;
#pragma unroll
    for (int k = 0; k < N; ++k) p.v[k] = from_float<T>(v[k] * mul);
    store_pack(rowp + j0, p);
  } else {
#pragma unroll
    for (int k = 0; k < N; ++k) {
      const int j = j0 + k;
      if (j >= 0 && j < sk) rowp[j] = from_float<T>(v[k] * mul);
    }
  }
}

// Reduction over a row's group: shuffles for GROUP <= 32 (several rows per block),
// shared memory for GROUP > 32 (one row per block, GROUP == block size).
template <int GROUP, int THREADS, typename Op>
__device__ __forceinline__ float group_reduce(float v, float* smem, Op op, float identity) {
  if constexpr (GROUP <= 32) {
    return detail::warp_reduce<GROUP>(v, op);
  } else {
    static_assert(GROUP == THREADS, "a group wider than a warp is the whole block");
    return detail::block_reduce<THREADS>(v, smem, op, identity);
  }
}

template <int GROUP>
__host__ __device__ constexpr int block_threads() {
  return GROUP <= 32 ? 128 : GROUP;
}

// ---- rows held in registers: each thread owns NV packs of its row ----------
template <typename T, int NV, int GROUP>
__global__ void __launch_bounds__(block_threads<GROUP>())
    softmax_fwd_regs_kernel(const T* __restrict__ x, T* __restrict__ y, SoftmaxShape s,
                            MaskArgs m, float scale, bool causal, int64_t rows) {
  constexpr int N = Pack<T>::kN;
  constexpr int kThreads = block_threads<GROUP>();
  constexpr int kRowsPerBlock = kThreads / GROUP;
  __shared__ float smem[kThreads / 32];

  const int g = threadIdx.x % GROUP;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / GROUP;
  // Groups past the last row read and write nothing but still join the shuffles.
  const bool active = row < rows;
  const RowInfo r = row_info<N>(active ? row : 0, s, m, causal);
  const int sk = static_cast<int>(s.sk);
  const int lim = active ? r.lim : 0;

  float v[NV][N];
  float mx = -INFINITY;
#pragma unroll
  for (int k = 0; k < NV; ++k) {
    load_scores<T>(x + r.offset, r.mask, (k * GROUP + g) * N - r.head, lim, scale, v[k]);
#pragma unroll
    for (int e = 0; e < N; ++e) mx = fmaxf(mx, v[k][e]);
  }
  mx = group_reduce<GROUP, kThreads>(mx, smem, MaxOp(), -INFINITY);

  // A fully masked row has mx = -inf: shift by 0 so every exp is exp(-inf) = 0,
  // the sum is 0 and the row is written as zeros instead of NaN.
  const float shift = mx == -INFINITY ? 0.0f : mx;
  float sum = 0.0f;
#pragma unroll
  for (int k = 0; k < NV; ++k) {
#pragma unroll
    for (int e = 0; e < N; ++e) {
      v[k][e] = exp2f(v[k][e] - shift);
      sum += v[k][e];
    }
  }
  sum = group_reduce<GROUP, kThreads>(sum, smem, SumOp(), 0.0f);
  const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;

  if (!active) return;
#pragma unroll
  for (int k = 0; k < NV; ++k) {
    store_scaled<T>(y + r.offset, (k * GROUP + g) * N - r.head, sk, v[k], inv);
  }
}

template <typename T, int NV, int GROUP>
__global__ void __launch_bounds__(block_threads<GROUP>())
    softmax_bwd_regs_kernel(const T* __restrict__ dy, const T* __restrict__ y,
                            T* __restrict__ dx, SoftmaxShape s, float scale, bool causal,
                            int64_t rows) {
  constexpr int N = Pack<T>::kN;
  constexpr int kThreads = block_threads<GROUP>();
  constexpr int kRowsPerBlock = kThreads / GROUP;
  __shared__ float smem[kThreads / 32];

  const int g = threadIdx.x % GROUP;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / GROUP;
  const bool active = row < rows;
  const RowInfo r = row_info<N>(active ? row : 0, s, MaskArgs{nullptr, 0, 0, 0}, causal);
  const int sk = static_cast<int>(s.sk);
  const int lim = active ? r.lim : 0;

  // Kept as raw packs: half the registers of fp32 for 16-bit types.
  uint4 py[NV], pg[NV];
  float dot = 0.0f;
#pragma unroll
  for (int k = 0; k < NV; ++k) {
    load_pair<T>(y + r.offset, dy + r.offset, (k * GROUP + g) * N - r.head, lim, py[k], pg[k]);
#pragma unroll
    for (int e = 0; e < N; ++e) dot += raw_get<T>(py[k], e) * raw_get<T>(pg[k], e);
  }
  dot = group_reduce<GROUP, kThreads>(dot, smem, SumOp(), 0.0f);

  if (!active) return;
#pragma unroll
  for (int k = 0; k < NV; ++k) {
    // Re-convert from the raw packs rather than keep NV * N * 2 floats alive
    // across the reduction (which spills for the widest configurations).
    detail::opaque(py[k]);
    detail::opaque(pg[k]);
    float o[N];
#pragma unroll
    for (int e = 0; e < N; ++e) o[e] = raw_get<T>(py[k], e) * (raw_get<T>(pg[k], e) - dot);
    store_scaled<T>(dx + r.offset, (k * GROUP + g) * N - r.head, sk, o, scale);
  }
}

// ---- long rows: one block per row, two passes over global memory -----------
template <typename T>
__global__ void __launch_bounds__(kStreamThreads)
    softmax_fwd_stream_kernel(const T* __restrict__ x, T* __restrict__ y, SoftmaxShape s,
                              MaskArgs m, float scale, bool causal) {
  constexpr int N = Pack<T>::kN;
  __shared__ float smem[kStreamThreads / 32];
  const RowInfo r = row_info<N>(blockIdx.x, s, m, causal);
  const int sk = static_cast<int>(s.sk);
  const int packs = (r.head + sk + N - 1) / N;

  // Online softmax: running max mx and sum of exp(v - mx), rescaled when mx grows.
  float mx = -INFINITY, sum = 0.0f;
  for (int p = threadIdx.x; p < packs; p += kStreamThreads) {
    float v[N];
    load_scores<T>(x + r.offset, r.mask, p * N - r.head, r.lim, scale, v);
    float cm = -INFINITY;
#pragma unroll
    for (int e = 0; e < N; ++e) cm = fmaxf(cm, v[e]);
    if (cm == -INFINITY) continue;  // nothing visible in this pack
    const float nm = fmaxf(mx, cm);
    sum *= exp2f(mx - nm);  // mx = -inf on the first visible pack: sum was 0 anyway
#pragma unroll
    for (int e = 0; e < N; ++e) sum += exp2f(v[e] - nm);
    mx = nm;
  }
  const float row_max = detail::block_reduce<kStreamThreads>(mx, smem, MaxOp(), -INFINITY);
  const float mine = mx == -INFINITY ? 0.0f : sum * exp2f(mx - row_max);
  const float row_sum = detail::block_reduce<kStreamThreads>(mine, smem, SumOp(), 0.0f);
  const float shift = row_max == -INFINITY ? 0.0f : row_max;
  const float inv = row_sum > 0.0f ? 1.0f / row_sum : 0.0f;

  for (int p = threadIdx.x; p < packs; p += kStreamThreads) {
    float v[N];
    load_scores<T>(x + r.offset, r.mask, p * N - r.head, r.lim, scale, v);
#pragma unroll
    for (int e = 0; e < N; ++e) v[e] = exp2f(v[e] - shift);
    store_scaled<T>(y + r.offset, p * N - r.head, sk, v, inv);
  }
}

template <typename T>
__global__ void __launch_bounds__(kStreamThreads)
    softmax_bwd_stream_kernel(const T* __restrict__ dy, const T* __restrict__ y,
                              T* __restrict__ dx, SoftmaxShape s, float scale, bool causal) {
  constexpr int N = Pack<T>::kN;
  __shared__ float smem[kStreamThreads / 32];
  const RowInfo r = row_info<N>(blockIdx.x, s, MaskArgs{nullptr, 0, 0, 0}, causal);
  const int sk = static_cast<int>(s.sk);
  const int packs = (r.head + sk + N - 1) / N;

  float dot = 0.0f;
  for (int p = threadIdx.x; p < packs; p += kStreamThreads) {
    uint4 py, pg;
    load_pair<T>(y + r.offset, dy + r.offset, p * N - r.head, r.lim, py, pg);
#pragma unroll
    for (int e = 0; e < N; ++e) dot += raw_get<T>(py, e) * raw_get<T>(pg, e);
  }
  dot = detail::block_reduce<kStreamThreads>(dot, smem, SumOp(), 0.0f);

  for (int p = threadIdx.x; p < packs; p += kStreamThreads) {
    uint4 py, pg;
    load_pair<T>(y + r.offset, dy + r.offset, p * N - r.head, r.lim, py, pg);
    float o[N];
#pragma unroll
    for (int e = 0; e < N; ++e) o[e] = raw_get<T>(py, e) * (raw_get<T>(pg, e) - dot);
    store_scaled<T>(dx + r.offset, p * N - r.head, sk, o, scale);
  }
}

// ---- launchers --------------------------------------------------------------
struct Args {
  const void* a;  // forward: x; backward: dy
  const void* b;  // backward: y
  void* out;
  SoftmaxShape shape;
  MaskArgs mask;
  float scale;
  bool causal;
  cudaStream_t stream;
  int64_t rows;
};

template <typename T, int NV, int GROUP, bool kBackward>
int launch_regs(const Args& a) {
  constexpr int kThreads = block_threads<GROUP>();
  constexpr int kRowsPerBlock = kThreads / GROUP;
  const int64_t blocks = (a.rows + kRowsPerBlock - 1) / kRowsPerBlock;
  if (blocks > 0x7fffffff) return detail::status(cudaErrorInvalidConfiguration);
  if constexpr (kBackward) {
    softmax_bwd_regs_kernel<T, NV, GROUP><<<static_cast<unsigned>(blocks), kThreads, 0, a.stream>>>(
        static_cast<const T*>(a.a), static_cast<const T*>(a.b), static_cast<T*>(a.out), a.shape,
        a.scale, a.causal, a.rows);
  } else {
    softmax_fwd_regs_kernel<T, NV, GROUP><<<static_cast<unsigned>(blocks), kThreads, 0, a.stream>>>(
        static_cast<const T*>(a.a), static_cast<T*>(a.out), a.shape, a.mask, a.scale, a.causal,
        a.rows);
  }
  return detail::status(cudaGetLastError());
}

template <typename T, bool kBackward>
int launch_stream(const Args& a) {
  if (a.rows > 0x7fffffff) return detail::status(cudaErrorInvalidConfiguration);
  const auto blocks = static_cast<unsigned>(a.rows);
  if constexpr (kBackward) {
    softmax_bwd_stream_kernel<T><<<blocks, kStreamThreads, 0, a.stream>>>(
        static_cast<const T*>(a.a), static_cast<const T*>(a.b), static_cast<T*>(a.out), a.shape,
        a.scale, a.causal);
  } else {
    softmax_fwd_stream_kernel<T><<<blocks, kStreamThreads, 0, a.stream>>>(
        static_cast<const T*>(a.a), static_cast<T*>(a.out), a.shape, a.mask, a.scale, a.causal);
  }
  return detail::status(cudaGetLastError());
}

// Smallest configuration whose register capacity (GROUP * NV packs) covers the
// row plus its worst-case misalignment head.
template <typename T, bool kBackward>
int launch_typed(const Args& a) {
  constexpr int64_t N = Pack<T>::kN;
  const int64_t sk = a.shape.sk;
  const int64_t packs = (sk + N - std::gcd(sk, N) + N - 1) / N;
  // (Short rows leave lanes idle; narrower groups would fix that but cost
  // compile time for sizes language models don't use.)
  if (packs <= 32) return launch_regs<T, 1, 32, kBackward>(a);
  if (packs <= 64) return launch_regs<T, 2, 32, kBackward>(a);
  if (packs <= 128) return launch_regs<T, 4, 32, kBackward>(a);
  if (packs <= 256) return launch_regs<T, 8, 32, kBackward>(a);
  if (packs <= 512) return launch_regs<T, 4, 128, kBackward>(a);
  if (packs <= 1024) return launch_regs<T, 4, 256, kBackward>(a);
  if (packs <= 2048) return launch_regs<T, 4, 512, kBackward>(a);
  // 1024 threads cap registers at 64: the 16-bit backward spills ~70 bytes/thread
  // here (to L1), still cheaper than the streaming kernel's second read.
  if (packs <= 4096) return launch_regs<T, 4, 1024, kBackward>(a);
  return launch_stream<T, kBackward>(a);
}

template <bool kBackward>
int dispatch(DType dtype, Args a) {
  const SoftmaxShape& s = a.shape;
  if (s.batch < 0 || s.heads < 0 || s.sq < 0 || s.sk < 0 || s.sk > 0x7fffffff - 64)
    return detail::status(cudaErrorInvalidValue);
  a.rows = s.batch * s.heads * s.sq;
  if (a.rows == 0 || s.sk == 0) return 0;
  if constexpr (!kBackward) a.scale *= 1.44269504088896341f;  // log2(e): see the top
  if (!detail::aligned16(a.a) || !detail::aligned16(a.out) || (kBackward && !detail::aligned16(a.b)))
    return detail::status(cudaErrorInvalidValue);
  switch (dtype) {
    case DType::kFloat32:
      return launch_typed<float, kBackward>(a);
    case DType::kFloat16:
      return launch_typed<__half, kBackward>(a);
    case DType::kBFloat16:
      return launch_typed<__nv_bfloat16, kBackward>(a);
  }
  return detail::status(cudaErrorInvalidValue);
}

}  // namespace softmax_impl
}  // namespace plmscale
