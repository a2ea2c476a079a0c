"""Auxiliary-loss-free load balancing (``model.moe_expert_bias_rate``, DeepSeek-V3) on one rank,
on DeepSpeed's real MoE layer: the bias only chooses the experts (the block's output is the
unbiased softmax weights times the chosen experts' outputs), and on a router skewed towards one
expert the bias updates bring the load close to uniform within a few dozen steps."""

import pytest
import torch
import torch.nn.functional as F

from plmscale.config import load_config
from plmscale.models.moe.balance import BiasedTopKGate, update_expert_biases
from plmscale.models.moe.layer import MoEFeedForward
from plmscale.parallel import init_model_parallel

pytestmark = pytest.mark.usefixtures("single_rank")


def _block(rate=0.01, top_k=2):
    from plmscale.training.engine import build_initialised_model
    cfg = load_config(None, ["model.preset=mixtral-tiny", "model.vocab_size=1100",
                             "model.num_layers=1", f"model.moe_top_k={top_k}",
                             f"model.moe_expert_bias_rate={rate}", "model.moe_aux_loss_coeff=0"])
    init_model_parallel(cfg)
    model = build_initialised_model(cfg)
    block = next(m for m in model.modules() if isinstance(m, MoEFeedForward))
    return block, block.moe.deepspeed_moe.gate


def _skewed_tokens(gate, n=512):
    """Tokens whose router logits favour expert 0 by a wide margin."""
    x = torch.randn(n, gate.wg.weight.shape[1], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        gate.wg.weight[0] = 0.05 * x.mean(0) / x.mean(0).norm() + gate.wg.weight[0]
        x += 3.0 * x.mean(0) / x.mean(0).norm()
    return x


@pytest.mark.parametrize("top_k", [1, 2, 3])
def test_bias_chooses_but_does_not_weight(top_k):
    block, gate = _block(top_k=top_k)
    assert isinstance(gate, BiasedTopKGate)
    x = torch.randn(64, gate.wg.weight.shape[1], generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        gate.routing_bias.copy_(torch.tensor([0.0, 0.0, 0.0, 10.0]))  # expert 3 always chosen
        block.eval()
        out = block(x[None])[0]
        _, _, _, indices, _, weights, _ = gate(x, None, True)
        probs = F.softmax(x @ gate.wg.weight.t(), dim=1)
        assert bool((indices == 3).any(0).all()) and bool((indices >= 0).all())  # dropless
        chosen = probs.gather(1, indices.t().long())  # [tokens, k], unbiased
        expected_weights = chosen / chosen.sum(1, keepdim=True) if top_k > 1 else chosen
        assert torch.allclose(weights.t(), expected_weights, atol=1e-6)
        experts = block.moe.deepspeed_moe.experts.deepspeed_experts
        by_hand = torch.stack([sum(w * experts[int(e)](x[s]) for w, e in
                                   zip(expected_weights[s], indices[:, s])) for s in range(len(x))])
        assert torch.allclose(out, by_hand, atol=1e-5)


def test_bias_updates_move_the_load_towards_uniform():
    block, gate = _block(rate=0.01)
    x = _skewed_tokens(gate)
    block.train()
    loads = []
    with torch.no_grad():
        for _ in range(80):
            block(x[None])
            loads.append(float(block.routing.load_max_over_mean))
            update_expert_biases(block)
    print(f"max/mean expert load: {loads[0]:.3f} -> {loads[-1]:.3f}; bias {gate.routing_bias.tolist()}")
    assert loads[0] > 1.5  # the router is skewed
    assert max(loads[-10:]) < 1.2 and gate.routing_bias[0] < 0  # the overloaded expert is held back
    assert not gate.load.any()  # each update starts a new count
