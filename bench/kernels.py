"""Benchmark of plmscale's fused CUDA kernels (bias-GELU, scaled masked softmax).

Both kernels are memory-bound, so each is measured by the bandwidth it reaches
(bytes it must move / time) as a fraction of a measured device-to-device copy, and
by its speedup over the same computation in eager torch (plmscale's reference
path) and under ``torch.compile``, on the same inputs.

Usage (on a GPU machine)::

    python bench/kernels.py                          # print the table
    python bench/kernels.py --write-results bench/RESULTS.md
    python bench/kernels.py --quick                  # small sizes, smoke test

Bytes counted per call: bias-GELU forward reads x and writes y (2 N s), backward
reads dy and x and writes dx (3 N s); softmax forward reads scores and writes the
output (2 N s, plus sq*sk mask bytes per batch for the general mask), backward
reads y and dy and writes dx (3 N s). Causally masked keys are skipped by the
kernels but still counted, so causal figures are effective bandwidth.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import re
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from plmscale import kernels  # noqa: E402
from plmscale.kernels import build  # noqa: E402
from plmscale.kernels.reference import (  # noqa: E402
    bias_gelu_reference,
    scaled_masked_softmax_reference,
)

SECTION = "## Fused kernels (bench/kernels.py)"
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def time_ms(fn: Callable[[], object], iters: int, repeats: int = 5) -> float:
    """Median over `repeats` of the mean time per call of `fn` (CUDA events)."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    per_call = []
    for _ in range(repeats):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            fn()
        end.record()
        end.synchronize()
        per_call.append(start.elapsed_time(end) / iters)
    return statistics.median(per_call)


def copy_bandwidth(nbytes: int, iters: int) -> float:
    """Device-to-device copy bandwidth in GB/s (read + write counted)."""
    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda").random_()
    dst = torch.empty_like(src)
    ms = time_ms(lambda: dst.copy_(src), iters)
    return 2 * nbytes / ms / 1e6


@dataclass
class Row:
    name: str
    shape: str
    nbytes: int  # bytes the fused kernel must move (0: not a single-kernel row)
    fused_ms: float
    eager_ms: float | None = None
    compile_ms: float | None = None

    def cells(self, copy_gbs: float) -> list[str]:
        gbs = self.nbytes / self.fused_ms / 1e6 if self.nbytes else None
        fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
        return [
            self.name,
            self.shape,
            fmt(self.fused_ms, ".3f"),
            fmt(gbs, ".0f"),
            fmt(gbs / copy_gbs if gbs else None, ".2f"),
            fmt(self.eager_ms, ".3f"),
            fmt(self.compile_ms, ".3f"),
            fmt(self.eager_ms / self.fused_ms if self.eager_ms else None, ".2f") + "x" * bool(self.eager_ms),
            fmt(self.compile_ms / self.fused_ms if self.compile_ms else None, ".2f")
            + "x" * bool(self.compile_ms),
        ]


HEADER = ["case", "shape", "fused ms", "GB/s", "of copy", "eager ms", "compile ms",
          "vs eager", "vs compile"]


def compiled(fn):
    return torch.compile(fn, dynamic=False, fullgraph=True)


def fwd_bwd(fn, inputs, dy):
    """A closure running fn forward and backward with the given output gradient."""
    def step():
        y = fn(*inputs)
        return torch.autograd.grad(y, [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad], dy)
    return step


def bench_bias_gelu(ext, rows, hidden, dtype, approximate, iters, compile_too) -> list[Row]:
    x = torch.randn(rows, hidden, device="cuda", dtype=dtype)
    b = torch.randn(hidden, device="cuda", dtype=dtype)
    dy = torch.randn_like(x)
    out = torch.empty_like(x)
    tanh = approximate == "tanh"
    s = x.element_size()
    n = x.numel()
    shape = f"{rows}x{hidden}"
    label = "bias_gelu" + ("_tanh" if tanh else "")

    ref = lambda x, b: bias_gelu_reference(x, b, approximate)  # noqa: E731
    with torch.no_grad():
        fwd = Row(f"{label} fwd", shape, 2 * n * s,
                  time_ms(lambda: ext.bias_gelu_forward(x, b, tanh, out=out), iters),
                  time_ms(lambda: ref(x, b), iters),
                  time_ms(lambda c=compiled(ref): c(x, b), iters) if compile_too else None)
        bwd = Row(f"{label} bwd kernel", shape, 3 * n * s,
                  time_ms(lambda: ext.bias_gelu_backward(dy, x, b, tanh, True, out=out), iters))

    xg, bg = x.clone().requires_grad_(True), b.clone().requires_grad_(True)
    fused = lambda x, b: kernels.bias_gelu(x, b, approximate, fused=True)  # noqa: E731
    step = Row(f"{label} fwd+bwd", shape, 0,
               time_ms(fwd_bwd(fused, (xg, bg), dy), iters),
               time_ms(fwd_bwd(ref, (xg, bg), dy), iters),
               time_ms(fwd_bwd(compiled(ref), (xg, bg), dy), iters) if compile_too else None)
    return [fwd, bwd, step]


def bench_softmax(ext, shape, dtype, kind, iters, compile_too) -> list[Row]:
    b, h, sq, sk = shape
    scores = torch.randn(shape, device="cuda", dtype=dtype)
    dy = torch.randn_like(scores)
    out = torch.empty_like(scores)
    scale = 1.0 / 8.0
    mask, causal, mask_bytes = None, False, 0
    if kind == "causal":
        causal = True
    elif kind == "padding":
        lengths = torch.randint(sk // 2, sk + 1, (b,), device="cuda")
        mask = (torch.arange(sk, device="cuda")[None, :] >= lengths[:, None])[:, None, None, :]
        mask_bytes = b * sk
    elif kind == "general":
        mask = torch.rand(b, 1, sq, sk, device="cuda") < 0.1
        mask_bytes = b * sq * sk
    n, s = scores.numel(), scores.element_size()
    shp = "x".join(map(str, shape))
    label = f"softmax {kind}"

    ref = lambda x: scaled_masked_softmax_reference(x, mask, scale, causal)  # noqa: E731
    with torch.no_grad():
        y = ext.scaled_masked_softmax_forward(scores, mask, scale, causal)
        fwd = Row(f"{label} fwd", shp, 2 * n * s + mask_bytes,
                  time_ms(lambda: ext.scaled_masked_softmax_forward(scores, mask, scale, causal, out=out), iters),
                  time_ms(lambda: ref(scores), iters),
                  time_ms(lambda c=compiled(ref): c(scores), iters) if compile_too else None)
        bwd = Row(f"{label} bwd kernel", shp, 3 * n * s,
                  time_ms(lambda: ext.scaled_masked_softmax_backward(dy, y, scale, causal, out=out), iters))
    del y
    xg = scores.clone().requires_grad_(True)
    fused = lambda x: kernels.scaled_masked_softmax(x, mask, scale, causal, fused=True)  # noqa: E731
    step = Row(f"{label} fwd+bwd", shp, 0,
               time_ms(fwd_bwd(fused, (xg,), dy), iters),
               time_ms(fwd_bwd(ref, (xg,), dy), iters),
               time_ms(fwd_bwd(compiled(ref), (xg,), dy), iters) if compile_too else None)
    return [fwd, bwd, step]


def markdown(rows: list[Row], copy_gbs: float) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(r.cells(copy_gbs)) + " |" for r in rows]
    return "\n".join(lines)


def write_section(path: Path, body: str) -> None:
    """Replace (or append) this benchmark's section of RESULTS.md, leaving the rest."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    section = f"{SECTION}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1)
    else:
        text = text.rstrip() + "\n\n" + section
    path.write_text(text.rstrip() + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dtype", choices=list(DTYPES), default="bf16")
    p.add_argument("--iters", type=int, default=20, help="calls per timing repeat")
    p.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile baselines")
    p.add_argument("--write-results", type=Path, help="update this RESULTS.md section")
    args = p.parse_args(argv)

    if not torch.cuda.is_available():
        print("bench/kernels.py needs a CUDA GPU; none is available here.", file=sys.stderr)
        return 2
    ext = build.load_extension()
    if ext is None:
        print(f"fused kernels unavailable: {build.unavailable_reason()}", file=sys.stderr)
        return 2
    dtype = DTYPES[args.dtype]
    compile_too = not args.no_compile
    torch.manual_seed(0)

    if args.quick:
        gelu_shapes = [(2048, 4096)]
        sm_shapes = [((2, 8, 512, 512), ("causal", "padding", "general"))]
    else:
        # MLP activation of 32k tokens x 8k hidden; attention scores of 4 sequences
        # x 32 heads x 2k (1 GiB in bf16), and long rows of 16k keys.
        gelu_shapes = [(32768, 8192)]
        sm_shapes = [((4, 32, 2048, 2048), ("causal", "padding", "general")),
                     ((1, 8, 2048, 16384), ("causal",))]

    copy_gbs = copy_bandwidth(1 << 30 if not args.quick else 1 << 27, args.iters)
    rows: list[Row] = []
    for rows_, hidden in gelu_shapes:
        for approximate in ("none", "tanh"):
            rows += bench_bias_gelu(ext, rows_, hidden, dtype, approximate, args.iters, compile_too)
            torch.cuda.empty_cache()
    for shape, kinds in sm_shapes:
        for kind in kinds:
            rows += bench_softmax(ext, shape, dtype, kind, args.iters, compile_too)
            torch.cuda.empty_cache()

    props = torch.cuda.get_device_properties(0)
    body = "\n".join([
        f"Measured {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC on {props.name} "
        f"({props.total_memory / 2**30:.0f} GiB), torch {torch.__version__}, CUDA "
        f"{torch.version.cuda}, dtype {args.dtype}{' (quick sizes)' if args.quick else ''}.",
        f"Device-to-device copy bandwidth: {copy_gbs:.0f} GB/s (the 'of copy' denominator).",
        "`eager` is plmscale's torch reference path; `compile` is the same function under",
        "`torch.compile`. `bwd kernel` rows time the backward kernel alone (dbias included);",
        "`fwd+bwd` rows time a forward plus autograd backward. Command:",
        f"`python bench/kernels.py --dtype {args.dtype}{' --quick' if args.quick else ''}`.",
        "",
        markdown(rows, copy_gbs),
    ])
    print(body)
    if args.write_results:
        write_section(args.write_results, body)
        print(f"\nwrote {args.write_results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
