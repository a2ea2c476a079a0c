"""Named accelerator profiles for the step-time estimate and the planner, each with its source.

Peak figures are dense (no 2:4 sparsity) tensor-core rates; "fp32" is the plain (non-TF32) rate
that an fp32 run without TF32 gets. Interconnect figures are per GPU and per direction.
"""

from __future__ import annotations

from dataclasses import dataclass

GB = 1e9
GIB = 2**30
TFLOP = 1e12


@dataclass(frozen=True)
class GPUProfile:
    name: str
    peak_flops: dict[str, float]
    """Peak FLOP/s per precision ("bf16", "fp16", "fp32")."""
    memory_bytes: float
    memory_bandwidth: float
    """HBM bytes/s."""
    intra_node_bandwidth: float
    """NVLink bytes/s per GPU per direction (TP, and PP/DP inside a node)."""
    inter_node_bandwidth: float
    """Network bytes/s per GPU per direction (one NIC per GPU, as in the DGX systems)."""
    gpus_per_node: int
    source: str

    def peak(self, precision: str) -> float:
        if precision not in self.peak_flops:
            raise ValueError(f"no peak FLOP/s for precision {precision!r} on {self.name}; known: "
                             f"{', '.join(self.peak_flops)}")
        return self.peak_flops[precision]


GPUS: dict[str, GPUProfile] = {
    "A100": GPUProfile(
        "A100", {"bf16": 312 * TFLOP, "fp16": 312 * TFLOP, "fp32": 19.5 * TFLOP},
        memory_bytes=80 * GB, memory_bandwidth=2039 * GB, intra_node_bandwidth=300 * GB,
        inter_node_bandwidth=25 * GB, gpus_per_node=8,
        source="NVIDIA A100 Tensor Core GPU datasheet (SXM4 80GB: 312 TFLOPS BF16 dense, 19.5 TFLOPS "
               "FP32, 2,039 GB/s HBM2e, NVLink 600 GB/s bidirectional); DGX A100: 8x 200 Gb/s HDR "
               "InfiniBand"),
    "H100": GPUProfile(
        "H100", {"bf16": 989 * TFLOP, "fp16": 989 * TFLOP, "fp32": 67 * TFLOP},
        memory_bytes=80 * GB, memory_bandwidth=3350 * GB, intra_node_bandwidth=450 * GB,
        inter_node_bandwidth=50 * GB, gpus_per_node=8,
        source="NVIDIA H100 Tensor Core GPU datasheet (SXM5: 1,979 TFLOPS BF16 with sparsity = 989 "
               "dense, 67 TFLOPS FP32, 80 GB HBM3 at 3.35 TB/s, NVLink 900 GB/s bidirectional); "
               "DGX H100: 8x 400 Gb/s NDR InfiniBand"),
    "H200": GPUProfile(
        "H200", {"bf16": 989 * TFLOP, "fp16": 989 * TFLOP, "fp32": 67 * TFLOP},
        memory_bytes=141 * GB, memory_bandwidth=4800 * GB, intra_node_bandwidth=450 * GB,
        inter_node_bandwidth=50 * GB, gpus_per_node=8,
        source="NVIDIA H200 Tensor Core GPU datasheet (SXM: same compute as H100 SXM, 989 TFLOPS BF16 "
               "dense, 141 GB HBM3e at 4.8 TB/s, NVLink 900 GB/s bidirectional); DGX H200: 8x 400 "
               "Gb/s NDR InfiniBand"),
}


def gpu_profile(name: str) -> GPUProfile:
    """The profile named ``name`` (case-insensitive); ``ValueError`` lists the known ones."""
    key = name.upper()
    if key not in GPUS:
        raise ValueError(f"unknown GPU profile {name!r}; known: {', '.join(GPUS)}")
    return GPUS[key]


def detect_gpu() -> GPUProfile | None:
    """The profile of the CUDA device this process uses, matched by name; None on CPU or unknown."""
    import torch
    if not torch.cuda.is_available():
        return None
    device_name = torch.cuda.get_device_name().upper()
    for key, profile in GPUS.items():
        if key in device_name:
            return profile
    return None
