// Device helpers shared by the fused kernels: dtype conversion, 16-byte packs,
// warp/block reductions. Plain CUDA: no torch headers.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "fused_kernels.h"

namespace plmscale {
namespace detail {

template <typename T>
__device__ __forceinline__ float to_float(T v);
template <>
__device__ __forceinline__ float to_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ float to_float<__half>(__half v) { return __half2float(v); }
template <>
__device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 v) {
  return __bfloat162float(v);
}

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// 16 bytes of T: the unit of every vectorised global access.
template <typename T>
struct alignas(16) Pack {
  static constexpr int kN = 16 / sizeof(T);
  T v[kN];
};

// Read-only-path 16-byte load; p must be 16-byte aligned.
template <typename T>
__device__ __forceinline__ Pack<T> load_pack(const T* p) {
  Pack<T> r;
  *reinterpret_cast<uint4*>(&r) = __ldg(reinterpret_cast<const uint4*>(p));
  return r;
}

template <typename T>
__device__ __forceinline__ void store_pack(T* p, const Pack<T>& r) {
  *reinterpret_cast<uint4*>(p) = *reinterpret_cast<const uint4*>(&r);
}

// A pack held as four 32-bit words. Arrays of packs that live across a reduction
// (softmax backward) stay at 4 registers per pack this way; arrays of 16-bit
// elements tend to be split into one register per element and spill.
__device__ __forceinline__ uint32_t word(const uint4& w, int i) {
  return i == 0 ? w.x : (i == 1 ? w.y : (i == 2 ? w.z : w.w));
}

// Element k of a raw pack of T, as float (k must fold to a constant).
template <typename T>
__device__ __forceinline__ float raw_get(const uint4& w, int k);
template <>
__device__ __forceinline__ float raw_get<float>(const uint4& w, int k) {
  return __uint_as_float(word(w, k));
}
template <>
__device__ __forceinline__ float raw_get<__half>(const uint4& w, int k) {
  return __half2float(__ushort_as_half(static_cast<unsigned short>(word(w, k / 2) >> (16 * (k % 2)))));
}
template <>
__device__ __forceinline__ float raw_get<__nv_bfloat16>(const uint4& w, int k) {
  // bf16 is the top half of an fp32: widening is a shift.
  const uint32_t x = word(w, k / 2);
  return __uint_as_float(k % 2 == 0 ? x << 16 : x & 0xffff0000u);
}

// Makes the compiler treat w as rewritten, so values it derived from w earlier
// (e.g. fp32 conversions) are recomputed instead of being kept live in registers.
__device__ __forceinline__ void opaque(uint4& w) {
  asm volatile("" : "+r"(w.x), "+r"(w.y), "+r"(w.z), "+r"(w.w));
}

template <typename T>
__device__ __forceinline__ uint4 load_raw(const T* p) {
  return __ldg(reinterpret_cast<const uint4*>(p));
}

// Raw pack of the elements p[j0 + k] for which in(k) holds, zero bits elsewhere.
template <typename T, typename Pred>
__device__ __forceinline__ uint4 load_raw_partial(const T* p, int j0, Pred in) {
  constexpr int N = Pack<T>::kN;
  uint32_t w[4] = {0u, 0u, 0u, 0u};
#pragma unroll
  for (int k = 0; k < N; ++k) {
    if (!in(k)) continue;
    if constexpr (sizeof(T) == 4) {
      w[k] = reinterpret_cast<const uint32_t*>(p)[j0 + k];
    } else {
      const uint32_t bits = reinterpret_cast<const uint16_t*>(p)[j0 + k];
      w[k / 2] |= bits << (16 * (k % 2));
    }
  }
  return make_uint4(w[0], w[1], w[2], w[3]);
}

struct MaxOp {
  __device__ __forceinline__ float operator()(float a, float b) const { return fmaxf(a, b); }
};
struct SumOp {
  __device__ __forceinline__ float operator()(float a, float b) const { return a + b; }
};

// Reduction over aligned groups of WIDTH lanes (WIDTH a power of two <= 32): xor
// shuffles with offsets below WIDTH never leave the group. All 32 lanes must call.
template <int WIDTH, typename Op>
__device__ __forceinline__ float warp_reduce(float v, Op op) {
#pragma unroll
  for (int offset = WIDTH / 2; offset > 0; offset /= 2) {
    v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
  }
  return v;
}

// Reduction over a whole block of NTHREADS (a multiple of 32, at most 1024);
// every thread gets the result. smem needs NTHREADS / 32 floats. Ends with a
// barrier so the caller may reuse smem immediately.
template <int NTHREADS, typename Op>
__device__ __forceinline__ float block_reduce(float v, float* smem, Op op, float identity) {
  constexpr int kWarps = NTHREADS / 32;
  v = warp_reduce<32>(v, op);
  if (kWarps == 1) return v;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  v = lane < kWarps ? smem[lane] : identity;
  v = warp_reduce<32>(v, op);
  __syncthreads();
  return v;
}

// Per-device SM count, cached (grid sizing for grid-stride kernels).
int sm_count();

inline int status(cudaError_t e) { return static_cast<int>(e); }

inline bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace detail
}  // namespace plmscale
