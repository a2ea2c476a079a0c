"""Pearson's chi-square goodness-of-fit test for the objective statistics (no scipy in the suite)."""

from __future__ import annotations

import math

import numpy as np

# One-sided standard normal quantile of the tests' significance level (p = 0.001): with fixed seeds
# a correct sampler fails about once in a thousand seeds, a wrong one (checked by hand: a uniform
# draw in place of the target) by a wide margin.
Z_0001 = 3.090


def chi_square(counts, probabilities) -> tuple[float, float]:
    """(statistic, critical value at p = 0.001) of observed ``counts`` against ``probabilities``
    (same bins; degrees of freedom = bins - 1). The critical value is Wilson and Hilferty's
    approximation of the chi-square quantile (within 2% of the exact value for df >= 3)."""
    counts = np.asarray(counts, dtype=float)
    expected = np.asarray(probabilities, dtype=float) * counts.sum()
    if (expected < 5).any():
        raise ValueError(f"expected counts below 5 make the test invalid: {expected}; merge bins")
    statistic = float(((counts - expected) ** 2 / expected).sum())
    df = counts.size - 1
    critical = df * (1 - 2 / (9 * df) + Z_0001 * math.sqrt(2 / (9 * df))) ** 3
    return statistic, critical
