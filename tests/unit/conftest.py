"""Fixtures of the unit tests (one process, no launcher)."""

import pytest

from plmscale.parallel import init_distributed


@pytest.fixture(scope="module")
def single_rank():
    """A torch.distributed world of one (gloo, free port) for tests that build megatron-core layers;
    modules opt in with ``pytestmark = pytest.mark.usefixtures("single_rank")``."""
    init_distributed()
