"""Bytes each rank sends per optimiser step, by kind of parallelism.

Ring collectives: an all-reduce of S bytes over n ranks sends 2(n-1)/n·S per rank, a reduce-scatter
or all-gather (n-1)/n·S, an all-to-all (n-1)/n·S.
  TP (megatron-core, no sequence parallelism): per layer and micro-batch, one all-reduce of the
     [s, b, h] activations after each attention / cross-attention / FFN block forward, and one of
     their input gradients backward; the vocabulary-parallel embedding one forward, the logits one
     backward.
  PP: per micro-batch a stage sends its output activations forward and its input gradients back.
  DP: ZeRO 0-2 all-reduce (or reduce-scatter + all-gather, the same volume) the gradients once per
     step; ZeRO-3 also all-gathers the parameters in the forward and again in the backward of every
     micro-batch.
  EP: two all-to-alls (dispatch, combine) of the routed tokens per MoE layer forward, two backward.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from plmscale.config.schema import ExperimentConfig
from plmscale.perf.memory import BYTES, Layout, stage_tensors
from plmscale.perf.shape import describe


def _ring(n: int) -> float:
    return (n - 1) / n if n > 1 else 0.0


@dataclass
class Communication:
    tensor_parallel: float
    pipeline: float
    data_parallel: float
    expert_parallel: float

    @property
    def total(self) -> float:
        return self.tensor_parallel + self.pipeline + self.data_parallel + self.expert_parallel

    def as_dict(self) -> dict:
        return dict(asdict(self), total=self.total)


def communication(cfg: ExperimentConfig, layout: Layout) -> Communication:
    """Bytes sent by the busiest rank (a middle pipeline stage; the largest stage's parameters)."""
    t = cfg.train
    a, b, micro = BYTES[t.precision], t.micro_batch_size, t.gradient_accumulation_steps
    shape = describe(cfg, layout.tp)
    trained = [s for s in shape.stacks if s.trained]
    tp_bytes = 0.0
    for stack in trained:
        blocks = 3 if stack.memory else 2
        tp_bytes += stack.layers / layout.pp * 2 * blocks * stack.seq * b * stack.hidden * a
    tp_bytes += 2 * shape.seq_length * b * cfg.model.hidden_size * a  # embedding + logits
    tp_bytes *= micro * 2 * _ring(layout.tp)
    boundary = sum(s.seq for s in trained if not s.memory) * b * cfg.model.hidden_size * a
    if shape.decoder_seq_length:  # encoder output and decoder stream both cross a boundary
        boundary = (shape.seq_length + shape.decoder_seq_length) * b * cfg.model.hidden_size * a
    pp_bytes = 2 * boundary * micro if layout.pp > 1 else 0.0
    elements = max(sum(n for n, _ in tensors) for tensors in stage_tensors(cfg, layout))
    grad_bytes = a  # DeepSpeed reduces gradients in the training precision
    dp_bytes = 2 * _ring(layout.dp) * elements * grad_bytes
    if layout.zero_stage == 3:
        dp_bytes += 2 * micro * _ring(layout.dp) * elements * a
    ep_bytes = 0.0
    for stack in trained:
        if stack.moe_experts and layout.ep > 1:
            routed = stack.seq * b * stack.hidden * stack.moe_topk * a
            ep_bytes += stack.moe_layers / layout.pp * 4 * routed * _ring(layout.ep) * micro
    return Communication(tp_bytes, pp_bytes, dp_bytes, ep_bytes)
