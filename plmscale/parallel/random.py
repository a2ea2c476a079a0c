"""Dropout randomness that tensor parallelism needs.

Activations that are replicated across TP ranks (hidden states) must see the SAME dropout mask on every
TP rank; activations that are split (attention probabilities of different heads) should see DIFFERENT
masks. Megatron keeps a second CUDA RNG state for the latter; this does the same for CPU and GPU: the
default generator is seeded identically within a TP group, and a separate state per TP rank is swapped in
for the partitioned regions.
"""

from __future__ import annotations

import contextlib

import torch
from megatron.core import parallel_state as ps

_tp_state: dict[str, torch.Tensor] = {}


def seed_all(seed: int) -> None:
    """Seed the shared stream (same on all TP ranks of a pipeline stage) and the per-TP-rank stream."""
    pp_rank = ps.get_pipeline_model_parallel_rank() if ps.model_parallel_is_initialized() else 0
    tp_rank = ps.get_tensor_model_parallel_rank() if ps.model_parallel_is_initialized() else 0
    torch.manual_seed(seed + 100 * pp_rank)
    saved = _get_state()
    torch.manual_seed(seed + 2718 + 100 * pp_rank + tp_rank)
    _tp_state["state"] = _get_state()
    _set_state(saved)


def _get_state() -> torch.Tensor:
    return torch.cuda.get_rng_state() if torch.cuda.is_available() else torch.get_rng_state()


def _set_state(state: torch.Tensor) -> None:
    if torch.cuda.is_available():
        torch.cuda.set_rng_state(state)
    else:
        torch.set_rng_state(state)


@contextlib.contextmanager
def tensor_parallel_rng():
    """Run the body on this TP rank's own random stream (for dropout on partitioned activations).
    Inside a compiled layer (``train.compile``) the body runs as it is: Inductor draws every mask
    from its own generator, and compiling is refused under TP > 1, where the swap matters."""
    if torch.compiler.is_compiling():
        yield
        return
    if "state" not in _tp_state:
        seed_all(torch.initial_seed())
    saved = _get_state()
    _set_state(_tp_state["state"])
    try:
        yield
    finally:
        _tp_state["state"] = _get_state()
        _set_state(saved)
