"""The suite's one fp32 tolerance (tests/closeness.py): round-off of reordered reductions passes,
a 1e-3 relative drift of one tensor, a missing term and a wrong layer fail, and a failure names
the tensor and its worst element."""

import pytest
import torch
from closeness import assert_close, closeness


def _grads(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"embedding.weight": torch.randn(1100, 64, generator=g) * 1e-3,
            "layer.0.dense.weight": torch.randn(64, 64, generator=g) * 0.05,
            "layer.0.dense.bias": torch.randn(64, generator=g) * 0.01}


def _reordered_sum(x: torch.Tensor, chunks: int) -> torch.Tensor:
    """The same fp32 matrix product with its reduction split in ``chunks`` partial sums, as TP
    does: a real re-association, not synthetic noise."""
    a, b = x
    return sum(a[:, i::chunks] @ b[i::chunks] for i in range(chunks))


def test_reordered_fp32_reductions_pass():
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(96, 8192, generator=g), torch.randn(8192, 128, generator=g)
    whole = a @ b
    for chunks in (2, 4, 8):
        assert_close(_reordered_sum((a, b), chunks), whole, f"{chunks} partial sums")
    assert_close(whole.float().sum(), whole.double().sum(), "fp32 vs fp64 sum")


def test_a_one_in_a_thousand_drift_of_one_tensor_fails_and_is_named():
    want = _grads()
    got = {k: v.clone() for k, v in want.items()}
    got["layer.0.dense.bias"] *= 1 + 1e-3
    result = closeness(got, want, "grads")
    assert not result.ok and result.name == "grads.layer.0.dense.bias"
    assert result.ratio > 4  # well outside, not at the edge
    with pytest.raises(AssertionError, match=r"grads\.layer\.0\.dense\.bias\[\d+\].*OUTSIDE"):
        assert_close(got, want, "grads")


def test_defects_are_far_outside():
    # The NSP term an objective switched off would add to a loss of ~7.
    assert closeness(6.96504 + 0.693, 6.96504).ratio > 40
    # A layer applied to the wrong input (another layer's weights): O(1) of the magnitude.
    want, other = _grads(0), _grads(1)
    assert closeness(other, want).ratio > 1e3


def test_shapes_names_and_non_finite_values_are_reported():
    with pytest.raises(AssertionError, match="shape"):
        closeness(torch.zeros(3), torch.zeros(4))
    with pytest.raises(AssertionError, match="names differ"):
        closeness({"a": torch.zeros(1)}, {"b": torch.zeros(1)})
    assert not closeness(torch.tensor([1.0, float("nan")]), torch.tensor([1.0, 2.0])).ok
    assert closeness([1.0, 2.0], [1.0, 2.0]).ratio == 0.0
