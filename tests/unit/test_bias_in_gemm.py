"""On one tensor-parallel rank the linears add their bias inside the GEMM (``F.linear``) instead of
megatron-core's matmul-then-add: same outputs and gradients as megatron-core's own path (switched
on the class), for column-parallel (bias added and bias skipped) and row-parallel layers."""

import pytest
import torch
from closeness import assert_close

from plmscale.config import load_config
from plmscale.models.common import megatron as layers
from plmscale.parallel import init_model_parallel

pytestmark = pytest.mark.usefixtures("single_rank")


def _run(layer, x, use_gemm_bias: bool):
    layers._BiasInGemmOnOneRank.bias_in_gemm = use_gemm_bias
    try:
        layer.zero_grad()
        x = x.clone().requires_grad_()
        out, skipped = layer(x)
        total = out if skipped is None else out + skipped
        (total * torch.linspace(-1, 1, total.shape[-1])).sum().backward()
        return [out, total, x.grad] + [p.grad for p in layer.parameters()]
    finally:
        layers._BiasInGemmOnOneRank.bias_in_gemm = True


@pytest.mark.parametrize("kind", ["column", "column-skip-bias", "row"])
def test_one_rank_linear_equals_megatron_path(kind):
    init_model_parallel(load_config(None, ["model.preset=gpt-tiny"]))
    torch.manual_seed(0)
    if kind == "row":
        layer = layers.row_parallel(48, 40, "fp32")
    else:
        layer = layers.column_parallel(48, 40, "fp32", skip_bias_add=kind.endswith("skip-bias"))
    for p in layer.parameters():
        torch.nn.init.normal_(p)
    x = torch.randn(3, 5, 48)
    ours, megatrons = _run(layer, x, True), _run(layer, x, False)
    for a, b in zip(ours, megatrons):
        assert_close(a, b)
