// Host helpers shared by the launchers.
#include <atomic>

#include "common.cuh"

namespace plmscale {

const char* error_string(int code) { return cudaGetErrorString(static_cast<cudaError_t>(code)); }

namespace detail {

int sm_count() {
  constexpr int kMaxDevices = 64;
  static std::atomic<int> cache[kMaxDevices];  // zero-initialised (static storage)
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) dev = -1;
  if (dev >= 0 && dev < kMaxDevices) {
    const int cached = cache[dev].load(std::memory_order_relaxed);
    if (cached > 0) return cached;
  }
  int n = 0;
  if (dev < 0 || cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
      n <= 0) {
    cudaGetLastError();  // don't leave a sticky error for the next launch check
    return 108;          // A100's count: a sane grid size if the query failed
  }
  if (dev < kMaxDevices) cache[dev].store(n, std::memory_order_relaxed);
  return n;
}

}  // namespace detail
}  // namespace plmscale
