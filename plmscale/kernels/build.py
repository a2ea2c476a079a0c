"""Building and loading the fused-kernel CUDA extension.

Two ways in:

* ahead of time: ``setup.py`` adds :func:`cuda_extension` to ``ext_modules``; the
  result is importable as ``plmscale.kernels._fused_C``;
* at first use: :func:`load_extension` JIT-compiles ``csrc/`` with
  ``torch.utils.cpp_extension.load`` (ninja, cached under the torch extensions
  directory, safe when several ranks build at once).

When neither works (no CUDA, CPU-only torch, compiler error) :func:`load_extension`
returns None and logs the reason once; callers then use the torch reference path.

In ``setup.py``::

    from torch.utils.cpp_extension import BuildExtension
    from plmscale.kernels.build import cuda_extension

    ext = cuda_extension()  # None without a CUDA toolkit / CUDA torch
    setup(..., ext_modules=[ext] if ext else [],
          cmdclass={"build_ext": BuildExtension} if ext else {})

Environment: ``PLMSCALE_DISABLE_FUSED_KERNELS=1`` turns the kernels off;
``PLMSCALE_KERNELS_BUILD_DIR`` overrides the JIT build directory;
``PLMSCALE_KERNELS_VERBOSE=1`` shows the JIT compiler output.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from pathlib import Path

log = logging.getLogger("plmscale.kernels")

REPO_ROOT = Path(__file__).resolve().parents[2]
CSRC_DIR = REPO_ROOT / "csrc"
CUDA_SOURCES = ("common.cu", "bias_gelu.cu", "softmax_fwd.cu", "softmax_bwd.cu")
BINDING_SOURCES = ("bindings.cpp",)
AOT_MODULE = "plmscale.kernels._fused_C"
JIT_NAME = "plmscale_fused_kernels"
DISABLE_ENV = "PLMSCALE_DISABLE_FUSED_KERNELS"

# The C++ standard (c++20 in torch 2.13) comes from torch.utils.cpp_extension.
# No --use_fast_math: the kernels are memory-bound, so the accurate expf/erff/tanhf
# cost nothing measurable and keep the fused path within tight tolerances.
NVCC_FLAGS = ["-O3", "-lineinfo"]
CXX_FLAGS = ["-O3"]

_lock = threading.Lock()
_state: dict = {"tried": False, "ext": None, "reason": None}


def sources(root: Path | str | None = None) -> list[str]:
    """Extension sources; relative to the repo root unless ``root`` is given."""
    base = Path("csrc") if root is None else Path(root) / "csrc"
    return [str(base / s) for s in BINDING_SOURCES + CUDA_SOURCES]


def cuda_extension():
    """A ``CUDAExtension`` for ``setup.py``'s ``ext_modules``, or None without CUDA.

    Paths are relative to the repository root, where ``setup.py`` runs. Returns
    None (build nothing) when torch has no CUDA or no CUDA toolkit is found, so a
    CPU install still succeeds and uses the reference path.
    """
    try:
        import torch
        from torch.utils.cpp_extension import CUDA_HOME, CUDAExtension
    except ImportError:
        return None
    if torch.version.cuda is None or CUDA_HOME is None or os.environ.get(DISABLE_ENV) == "1":
        return None
    return CUDAExtension(
        name=AOT_MODULE,
        sources=sources(),
        include_dirs=[str(CSRC_DIR)],
        extra_compile_args={"cxx": CXX_FLAGS, "nvcc": NVCC_FLAGS},
    )


def _unavailable_reason() -> str | None:
    if os.environ.get(DISABLE_ENV) == "1":
        return f"disabled by {DISABLE_ENV}=1"
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return "torch is not installed"
    if getattr(torch.version, "hip", None):
        return f"torch {torch.__version__} is a ROCm build; the kernels are CUDA-only"
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is a CPU-only build"
    if not torch.cuda.is_available():
        return "no CUDA device is available"
    return None


def _jit_load():
    from torch.utils.cpp_extension import load

    build_dir = os.environ.get("PLMSCALE_KERNELS_BUILD_DIR")
    if build_dir:
        os.makedirs(build_dir, exist_ok=True)
    return load(
        name=JIT_NAME,
        sources=sources(REPO_ROOT),
        extra_include_paths=[str(CSRC_DIR)],
        extra_cflags=CXX_FLAGS,
        extra_cuda_cflags=NVCC_FLAGS,
        build_directory=build_dir,
        verbose=os.environ.get("PLMSCALE_KERNELS_VERBOSE") == "1",
    )


def load_extension():
    """The compiled extension module, or None if it can't be had (reason logged once)."""
    with _lock:
        if _state["tried"]:
            return _state["ext"]
        _state["tried"] = True
        reason = _unavailable_reason()
        ext = None
        if reason is None:
            try:
                ext = importlib.import_module(AOT_MODULE)
            except ImportError:
                try:
                    ext = _jit_load()
                except Exception as exc:  # compiler errors come as several types
                    reason = f"building the CUDA extension failed: {exc}"
        _state["ext"], _state["reason"] = ext, reason
        if ext is None:
            # A CPU machine is an expected configuration; a failed build is not.
            level = logging.WARNING if "failed" in reason else logging.INFO
            log.log(level, "fused CUDA kernels unavailable (%s); using torch reference path", reason)
        return ext


def unavailable_reason() -> str | None:
    """Why the extension is unavailable (None when it loaded). Triggers the load."""
    load_extension()
    return _state["reason"]
