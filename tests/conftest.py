"""Shared test set-up: markers, the repository paths, and quiet megatron-core imports."""

import sys
import warnings
from pathlib import Path

import pytest

warnings.filterwarnings("ignore", message=".*(Transformer Engine|Apex).*")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(Path(__file__).parent))  # for tests/harness.py


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU (run with `pytest -m gpu`)")
    config.addinivalue_line("markers", "slow: multi-process or training runs")


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO
