"""The one tolerance for every fp32 equivalence check in the suite (layouts against the single rank,
plmscale against HF), and the report it gives when a check fails.

Why a relative-plus-scaled-absolute bound. Two sides of an equivalence check compute the same
function with different kernels: TP splits a GEMM's reduction over ranks and adds the partial sums
in another order, PP moves the same layers to other processes, HF's eager attention groups its
operations differently, and the CPU's GEMM library blocks and vectorises reductions according to
the processor (AVX2 vs AVX-512, cache sizes). fp32's unit round-off is u = 2**-24 ~ 6.0e-8; summing
n terms in another order changes the result by at most ~n·u·Σ|terms| and, for round-off that behaves
like a random walk (what every measured run shows), by ~sqrt(n)·u·Σ|terms|. The reductions in the
tiny models used here have n <= 8192 (vocabulary columns; hidden 128, 4 x 24-64 tokens), so one
reduction moves a value by ~sqrt(8192)·u ~ 5e-6 of the magnitude of what it sums, and a gradient
passes through about ten such reductions (embedding, two layers of attention and MLP, head, loss,
and back). An element's error therefore scales with the *tensor's* magnitude (what was summed), not
only with its own value: an element near zero that arose by cancellation carries the error of the
large terms that cancelled. Hence, for every element,

    |got - want| <= RTOL * |want| + ATOL * max|want over the tensor| + FLOOR

with RTOL = ATOL = 1e-4 (the ~5e-5 estimate above with a factor of two to spare) and FLOOR = 1e-12,
which only lets two all-zero tensors (an unused parameter's gradient) compare; it sits far below the
scale term of any real tensor here (gradients of some BART layers peak at ~3e-5, so a larger floor
would hide a 1e-3 drift in them). A scalar (a loss, an accuracy) is its own tensor, so its bound is 2e-4
of its value. The bound holds on every x86 generation because it is derived from the sizes, not read
off one machine; and real defects are far outside it: a 1e-3 relative change of one tensor exceeds it
fivefold at its largest element (tests/unit/test_closeness.py injects exactly that), a wrong layer or
a dropped bias changes values at O(1) of their magnitude, and the NSP term that an objective switched
off would add (ln 2 on a loss of ~7) is 50 times the bound.

Trained parameters are the one place where a larger absolute term is needed, and it is passed in
explicitly (``atol=``, see ``adam_movement_atol``): Adam divides each gradient element by its own
running RMS, so the round-off of an element whose gradient arose by cancellation (relative error up to
~1e-2 when it is 1e-4 of its tensor's scale) becomes the same relative error of a full-size step of
~lr. Measured: a zero-initialised BERT bias after 3 Adam steps at lr 1e-3 differed by 2.2e-7 between
PP=2 and one rank (its scale 5e-4, so 3x the plain bound). The losses of those steps still compare
with the plain bound.

Exactness stays exact: where both sides run the same kernels on the same values (re-slicing a
checkpoint, initialisation that does not depend on the layout) tests compare with ``== 0.0``, not
with this helper.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

RTOL = 1e-4
ATOL = 1e-4
FLOOR = 1e-12


@dataclass(frozen=True)
class Closeness:
    """How far ``got`` is from ``want`` at its worst element, relative to the bound there.

    ``ratio`` <= 1 means within tolerance. Plain floats and strings, so rank processes can return
    it through pickle and the test process can report it."""

    name: str
    index: tuple
    got: float
    want: float
    scale: float
    ratio: float

    @property
    def ok(self) -> bool:
        return self.ratio <= 1.0

    @property
    def abs_error(self) -> float:
        return abs(self.got - self.want)

    @property
    def rel_error(self) -> float:
        return self.abs_error / max(abs(self.want), FLOOR)

    def __str__(self) -> str:
        verdict = "within" if self.ok else "OUTSIDE"
        return (f"{self.name}{list(self.index) if self.index else ''}: got {self.got:.9g}, "
                f"want {self.want:.9g} (abs error {self.abs_error:.3g}, relative {self.rel_error:.3g}, "
                f"tensor scale {self.scale:.3g}): {self.ratio:.3g} x the bound, {verdict} "
                f"(rtol {RTOL:g}, atol {ATOL:g} x scale)")


def _as_tensor(value) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().to(torch.float64).cpu()
    return torch.tensor(value, dtype=torch.float64)


def adam_movement_atol(learning_rates: list[float]) -> float:
    """The absolute tolerance for parameters trained with Adam at ``learning_rates`` (one per step):
    1e-2 of the most any element can move (Adam's step is at most ~lr per element)."""
    return 1e-2 * sum(abs(lr) for lr in learning_rates)


def _tensor_closeness(name: str, got, want, atol: float) -> Closeness:
    got, want = _as_tensor(got), _as_tensor(want)
    if got.shape != want.shape:
        raise AssertionError(f"{name}: shape {tuple(got.shape)} != {tuple(want.shape)}")
    if want.numel() == 0:
        return Closeness(name, (), 0.0, 0.0, 0.0, 0.0)
    if not torch.isfinite(got).all() or not torch.isfinite(want).all():
        bad = (~torch.isfinite(got) | ~torch.isfinite(want)).nonzero()[0]
        index = tuple(int(i) for i in bad)
        return Closeness(name, index, float(got[index]), float(want[index]), math.inf, math.inf)
    scale = float(want.abs().max())
    bound = RTOL * want.abs() + ATOL * scale + max(FLOOR, atol)
    ratios = (got - want).abs() / bound
    flat = int(ratios.argmax())
    index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), want.shape)) if want.dim() else ()
    return Closeness(name, index, float(got.reshape(-1)[flat]), float(want.reshape(-1)[flat]), scale,
                     float(ratios.reshape(-1)[flat]))


def closeness(got, want, name: str = "value", atol: float = 0.0) -> Closeness:
    """The worst element of ``got`` against ``want``: tensors, floats, or (nested) dicts / lists /
    tuples of them with the same keys and lengths. Each tensor or scalar gets its own scale;
    ``atol`` adds an absolute term (only for trained parameters: ``adam_movement_atol``)."""
    if isinstance(want, dict):
        if not isinstance(got, dict) or got.keys() != want.keys():
            missing = sorted(set(want) ^ set(got if isinstance(got, dict) else {}))
            raise AssertionError(f"{name}: names differ: {missing[:10]}")
        parts = [closeness(got[k], want[k], f"{name}.{k}" if name else str(k), atol) for k in want]
    elif isinstance(want, (list, tuple)):
        if len(got) != len(want):
            raise AssertionError(f"{name}: {len(got)} entries != {len(want)}")
        parts = [closeness(g, w, f"{name}[{i}]", atol) for i, (g, w) in enumerate(zip(got, want))]
    else:
        return _tensor_closeness(name, got, want, atol)
    if not parts:
        return Closeness(name, (), 0.0, 0.0, 0.0, 0.0)
    return max(parts, key=lambda c: c.ratio)


def assert_close(got, want, name: str = "value", atol: float = 0.0) -> Closeness:
    """Fail, naming the worst element, unless ``got`` is within the suite's fp32 tolerance of
    ``want``; returns the closeness for further checks."""
    result = closeness(got, want, name, atol)
    assert result.ok, str(result)
    return result


def assert_within(result: Closeness, context: str = "") -> None:
    """Fail unless a closeness computed elsewhere (e.g. in a rank process) is within tolerance."""
    assert result.ok, f"{context}: {result}" if context else str(result)
