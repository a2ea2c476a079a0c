"""Shared helpers for the kernel tests, handed to tests as fixtures (so they work
under any pytest import mode)."""

from __future__ import annotations

import math
import shutil
import subprocess
import sysconfig
import tempfile
from pathlib import Path

import pytest
import torch

MASK_KINDS = ["none", "padding", "general", "causal", "causal+padding"]




def pytest_configure(config):
    # Also registered at the top level; repeating it keeps this directory usable alone.
    config.addinivalue_line("markers", "gpu: needs a CUDA device (run with -m gpu)")


# ---- compile checks (test_nvcc.py) --------------------------------------------
# nvcc and the binding's g++ syntax check take most of this directory's CPU time,
# so they start in the background when collection ends (if test_nvcc.py tests
# were selected) and overlap with the other tests.

CSRC = Path(__file__).resolve().parents[2] / "csrc"
GENCODE = ["-gencode", "arch=compute_80,code=sm_80", "-gencode", "arch=compute_90,code=sm_90"]
# What torch.utils.cpp_extension adds to every nvcc call: the kernels must build
# with half/bfloat16 implicit conversions and operators switched off.
TORCH_NVCC_DEFINES = [
    "-D__CUDA_NO_HALF_OPERATORS__", "-D__CUDA_NO_HALF_CONVERSIONS__",
    "-D__CUDA_NO_BFLOAT16_CONVERSIONS__", "-D__CUDA_NO_HALF2_OPERATORS__",
]


def cuda_include(nvcc: str) -> Path | None:
    """The toolkit's include dir (nvcc may be a wrapper script outside the toolkit)."""
    import os

    from torch.utils.cpp_extension import CUDA_HOME

    candidates = [CUDA_HOME, os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"),
                  str(Path(nvcc).resolve().parent.parent), "/usr/local/cuda"]
    for c in candidates:
        if c and (Path(c) / "include" / "cuda_runtime_api.h").exists():
            return Path(c) / "include"
    return None


def binding_command(nvcc: str, tmp: Path) -> list[str] | None:
    """g++ syntax check of bindings.cpp against torch's headers, or None if impossible."""
    gxx, cuda_inc = shutil.which("g++"), cuda_include(nvcc)
    if gxx is None or cuda_inc is None:
        return None
    from torch.utils.cpp_extension import include_paths

    incs = include_paths()
    # CPU wheels of torch ship c10/cuda headers but not this generated one.
    if not any((Path(p) / "c10/cuda/impl/cuda_cmake_macros.h").exists() for p in incs):
        stub = tmp / "stub/c10/cuda/impl/cuda_cmake_macros.h"
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text("#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n")
        incs = [*incs, str(tmp / "stub")]
    return [
        gxx, "-std=c++20", "-fsyntax-only", "-Wall", "-Wextra",
        "-DTORCH_EXTENSION_NAME=plmscale_fused_kernels", "-DTORCH_API_INCLUDE_EXTENSION_H",
        *(f"-I{p}" for p in incs), f"-I{sysconfig.get_paths()['include']}",
        f"-I{cuda_inc}", f"-I{CSRC}", str(CSRC / "bindings.cpp"),
    ]


class CompileJobs:
    """The compile commands, run concurrently in the background."""

    def __init__(self):
        self.procs: dict = {}
        self.tmp: tempfile.TemporaryDirectory | None = None

    def start(self) -> None:
        nvcc = shutil.which("nvcc")
        if self.tmp is not None or nvcc is None:
            return
        self.tmp = tempfile.TemporaryDirectory(prefix="plmscale-nvcc-")
        tmp = Path(self.tmp.name)
        jobs = {
            p.name: [nvcc, "-O3", *GENCODE, *TORCH_NVCC_DEFINES, "-Xptxas", "-v", f"-I{CSRC}",
                     "-c", str(p), "-o", str(tmp / f"{p.name}.o")]
            for p in sorted(CSRC.glob("*.cu"))
        }
        binding = binding_command(nvcc, tmp)
        if binding is not None:
            jobs["bindings.cpp"] = binding
        for name, cmd in jobs.items():
            log = open(tmp / f"{name}.log", "w+")
            self.procs[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log)

    def results(self) -> dict[str, tuple[int, str]]:
        """name -> (returncode, combined output); waits for the jobs."""
        self.start()
        out = {}
        for name, (proc, log) in self.procs.items():
            rc = proc.wait(timeout=900)
            log.seek(0)
            out[name] = (rc, log.read())
        return out

    def close(self) -> None:
        for proc, log in self.procs.values():
            if proc.poll() is None:
                proc.kill()  # only the processes started above
                proc.wait()
            log.close()
        self.procs = {}
        if self.tmp is not None:
            self.tmp.cleanup()
            self.tmp = None


_COMPILE_JOBS = CompileJobs()


def pytest_collection_finish(session):
    if any(item.path.name == "test_nvcc.py" for item in session.items):
        _COMPILE_JOBS.start()


def pytest_sessionfinish(session, exitstatus):
    _COMPILE_JOBS.close()


@pytest.fixture(scope="session")
def compile_jobs():
    """The background compile jobs (started at collection end, or now)."""
    return _COMPILE_JOBS


@pytest.fixture
def rng():
    """A seeded CPU generator so failures reproduce."""
    return torch.Generator().manual_seed(1234)


def softmax_math(scores, masked, scale):
    """Independent formulation: -inf masking, explicit exp/normalise, 0 for empty rows.

    ``masked`` is a bool tensor already broadcast to ``scores`` (or None).
    """
    x = scores.double() * scale
    if masked is None:
        masked = torch.zeros_like(x, dtype=torch.bool)
    x = torch.where(masked, torch.full_like(x, -math.inf), x)
    row_max = x.amax(dim=-1, keepdim=True)
    row_max = torch.where(torch.isinf(row_max), torch.zeros_like(row_max), row_max)
    e = torch.exp(x - row_max)
    total = e.sum(dim=-1, keepdim=True)
    return torch.where(total > 0, e / torch.where(total > 0, total, torch.ones_like(total)), 0.0)


def causal_loop(sq, sk):
    """Causal mask by the definition, element by element (tiny sizes only)."""
    m = torch.zeros(sq, sk, dtype=torch.bool)
    for i in range(sq):
        for j in range(sk):
            m[i, j] = j > i + (sk - sq)
    return m


def make_mask(kind, b, h, sq, sk, rng):
    """(mask argument, causal flag, full boolean mask broadcast to [b,h,sq,sk])."""
    full = torch.zeros(b, h, sq, sk, dtype=torch.bool)
    mask, causal = None, False
    if kind in ("padding", "causal+padding"):
        lengths = torch.randint(1, sk + 1, (b,), generator=rng)
        lengths[0] = 0  # one fully masked sequence
        mask = torch.arange(sk)[None, :] >= lengths[:, None]
        mask = mask[:, None, None, :]
    elif kind == "general":
        mask = torch.rand(b, 1, sq, sk, generator=rng) < 0.4
        mask[0, 0, 0, :] = True  # a fully masked row
    if kind in ("causal", "causal+padding"):
        causal = True
        full |= causal_loop(sq, sk)
    if mask is not None:
        full |= mask
    return mask, causal, full


@pytest.fixture
def mask_maker():
    """make_mask(kind, b, h, sq, sk, rng) -> (mask, causal, full bool mask)."""
    return make_mask


@pytest.fixture
def softmax_ref():
    """softmax_math(scores, full_mask, scale): float64 softmax written independently."""
    return softmax_math


@pytest.fixture
def causal_by_loop():
    """causal_loop(sq, sk): the causal mask built element by element."""
    return causal_loop
