"""Shared fixtures for the kernel tests."""

from __future__ import annotations

import pytest
import torch


def pytest_configure(config):
    # Also registered at the top level; repeating it keeps this directory usable alone.
    config.addinivalue_line("markers", "gpu: needs a CUDA device (run with -m gpu)")


@pytest.fixture
def rng():
    """A seeded CPU generator so failures reproduce."""
    return torch.Generator().manual_seed(1234)
