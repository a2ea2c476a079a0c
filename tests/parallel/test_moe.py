"""Mixture of experts on DeepSpeed's MoE engine: expert parallelism (EP=2, EP=4, TP2 x EP2) computes
what EP=1 computes (dropless routing, fp32: loss, auxiliary and z losses, routing metrics and every
gathered gradient), the routing statistics the block reports are the paper formulas on fixed
routings, and checkpoints resume and export at other expert-parallel sizes. One 4-rank group runs
it all."""

import math

import pytest
import torch
from closeness import assert_within
from harness import run_ranks
from moe_workers import LAYOUTS, moe_layouts

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    return run_ranks(4, moe_layouts, str(tmp_path_factory.mktemp("moe_checkpoints")))


def test_checkpoints_resume_at_other_expert_parallel_sizes(ranks):
    """EP1 -> EP2 -> EP4 -> EP1 and TP2 x EP2 -> TP2 x EP1 -> TP2 x EP2 -> TP2 x EP2 (the same
    layout: DeepSpeed loads each rank's Adam moments too, exactly): every load gives exactly the
    weights saved (experts by global index), and the shard reader (export) reads every
    checkpoint's experts exactly (TP2: the files DeepSpeed leaves out,
    plmscale.models.moe.checkpoint)."""
    for rank in ranks:
        assert list(rank["resumes"]) == [
            "read TP1 x EP1", "load at TP1 x EP2 #1", "read TP1 x EP2 #1", "load at TP1 x EP4 #2",
            "read TP1 x EP4 #2", "load at TP1 x EP1 #3", "read TP1 x EP1 #3", "read TP2 x EP2",
            "load at TP2 x EP1 #1", "read TP2 x EP1 #1", "load at TP2 x EP2 #2", "read TP2 x EP2 #2",
            "load at TP2 x EP2 #3", "moments at TP2 x EP2 #3", "read TP2 x EP2 #3"]
        assert all(diff == 0 for diff in rank["resumes"].values()), rank["resumes"]


@pytest.mark.parametrize("layout", [name for name in LAYOUTS if name != "TP1 x EP1"])
def test_expert_parallel_layout_equals_ep1(ranks, layout):
    for rank in ranks:
        assert_within(rank[layout]["metrics"])
        assert_within(rank[layout]["grads"])
        assert rank["grad_norm"] > 0
        # Both MoE layers' 4 experts have gradients under their global names (all 4 on every rank).
        assert len(rank["expert_grads"]) == 2 * 4 * 4
        assert rank["metrics"]["loss"] > rank["metrics"]["lm_loss"]  # the routing losses count
        assert rank["metrics"]["moe_dropped_fraction"] == 0  # dropless


def test_gloo_gather_shim_gathers_along_the_token_dimension(ranks):
    for rank in ranks:
        assert rank["shim"] == {"installed": True, "tp": 2, "diff": 0.0}


def _softmax(row):
    exps = [math.exp(v) for v in row]
    return [e / sum(exps) for e in exps]


def test_aux_loss_is_the_switch_formula_by_hand(ranks):
    # Router = identity on 2 experts: tokens 0-2 go to expert 0, token 3 to expert 1.
    case = ranks[0]["routing"]["hand top-1"]
    probs = [_softmax(row) for row in case["hidden"].tolist()]
    f = [3 / 4, 1 / 4]
    p = [sum(row[i] for row in probs) / 4 for i in range(2)]
    assert case["aux"] == pytest.approx(2 * sum(fi * pi for fi, pi in zip(f, p)), rel=1e-6)
    # ~1.0704: above the balanced optimum 1.
    assert case["aux"] == pytest.approx(1.0704, abs=1e-4)
    # Capacity ceil(4 / 2 * 1.0) = 2: expert 0 takes 2 of its 3 tokens, one route of 4 is dropped.
    assert case["dropped"] == 0.25
    assert case["load"] == 3 / 2
    z = sum(math.log(sum(math.exp(v) for v in row)) ** 2 for row in case["hidden"].tolist()) / 4
    assert case["z"] == pytest.approx(z, rel=1e-6)


@pytest.mark.parametrize("name", ["random top-1", "random top-2", "random top-3"])
def test_dropped_fraction_is_the_analytic_overflow(ranks, name):
    case = ranks[0]["routing"][name]
    hidden, k = case["hidden"], case["k"]
    tokens, experts = hidden.shape
    chosen = hidden.topk(k, dim=1).indices  # router = identity: logits = hidden
    load = torch.bincount(chosen.reshape(-1), minlength=experts)
    capacity = math.ceil(k * 1.0 * tokens / experts)
    assert load.max() > capacity  # the case does overflow
    assert case["dropped"] == pytest.approx(float((load - capacity).clamp(min=0).sum()) / (tokens * k))
    assert case["load"] == pytest.approx(float(load.max() / load.float().mean()))
    probs = hidden.softmax(dim=1).mean(0)
    if k == 1:  # Switch: E * sum_i f_i P_i
        want = experts * float((load / tokens * probs).sum())
    elif k == 2:  # GShard: first choices only in f_i
        first = torch.bincount(chosen[:, 0], minlength=experts) / tokens
        want = experts * float((first * probs).sum())
    else:  # DeepSpeed's top-k: all k choices in f_i, normalised by k
        want = experts / k * float((load / tokens * probs).sum())
    assert case["aux"] == pytest.approx(want, rel=1e-5)
