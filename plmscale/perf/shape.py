"""What each model family computes and stores, read from the configuration alone.

Every family is described by the same three things: its transformer ``Stack``s (layers of one
width, sequence length and attention pattern), the ``Matmul``s outside them (heads, projections),
and its ``ParamTensor``s outside the layers (embeddings, norms, head weights) with the pipeline stage
that holds them. ``plmscale.perf.flops`` and ``plmscale.perf.memory`` only read these, so a new
family needs one description here and nothing else.

Conventions (as in Megatron and the PTD-P paper): matmul FLOPs only, 2 per multiply-add; norms,
softmax, activations and embedding look-ups are not counted. Vocabulary projections use the padded
vocabulary, as they run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from plmscale.config.schema import ExperimentConfig, ModelConfig
from plmscale.models.common.megatron import padded_vocab_size

FAMILIES = ("bert", "roberta", "albert", "electra", "distilbert", "t5", "bart", "gpt", "xlnet",
            "mpnet")


@dataclass(frozen=True)
class Stack:
    """``layers`` applications of one transformer layer shape to ``seq`` query positions."""

    name: str
    layers: int
    hidden: int
    heads: int
    head_dim: int
    ffn: int
    seq: int
    memory: int = 0
    """Key length of a cross-attention block (encoder-decoder decoders); 0 = none."""
    gated: bool = False
    bias: bool = True
    rmsnorm: bool = False
    trained: bool = True
    """False for a frozen network that only runs forward (DistilBERT's teacher)."""
    shared: bool = False
    """One parameter set for every layer (ALBERT): parameters are counted once."""
    moe_experts: int = 0
    moe_topk: int = 0

    @property
    def inner(self) -> int:
        return self.heads * self.head_dim

    def forward_flops(self) -> float:
        """Forward matmul FLOPs of all layers for one sequence."""
        h, s, m, inner, f = self.hidden, self.seq, self.memory, self.inner, self.ffn
        attention = 2 * s * h * 3 * inner + 2 * 2 * s * s * inner + 2 * s * inner * h
        cross = 0
        if m:
            cross = 2 * s * h * inner + 2 * m * h * 2 * inner + 2 * 2 * s * m * inner + 2 * s * inner * h
        mlp = 2 * s * h * f * (3 if self.gated else 2)
        if self.moe_experts:  # each token runs its top-k experts, plus the router
            mlp = mlp * self.moe_topk + 2 * s * h * self.moe_experts
        return self.layers * (attention + cross + mlp)

    def layer_tensors(self, tp: int, ep: int = 1) -> list[tuple[int, bool]]:
        """(elements on one TP/EP rank, is a weight matrix) of each parameter of ONE layer.
        Column-parallel weights and biases are split over TP; row-parallel biases and norms are not."""
        h, inner, f = self.hidden, self.inner, self.ffn
        out = [(3 * inner * h // tp, True), (inner * h // tp, True)]
        bias = [3 * inner // tp, h]
        if self.memory:
            out += [(inner * h // tp, True), (2 * inner * h // tp, True), (inner * h // tp, True)]
            bias += [inner // tp, 2 * inner // tp, h]
        up = 2 if self.gated else 1
        experts = self.moe_experts // ep if self.moe_experts else 1
        out += [(f * h // tp, True)] * (up * experts) + [(h * f // tp, True)] * experts
        bias += ([f // tp] * up + [h]) * experts
        if self.moe_experts:
            out.append((self.moe_experts * h, True))  # the router, replicated
        if self.bias:
            out += [(n, False) for n in bias]
        norm = h if self.rmsnorm else 2 * h  # weight (+ bias): 1-D tensors of h each
        out += [(h, False)] * ((3 if self.memory else 2) * norm // h)
        return out

    def layer_params(self, tp: int, ep: int = 1) -> int:
        """Parameters of ONE layer held by one tensor-parallel (and expert-parallel) rank."""
        return sum(n for n, _ in self.layer_tensors(tp, ep))


@dataclass(frozen=True)
class Matmul:
    """A projection outside the stacks: ``rows`` rows per sequence times a [k, n] weight."""

    name: str
    rows: float
    k: int
    n: int
    trained: bool = True

    def forward_flops(self) -> float:
        return 2 * self.rows * self.k * self.n


@dataclass(frozen=True)
class ParamTensor:
    """A parameter outside the layers. ``place``: "first" (first pipeline stage), "last", or
    "tied" (first stage, and a copy on the last when the pipeline has more than one stage)."""

    name: str
    numel: int
    """Elements on one tensor-parallel rank."""
    place: str = "first"
    matrix: bool = True
    """2-D (weight-decayed) or 1-D (biases, norms: no weight decay)."""


def _linear(name: str, k: int, n: int, place: str = "first") -> list[ParamTensor]:
    """An unsplit nn.Linear(k, n): weight and bias."""
    return [ParamTensor(f"{name}.weight", k * n, place), ParamTensor(f"{name}.bias", n, place, False)]


def _norm(name: str, width: int, place: str = "first", rms: bool = False) -> list[ParamTensor]:
    parts = ("weight",) if rms else ("weight", "bias")
    return [ParamTensor(f"{name}.{p}", width, place, False) for p in parts]


@dataclass
class ModelShape:
    family: str
    stacks: list[Stack]
    matmuls: list[Matmul]
    tensors: list[ParamTensor]
    seq_length: int
    decoder_seq_length: int = 0
    extra: dict = field(default_factory=dict)

    def layer_count(self) -> int:
        """Transformer layers the pipeline partitions over stages (trained stacks)."""
        return sum(s.layers for s in self.stacks if s.trained)


def decoder_length(cfg: ExperimentConfig) -> int:
    """Encoder-decoders: the decoder's length as the family's samples make it."""
    d = cfg.data
    if d.decoder_seq_length:
        return d.decoder_seq_length
    if cfg.model.family == "t5":
        from plmscale.objectives.span_corruption import corrupted_lengths, raw_length
        o = cfg.objective
        raw = raw_length(d.seq_length, o.noise_density, o.mean_noise_span_length)
        return corrupted_lengths(raw, o.noise_density, o.mean_noise_span_length)[1]
    return d.seq_length


def _stack(m: ModelConfig, name: str, layers: int, seq: int, **kw) -> Stack:
    head_dim = m.kv_channels or m.hidden_size // m.num_attention_heads
    args = dict(name=name, layers=layers, hidden=m.hidden_size, heads=m.num_attention_heads,
                head_dim=head_dim, ffn=m.ffn_hidden_size, seq=seq,
                gated=m.activation.startswith("gated"), bias=m.add_bias_linear,
                rmsnorm=m.normalization == "rmsnorm",
                moe_experts=getattr(m, "num_moe_experts", None) or 0,
                moe_topk=getattr(m, "moe_router_topk", None) or 0)
    args.update(kw)
    return Stack(**args)


def _embedding_tensors(m: ModelConfig, tp: int, width: int, types: bool, layernorm: bool,
                       position_rows: int | None = None) -> list[ParamTensor]:
    rows = position_rows if position_rows is not None else m.max_position_embeddings + m.position_offset
    # The pipeline builder ties the whole embeddings module (plmscale.parallel.pipeline): the last
    # stage holds a copy of all of it, not only of the word embeddings its head reads.
    out = [ParamTensor("word_embeddings", padded_vocab_size(m, tp) // tp * width, "tied"),
           ParamTensor("position_embeddings", rows * width, "tied")]
    if types and m.type_vocab_size > 0:
        out.append(ParamTensor("token_type_embeddings", m.type_vocab_size * width, "tied"))
    if layernorm:
        out += _norm("embedding_layernorm", width, "tied")
    return out


def _mlm_head(m: ModelConfig, tp: int, rows: float, hidden: int, width: int,
              trained: bool = True, prefix: str = "lm_head") -> tuple[list[Matmul], list[ParamTensor]]:
    """BERT's MLM head: dense(hidden -> width), GELU, LayerNorm(width), tied logits + bias."""
    vocab = padded_vocab_size(m, tp)
    matmuls = [Matmul(f"{prefix}.dense", rows, hidden, width, trained),
               Matmul(f"{prefix}.logits", rows, width, vocab, trained)]
    tensors = (_linear(f"{prefix}.dense", hidden, width, "last")
               + _norm(f"{prefix}.layernorm", width, "last")
               + [ParamTensor(f"{prefix}.bias", vocab // tp, "last", False)])
    return matmuls, tensors


def describe(cfg: ExperimentConfig, tp: int = 1) -> ModelShape:
    """The ``ModelShape`` of ``cfg``'s family for one sequence of ``data.seq_length`` tokens, with
    parameter sizes of one tensor-parallel rank of a ``tp``-way split."""
    m, o, s = cfg.model, cfg.objective, cfg.data.seq_length
    family = m.family
    if family not in FAMILIES:
        raise ValueError(f"plmscale.perf has no model of model.family={family!r}; known: "
                         f"{', '.join(FAMILIES)}")
    h, vocab = m.hidden_size, padded_vocab_size(m, tp)
    predicted = o.mlm_probability * s  # positions that go through the MLM head (expected)
    if family in ("bert", "roberta", "albert", "distilbert"):
        width = m.embedding_size or h
        shared = family == "albert" and m.share_layer_parameters
        stacks = [_stack(m, "encoder", m.num_layers, s, shared=shared)]
        tensors = _embedding_tensors(m, tp, width, types=True,
                                     layernorm=True)
        matmuls: list[Matmul] = []
        if family == "albert":
            matmuls.append(Matmul("embedding_hidden_mapping_in", s, width, h))
            tensors += _linear("embedding_hidden_mapping_in", width, h)
        rows = s if family == "distilbert" else predicted
        head_mm, head_t = _mlm_head(m, tp, rows, h, width)
        matmuls += head_mm
        tensors += head_t
        sentence_head = ((family == "bert" and o.next_sentence_prediction)
                         or (family == "albert" and o.sentence_order_prediction))
        if family in ("bert", "albert"):  # the pooler exists whether or not its head is used
            tensors += _linear("pooler", h, h, "last") + _linear("sentence_head", h, 2, "last")
            if sentence_head:
                matmuls += [Matmul("pooler", 1, h, h), Matmul("sentence_head", 1, h, 2)]
        if family == "distilbert":  # the frozen teacher: twice the depth, forward only
            teacher_layers = 2 * m.num_layers
            stacks.append(_stack(m, "teacher", teacher_layers, s, trained=False))
            matmuls += _mlm_head(m, tp, s, h, h, trained=False, prefix="teacher_head")[0]
        return ModelShape(family, stacks, matmuls, tensors, s)
    if family == "electra":
        width = m.embedding_size or h
        gh = m.generator_hidden_size or h
        gen = dataclasses.replace(m, hidden_size=gh,
                                  num_attention_heads=m.generator_num_attention_heads or m.num_attention_heads,
                                  ffn_hidden_size=m.generator_ffn_hidden_size or 4 * gh,
                                  num_layers=m.generator_num_layers or m.num_layers)
        stacks = [_stack(gen, "generator", gen.num_layers, s), _stack(m, "discriminator", m.num_layers, s)]
        tensors = _embedding_tensors(m, tp, width, types=True, layernorm=True)
        matmuls = []
        for name, hid in (("generator", gh), ("discriminator", h)):
            if hid != width:
                matmuls.append(Matmul(f"{name}.embeddings_project", s, width, hid))
                tensors += _linear(f"{name}.embeddings_project", width, hid)
        head_mm, head_t = _mlm_head(m, tp, predicted, gh, width, prefix="generator_head")
        matmuls += head_mm + [Matmul("discriminator_head.dense", s, h, h),
                              Matmul("discriminator_head.prediction", s, h, 1)]
        tensors += (head_t + _linear("discriminator_head.dense", h, h, "last")
                    + _linear("discriminator_head.prediction", h, 1, "last"))
        return ModelShape(family, stacks, matmuls, tensors, s)
    if family == "gpt":
        stacks = [_stack(m, "decoder", m.num_layers, s)]
        tensors = _embedding_tensors(m, tp, h, types=False, layernorm=False)
        tensors += _norm("final_layernorm", h, "last")
        matmuls = [Matmul("logits", s, h, vocab)]
        return ModelShape(family, stacks, matmuls, tensors, s)
    if family == "xlnet":
        return _xlnet_shape(cfg, tp)
    if family == "mpnet":  # the encoder runs L + 2 pred rows (content, mask tokens, query stream)
        from plmscale.objectives.masked_permutation import predicted_count
        pred = predicted_count(s, o.mlm_probability)
        stacks = [_stack(m, "encoder", m.num_layers, s + 2 * pred)]
        tensors = _embedding_tensors(m, tp, h, types=False, layernorm=True)
        tensors.append(ParamTensor("relative_attention_bias",
                                   m.relative_attention_num_buckets * m.num_attention_heads // tp))
        head_mm, head_t = _mlm_head(m, tp, pred, h, h)
        return ModelShape(family, stacks, head_mm, tensors + head_t, s)
    # Encoder-decoders: t5, bart.
    t = decoder_length(cfg)
    decoder_layers = m.num_decoder_layers or m.num_layers
    if family == "t5":
        stacks = [_stack(m, "encoder", m.num_layers, s),
                  _stack(m, "decoder", decoder_layers, t, memory=s)]
        rms = m.normalization == "rmsnorm"
        # Each stack's first layer holds a [buckets, heads] relative position bias (heads split).
        relative = m.relative_attention_num_buckets * m.num_attention_heads // tp
        tensors = [ParamTensor("shared", vocab // tp * h, "tied"),
                   ParamTensor("encoder.relative_bias", relative),
                   ParamTensor("decoder.relative_bias", relative, "last"),
                   *_norm("encoder.final_norm", h, rms=rms), *_norm("decoder.final_norm", h, "last", rms)]
        if not m.tie_word_embeddings:
            tensors.append(ParamTensor("lm_head", vocab // tp * h, "last"))
    else:
        stacks = [_stack(m, "encoder", m.num_layers, s),
                  _stack(m, "decoder", decoder_layers, t, memory=s)]
        rows = m.max_position_embeddings + m.position_offset
        tensors = [ParamTensor("shared", vocab // tp * h, "tied"),
                   ParamTensor("encoder.embed_positions", rows * h),
                   *_norm("encoder.layernorm_embedding", h),
                   ParamTensor("decoder.embed_positions", rows * h),
                   *_norm("decoder.layernorm_embedding", h)]
    matmuls = [Matmul("logits", t, h, vocab)]
    return ModelShape(family, stacks, matmuls, tensors, s, t)


def _xlnet_shape(cfg: ExperimentConfig, tp: int) -> ModelShape:
    """XLNet: the content stream is the stack; what two-stream relative attention adds per layer
    is counted as matmuls (the r projection of 2s encodings, the position scores, the query
    stream's q, scores, context, o and FFN on its m rows). Its layers have no attention biases but
    an r projection and relative biases: those are counted as tensors outside the stack, which
    places them on the first stage (an approximation for PP memory)."""
    from plmscale.families.xlnet.samples import num_predict
    m, s = cfg.model, cfg.data.seq_length
    h, inner, f, L = m.hidden_size, m.hidden_size, m.ffn_hidden_size, m.num_layers
    rows = num_predict(s, cfg.objective.permutation_mask_alpha)
    stacks = [_stack(m, "content", L, s)]
    matmuls = [Matmul("relative_projection", L * 2 * s, h, inner),
               Matmul("position_scores", L * s, inner, 2 * s),
               Matmul("query_q_o", L * rows, h, 2 * inner),
               Matmul("query_scores_context", L * rows, inner, 2 * s + 2 * s),
               Matmul("query_ffn", L * rows, h, 2 * f),
               Matmul("logits", rows, h, padded_vocab_size(m, tp))]
    per_layer = inner * h // tp + 5 * inner // tp - 3 * inner // tp - h  # + r, biases - qkv/o bias
    tensors = [ParamTensor("word_embeddings", padded_vocab_size(m, tp) // tp * h, "tied"),
               ParamTensor("mask_emb", h, "first", False),
               ParamTensor("relative_parameters", L * per_layer),
               ParamTensor("lm_loss.bias", padded_vocab_size(m, tp) // tp, "last", False)]
    return ModelShape("xlnet", stacks, matmuls, tensors, s)
