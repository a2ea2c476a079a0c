"""Memory per rank of a TP x PP x DP x EP layout under each ZeRO stage: model states (parameters,
gradients, fp32 master copies, Adam moments) counted tensor by tensor as DeepSpeed allocates them,
and activations (Korthikanti et al. 2022's accounting, applied to plmscale's layers, with and
without full recomputation), for the most-loaded pipeline stage.

Model states follow DeepSpeed (stage 0: torch's optimizer on the model's own tensors; stages 1-2:
each parameter group flattened, padded to a multiple of 2 x DP and split into DP partitions, with an
fp32 copy of this rank's partition; stage 3: every parameter split by itself) with Adam's two fp32
moments. Megatron's rule of thumb (18 bytes per parameter, 6 + 12/DP with a distributed optimizer)
and DeepSpeed's ``estimate_zero2_model_states_mem_needs`` are the mixed-precision special cases.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass

from plmscale.config.schema import ExperimentConfig
from plmscale.perf.shape import ModelShape, ParamTensor, Stack, describe

BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
ADAM_MOMENTS = 2  # exp_avg and exp_avg_sq, fp32 each
ZERO_ALIGNMENT = 2  # DeepSpeed pads each flat group to a multiple of 2 x DP (nccl_start_alignment_factor)


@dataclass(frozen=True)
class Layout:
    tp: int = 1
    pp: int = 1
    dp: int = 1
    ep: int = 1
    zero_stage: int = 0

    @property
    def world(self) -> int:
        return self.tp * self.pp * self.dp

    @classmethod
    def of(cls, cfg: ExperimentConfig, world: int) -> "Layout":
        p = cfg.parallel
        tp, pp = p.tensor_model_parallel_size, p.pipeline_model_parallel_size
        return cls(tp, pp, world // (tp * pp), getattr(p, "expert_model_parallel_size", 1),
                   p.zero_stage)


@functools.lru_cache(maxsize=None)  # the planner asks for the same split many times
def stage_layers(total: int, stages: int) -> tuple[int, ...]:
    """Transformer layers per pipeline stage, as DeepSpeed's ``type:`` partitioning assigns them."""
    if stages == 1:
        return (total,)
    from deepspeed.runtime.utils import partition_balanced
    bounds = partition_balanced(weights=[1] * total, num_parts=stages)
    return tuple(bounds[i + 1] - bounds[i] for i in range(stages))


def _stage_stacks(shape: ModelShape, pp: int) -> list[list[tuple[Stack, int]]]:
    """Per stage: (stack, layers of it on this stage), layers taken in order encoder -> decoder."""
    trained = [s for s in shape.stacks if s.trained]
    counts = stage_layers(sum(s.layers for s in trained), pp)
    out, queue = [], [[s, s.layers] for s in trained]
    for count in counts:
        stage = []
        while count:
            stack, left = queue[0]
            take = min(left, count)
            stage.append((stack, take))
            count -= take
            queue[0][1] -= take
            if not queue[0][1]:
                queue.pop(0)
        out.append(stage)
    return out


def stage_tensors(cfg: ExperimentConfig, layout: Layout) -> list[list[tuple[int, bool]]]:
    """Per pipeline stage: (elements, is a weight matrix) of every parameter tensor one rank holds
    (its TP/EP slice; ZeRO not applied)."""
    shape = describe(cfg, layout.tp)
    stages, placed = [], {}
    for index, stage in enumerate(_stage_stacks(shape, layout.pp)):
        first, last = index == 0, index == layout.pp - 1
        tensors = []
        for stack, layers in stage:
            start = placed.get(id(stack), 0)  # the stack's layers earlier stages hold
            placed[id(stack)] = start + layers
            if stack.shared:  # ALBERT: one shared set per stage
                tensors += stack.layer_tensors(layout.tp, layout.ep)
                continue
            for index in range(start, start + layers):  # MoE layers differ from dense ones
                tensors += stack.layer_tensors(layout.tp, layout.ep, stack.is_moe(index))
        for t in shape.tensors:
            if _on_stage(t, first, last, layout.pp):
                tensors.append((t.numel, t.matrix))
        stages.append(tensors)
    return stages


def _on_stage(t: ParamTensor, first: bool, last: bool, pp: int) -> bool:
    if t.place == "tied":
        return first or (last and pp > 1)
    return first if t.place == "first" else last


def _zero12_partition(group: int, dp: int) -> int:
    """Elements of one rank's partition of a flattened parameter group (padded, as DeepSpeed)."""
    multiple = ZERO_ALIGNMENT * dp
    return math.ceil(group / multiple) * multiple // dp


@dataclass
class ModelStates:
    """Bytes per rank (fields) for one pipeline stage."""

    parameters: int
    gradients: int
    master: int
    optimizer: int
    elements: int
    """Parameter elements on this rank before ZeRO partitioning."""

    @property
    def total(self) -> int:
        return self.parameters + self.gradients + self.master + self.optimizer


def model_states(tensors: list[tuple[int, bool]], dp: int, zero_stage: int,
                 precision: str = "fp32") -> ModelStates:
    """Model-state bytes of one rank holding ``tensors`` (its TP/PP slice) under ZeRO ``zero_stage``
    over ``dp`` data-parallel ranks, trained with Adam.

    fp32: DeepSpeed keeps no separate master copy at stage 0 (torch's AdamW updates the model), but
    at stages 1-3 it clones this rank's partition into an fp32 buffer the optimizer steps on, with an
    fp32 gradient partition for it. bf16/fp16: 16-bit parameters and gradients plus fp32 master
    copy and fp32 gradients of the partition at every stage (DeepSpeed's 2P + 18P/N at stage 2).
    """
    width = BYTES[precision]
    elements = sum(n for n, _ in tensors)
    if zero_stage in (1, 2):
        groups = [sum(n for n, m in tensors if m), sum(n for n, m in tensors if not m)]
        partition = sum(_zero12_partition(g, dp) for g in groups if g)
        flat = partition * dp  # the padded flat buffers that hold the parameters
        params = flat * width
        grads = (flat if zero_stage == 1 else partition) * width
    elif zero_stage == 3:
        partition = sum(math.ceil(n / dp) for n, _ in tensors)
        params = partition * width
        grads = partition * width
    else:
        partition = elements
        params = grads = elements * width
    master = 0 if (zero_stage == 0 and precision == "fp32") else partition * 4
    grads += 0 if (zero_stage == 0 and precision == "fp32") else partition * 4  # fp32 partition
    optimizer = ADAM_MOMENTS * 4 * partition
    return ModelStates(params, grads, master, optimizer, elements)


# -- activations ---------------------------------------------------------------------------------
def dropout_mask_bytes(precision: str, gpu: bool) -> int:
    """Bytes per element of a saved dropout mask: torch's fused CUDA dropout keeps a bool mask; on
    CPU it keeps the scaled noise tensor in the activations' dtype."""
    return 1 if gpu else BYTES[precision]


def keeps_attention_scores(backend: str, attention_dropout: bool, gpu: bool) -> bool:
    """Whether attention keeps [b, heads, sq, sk] tensors (probabilities, dropout mask and output)
    for the backward pass: the softmax backends (``fused-softmax``, ``reference``) always; ``sdpa``
    only on the CPU with attention dropout, where PyTorch's CPU flash kernel (no dropout) falls back
    to its math path. Otherwise SDPA's flash / memory-efficient kernels keep a logsumexp per row."""
    return backend != "sdpa" or (attention_dropout and not gpu)


def layer_activation_bytes(stack: Stack, micro_batch: int, tp: int, precision: str,
                           hidden_dropout: bool, attention_dropout: bool,
                           recompute: bool = False, gpu: bool = True,
                           attention_backend: str = "sdpa") -> float:
    """Bytes one layer of ``stack`` keeps for the backward pass per micro-batch on one TP rank.

    Tensors saved: each norm's input; the QKV input; q and k; softmax output; attention dropout mask
    and output; v; the projection input; the FFN input, fc1 output (activation input) and the
    activation output (FFN output input); a dropout mask per residual branch (1 byte per element on
    GPU, ``dropout_mask_bytes``). Tensors
    between TP-split matmuls are divided by TP (no sequence parallelism: norms and residual-branch
    inputs are replicated). Korthikanti et al. eq. 2 is this with 2-byte tensors and one FFN of 4h.
    Where ``keeps_attention_scores`` says SDPA keeps no [s, s] tensor (``attention_backend``), the
    softmax output and the attention dropout mask and output are replaced by SDPA's fp32 logsumexp
    per query row (its output is the projection input, counted once). With full recomputation only
    the layer input is kept.
    """
    a, b, s, h = BYTES[precision], micro_batch, stack.seq, stack.hidden
    if recompute:
        return s * b * h * a
    inner, heads, f = stack.inner / tp, stack.heads / tp, stack.ffn / tp
    mask_width = dropout_mask_bytes(precision, gpu)
    mask = mask_width if hidden_dropout else 0

    def attention(q_len: int, k_len: int, kv_input: bool) -> float:
        scores = b * heads * q_len * k_len
        saved = q_len * b * h * a * 2  # norm input + QKV (or Q) input
        saved += q_len * b * inner * a * 2  # q, and the projection input
        saved += k_len * b * inner * a * 2  # k, v
        if keeps_attention_scores(attention_backend, attention_dropout, gpu):
            # Without dropout the torch softmax (CPU) keeps its output and the masked copy the
            # second matmul reads; the CUDA kernel writes the masked output once.
            kept = 2 if attention_dropout or not gpu else 1
            saved += scores * a * kept + (scores * mask_width if attention_dropout else 0)
        else:
            saved += b * heads * q_len * 4  # logsumexp, fp32
        saved += q_len * b * h * mask
        if kv_input:
            saved += k_len * b * h * a
        return saved

    total = attention(s, s, kv_input=False)
    if stack.memory:  # the encoder output itself is shared by all layers: counted once, outside
        total += attention(s, stack.memory, kv_input=False)
    ffn = (4 if stack.gated else 2) * s * b * f * a
    total += s * b * h * a * 2 + ffn + s * b * h * mask  # norm input, FFN input, ..., mask
    return total


def activation_bytes(cfg: ExperimentConfig, layout: Layout, stage: int = 0,
                     recompute: bool = False, gpu: bool = True) -> float:
    """Activation bytes of one micro-batch on pipeline ``stage`` (one TP rank), heads included on
    the last stage and embeddings on the first; ``gpu``: CUDA's 1-byte dropout masks (else CPU's)."""
    m, t = cfg.model, cfg.train
    shape = describe(cfg, layout.tp)
    b, a = t.micro_batch_size, BYTES[t.precision]
    per_stage = _stage_stacks(shape, layout.pp)
    total = 0.0
    for stack, layers in per_stage[stage]:
        total += layers * layer_activation_bytes(stack, b, layout.tp, t.precision,
                                                 m.hidden_dropout > 0, m.attention_dropout > 0,
                                                 recompute, gpu, m.attention_backend)
        if stack.memory:
            total += stack.memory * b * stack.hidden * a
    if stage == 0:  # embedding output (and its dropout mask)
        mask = dropout_mask_bytes(t.precision, gpu) if m.hidden_dropout > 0 else 0
        total += shape.seq_length * b * m.hidden_size * (a + mask)
    if stage == layout.pp - 1:  # vocabulary logits softmax kept by the loss (fp32)
        for mm in shape.matmuls:
            if mm.name.endswith("logits") and mm.trained:
                total += mm.rows * b * (mm.k * a + mm.n / layout.tp * 4)
    return total


def in_flight_micro_batches(layout: Layout, stage: int, accumulation: int) -> int:
    """Micro-batches whose activations a stage holds at once under DeepSpeed's 1F1B schedule."""
    if layout.pp == 1:
        return 1
    return min(layout.pp - stage, accumulation)


@dataclass
class RankMemory:
    stage: int
    parameters: int
    gradients: int
    master: int
    optimizer: int
    activations: float
    elements: int

    @property
    def total(self) -> float:
        return self.parameters + self.gradients + self.master + self.optimizer + self.activations

    def as_dict(self) -> dict:
        return dict(asdict(self), total=self.total)


def memory_per_rank(cfg: ExperimentConfig, layout: Layout, recompute: bool = False,
                    gpu: bool = True) -> list[RankMemory]:
    """Predicted peak memory of one rank on each pipeline stage (model states + activations)."""
    t = cfg.train
    out = []
    for stage, tensors in enumerate(stage_tensors(cfg, layout)):
        states = model_states(tensors, layout.dp, layout.zero_stage, t.precision)
        acts = activation_bytes(cfg, layout, stage, recompute, gpu) * in_flight_micro_batches(
            layout, stage, t.gradient_accumulation_steps)
        out.append(RankMemory(stage, states.parameters, states.gradients, states.master,
                              states.optimizer, acts, states.elements))
    return out


def most_loaded(cfg: ExperimentConfig, layout: Layout, recompute: bool = False,
                gpu: bool = True) -> RankMemory:
    """The pipeline stage with the largest predicted memory."""
    return max(memory_per_rank(cfg, layout, recompute, gpu), key=lambda r: r.total)


# -- published rules of thumb --------------------------------------------------------------------
def megatron_bytes_per_parameter(param_bytes: int, grad_bytes: int, dp: int,
                                 distributed_optimizer: bool) -> float:
    """Megatron's accounting of model states per parameter (``theoretical_memory_usage`` and the
    distributed-optimizer guide): the model's parameters and gradients, an fp32 copy of the
    gradients when they are not fp32, an fp32 master copy when parameters are not fp32, and Adam's
    two fp32 moments; the distributed optimizer splits everything but the model's own parameters
    and gradients over DP. (bf16 parameters with fp32 gradients: 18, or 6 + 12/DP.)"""
    sharded = (4 if grad_bytes < 4 else 0) + (4 if param_bytes < 4 else 0) + ADAM_MOMENTS * 4
    return param_bytes + grad_bytes + (sharded / dp if distributed_optimizer else sharded)


def deepspeed_zero2_gpu_bytes(total_params: int, gpus: int) -> int:
    """The GPU bytes per rank that DeepSpeed's ``estimate_zero2_model_states_mem_needs`` reports
    (no offload): 16-bit parameters (2P) plus 16-bit and fp32 gradient, fp32 master and moment
    partitions (18P/N)."""
    return 2 * total_params + int(18 * total_params / gpus)
