"""Shared helpers for the kernel tests, handed to tests as fixtures (so they work
under any pytest import mode)."""

from __future__ import annotations

import math

import pytest
import torch

MASK_KINDS = ["none", "padding", "general", "causal", "causal+padding"]




def pytest_configure(config):
    # Also registered at the top level; repeating it keeps this directory usable alone.
    config.addinivalue_line("markers", "gpu: needs a CUDA device (run with -m gpu)")


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
