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
from plmscale.models.common.mlp import GATED

FAMILIES = ("bert", "roberta", "albert", "electra", "distilbert", "t5", "bart", "gpt", "ernie", "elmo",
            "llama", "unilm", "glm", "xlnet", "mpnet", "mixtral", "qwen2_moe", "switch")
SAME_SHAPE = {"mixtral": "llama", "qwen2_moe": "llama", "switch": "t5"}
"""Families that are another family's model with experts (their ``Stack`` fields say which)."""


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
    """Routed experts of an MoE layer (0 = dense stack)."""
    moe_topk: int = 0
    moe_every: int = 1
    """Every k-th layer holds experts (the last of each k, as plmscale.models.common.mlp)."""
    moe_ffn: int = 0
    """Width of one routed expert (0 = ``ffn``)."""
    moe_shared_ffn: int = 0
    """Width of the always-on shared expert MLP (0 = none)."""
    moe_shared_gate: bool = False
    query_groups: int = 0
    """Key/value heads of grouped-query attention; 0 = one per query head."""
    last_rows: float = 0
    """Query rows of the last layer when it computes only those its losses read (the sparse last
    layer of BERT-style MLM models, ``plmscale.families.bert.model.query_rows``); 0 = ``seq``."""

    @property
    def inner(self) -> int:
        return self.heads * self.head_dim

    @property
    def qkv(self) -> int:
        """Output width of the fused qkv projection: the queries, plus a key and a value per group."""
        return self.inner + 2 * (self.query_groups or self.heads) * self.head_dim

    def is_moe(self, index: int) -> bool:
        """Layer ``index`` (0-based, within the stack) holds experts."""
        return bool(self.moe_experts) and (index + 1) % self.moe_every == 0

    @property
    def moe_layers(self) -> int:
        return sum(self.is_moe(i) for i in range(self.layers))

    def forward_flops(self) -> float:
        """Forward matmul FLOPs of all layers for one sequence (MoE layers: the top-k experts a token
        runs, the router and the shared expert; the model's FLOPs, not the capacity's padding)."""
        last = self.layers - 1  # a sparse last layer is dense: routing must see every token
        sparse = bool(self.last_rows) and not self.is_moe(last)
        return sum(self._layer_flops(self.last_rows if i == last and sparse else self.seq,
                                     self.is_moe(i)) for i in range(self.layers))

    def _layer_flops(self, q: float, moe: bool) -> float:
        """One layer computing ``q`` query rows (its keys and values: every position)."""
        h, s, m, inner, f = self.hidden, self.seq, self.memory, self.inner, self.ffn
        attention = 2 * s * h * self.qkv + 2 * 2 * q * s * inner + 2 * q * inner * h
        cross = 0
        if m:
            cross = 2 * q * h * inner + 2 * m * h * 2 * inner + 2 * 2 * q * m * inner + 2 * q * inner * h
        per_width = 2 * q * h * (3 if self.gated else 2)
        if not moe:
            return attention + cross + per_width * f
        return (attention + cross + per_width * ((self.moe_ffn or f) * self.moe_topk
                                                 + self.moe_shared_ffn)
                + 2 * q * h * (self.moe_experts + self.moe_shared_gate))

    def layer_tensors(self, tp: int, ep: int = 1, moe: bool | None = None) -> list[tuple[int, bool]]:
        """(elements on one TP/EP rank, is a weight matrix) of each parameter of ONE layer (``moe``:
        a layer with experts; None = whether the stack has any). Column-parallel weights and biases
        are split over TP; row-parallel biases and norms are not. Experts are plain MLPs, whole on
        every TP rank; a rank holds ``moe_experts / ep`` of them."""
        h, inner, f = self.hidden, self.inner, self.ffn
        out = [(self.qkv * h // tp, True), (inner * h // tp, True)]
        bias = [self.qkv // tp, h]
        if self.memory:
            out += [(inner * h // tp, True), (2 * inner * h // tp, True), (inner * h // tp, True)]
            bias += [inner // tp, 2 * inner // tp, h]
        up = 2 if self.gated else 1
        moe = bool(self.moe_experts) if moe is None else moe
        mlps = [(f // tp, 1)]  # (width on this rank, copies)
        if moe:
            mlps = [(self.moe_ffn or f, self.moe_experts // ep)]
            mlps += [(self.moe_shared_ffn, 1)] if self.moe_shared_ffn else []
            out.append((self.moe_experts * h, True))  # the router, replicated
            out += [(h, True)] if self.moe_shared_gate else []
        for width, copies in mlps:
            out += ([(width * h, True)] * up + [(h * width, True)]) * copies
            bias += ([width] * up + [h]) * copies
        if self.bias:
            out += [(n, False) for n in bias]
        norm = h if self.rmsnorm else 2 * h  # weight (+ bias): 1-D tensors of h each
        out += [(h, False)] * ((3 if self.memory else 2) * norm // h)
        return out

    def layer_params(self, tp: int, ep: int = 1, moe: bool | None = None) -> int:
        """Parameters of ONE layer held by one tensor-parallel (and expert-parallel) rank."""
        return sum(n for n, _ in self.layer_tensors(tp, ep, moe))


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
    if SAME_SHAPE.get(cfg.model.family, cfg.model.family) == "t5":
        from plmscale.objectives.span_corruption import corrupted_lengths, raw_length
        o = cfg.objective
        raw = raw_length(d.seq_length, o.noise_density, o.mean_noise_span_length)
        return corrupted_lengths(raw, o.noise_density, o.mean_noise_span_length)[1]
    return d.seq_length


def _stack(m: ModelConfig, name: str, layers: int, seq: int, **kw) -> Stack:
    head_dim = m.kv_channels or m.hidden_size // m.num_attention_heads
    args = dict(name=name, layers=layers, hidden=m.hidden_size, heads=m.num_attention_heads,
                head_dim=head_dim, ffn=m.ffn_hidden_size, seq=seq,
                gated=m.activation in GATED, bias=m.add_bias_linear,
                query_groups=m.num_query_groups or 0,
                rmsnorm=m.normalization == "rmsnorm",
                moe_experts=m.num_experts, moe_topk=m.moe_top_k if m.num_experts else 0,
                moe_every=m.moe_layer_frequency, moe_ffn=m.moe_ffn_hidden_size or 0,
                moe_shared_ffn=m.moe_shared_experts * (m.moe_ffn_hidden_size or m.ffn_hidden_size),
                moe_shared_gate=bool(m.moe_shared_experts and m.moe_shared_expert_gate))
    args.update(kw)
    return Stack(**args)


def _embedding_tensors(m: ModelConfig, tp: int, width: int, types: bool, layernorm: bool,
                       position_rows: int | None = None) -> list[ParamTensor]:
    rows = position_rows if position_rows is not None else m.max_position_embeddings + m.position_offset
    # The pipeline builder ties the whole embeddings module (plmscale.parallel.pipeline): the last
    # stage holds a copy of all of it, not only of the word embeddings its head reads. An untied
    # decoder (Llama) keeps it on the first stage only; rotary positions have no table.
    place = "tied" if m.tie_word_embeddings else "first"
    out = [ParamTensor("word_embeddings", padded_vocab_size(m, tp) // tp * width, place)]
    if m.position_embedding_type == "learned":
        out.append(ParamTensor("position_embeddings", rows * width, place))
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


def _glm_predicted(cfg: ExperimentConfig) -> float:
    """Expected Part B targets of a GLM sequence, over its objective mixture: blank and sentence
    masking predict their ~15% plus one [END] per span, the document objective ~75% plus one."""
    from plmscale.objectives.blank_infilling import MAX_SPAN, OBJECTIVES, span_length_distribution
    from plmscale.objectives.unified_lm import parse_weights
    o, s = cfg.objective, cfg.data.seq_length
    weights = parse_weights(o.objective_weights or "blank:1", OBJECTIVES)
    mean_span = float(span_length_distribution(o.poisson_lambda) @ range(1, MAX_SPAN + 1))
    spans = o.mlm_probability * s * (1 + 1 / mean_span)
    return (weights["blank"] + weights["sentence"]) * spans + weights["document"] * (0.75 * s + 1)


def describe(cfg: ExperimentConfig, tp: int = 1) -> ModelShape:
    """The ``ModelShape`` of ``cfg``'s family for one sequence of ``data.seq_length`` tokens, with
    parameter sizes of one tensor-parallel rank of a ``tp``-way split."""
    m, o, s = cfg.model, cfg.objective, cfg.data.seq_length
    if m.family not in FAMILIES:
        raise ValueError(f"plmscale.perf has no model of model.family={m.family!r}; known: "
                         f"{', '.join(FAMILIES)}")
    family = SAME_SHAPE.get(m.family, m.family)
    h, vocab = m.hidden_size, padded_vocab_size(m, tp)
    predicted = o.mlm_probability * s  # positions that go through the MLM head (expected)
    if family in ("bert", "roberta", "albert", "distilbert", "ernie", "unilm"):
        width = m.embedding_size or h
        shared = family == "albert" and m.share_layer_parameters
        sentence_head = ((family in ("bert", "unilm") and o.next_sentence_prediction)
                         or (family == "albert" and o.sentence_order_prediction))
        # The losses read the masked positions and the [CLS] (SpanBERT's boundaries: not counted).
        read = predicted + sentence_head if family in ("bert", "roberta", "albert", "unilm") else 0
        stacks = [_stack(m, "encoder", m.num_layers, s, shared=shared, last_rows=read)]
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
        if family in ("bert", "albert", "unilm"):  # the pooler exists whether or not its head is used
            tensors += _linear("pooler", h, h, "last") + _linear("sentence_head", h, 2, "last")
            if sentence_head:
                matmuls += [Matmul("pooler", 1, h, h), Matmul("sentence_head", 1, h, 2)]
        if family == "ernie":  # task embeddings; pooler; token and sentence task heads
            from plmscale.objectives.ernie_tasks import SENTENCE_DISTANCE_CLASSES, reorder_classes
            if m.task_type_vocab_size > 0:
                tensors.append(ParamTensor("task_type_embeddings", m.task_type_vocab_size * width,
                                           "tied"))
            heads = {"capitalization": (s, 2), "token_document": (s, 2),
                     "sentence_reordering": (1, reorder_classes(o.sentence_reorder_max_segments)),
                     "sentence_distance": (1, len(SENTENCE_DISTANCE_CLASSES))}
            tensors += _linear("pooler", h, h, "last")
            matmuls.append(Matmul("pooler", 1, h, h))
            for name, (head_rows, classes) in heads.items():
                tensors += _linear(f"{name}_head", h, classes, "last")
                matmuls.append(Matmul(f"{name}_head", head_rows, h, classes))
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
    if family == "elmo":
        return _elmo_shape(m, s)
    if family in ("gpt", "llama", "glm"):
        stacks = [_stack(m, "decoder", m.num_layers, s)]
        tensors = _embedding_tensors(m, tp, h, types=False, layernorm=False)
        tensors += _norm("final_layernorm", h, "last", m.normalization == "rmsnorm")
        if not m.tie_word_embeddings:
            tensors.append(ParamTensor("output_layer", vocab // tp * h, "last"))
        rows = s
        if family == "glm":  # + the block-position table; logits on Part B only
            tensors.append(ParamTensor("block_position_embeddings",
                                       m.max_position_embeddings * h, "tied"))
            rows = _glm_predicted(cfg)
        matmuls = [Matmul("logits", rows, h, vocab)]
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


def _elmo_shape(m: ModelConfig, s: int) -> ModelShape:
    """ELMo's biLM: no transformer stacks; every matmul (LSTMP gates and projections per direction,
    the character CNN, highways and projection, the softmax of both directions) outside them, and
    all parameters on the one stage it runs as (it has no TP or PP form). The vocabulary is not
    padded (its embedding and softmax are plain tensors)."""
    from plmscale.families.elmo.model import (CHAR_EMBEDDING, CHARACTERS, HIGHWAY_LAYERS,
                                              MAX_CHARACTERS, parse_filters)
    h, cells, vocab = m.hidden_size, m.ffn_hidden_size, m.vocab_size
    matmuls, tensors = [], []
    if m.token_encoder == "words":
        tensors.append(ParamTensor("token_encoder.weight", vocab * h))
    else:
        filters = parse_filters(m.char_cnn_filters)
        width = sum(n for _, n in filters)
        tensors.append(ParamTensor("char_embeddings", CHARACTERS * CHAR_EMBEDDING))
        for w, n in filters:  # a Conv1d is a matmul over (positions x window) rows
            matmuls.append(Matmul(f"conv{w}", s * (MAX_CHARACTERS - w + 1), CHAR_EMBEDDING * w, n))
            tensors += [ParamTensor(f"conv{w}.weight", n * CHAR_EMBEDDING * w),
                        ParamTensor(f"conv{w}.bias", n, matrix=False)]
        for k in range(HIGHWAY_LAYERS):
            matmuls.append(Matmul(f"highway{k}", s, width, 2 * width))
            tensors += _linear(f"highway{k}", width, 2 * width)
        matmuls.append(Matmul("projection", s, width, h))
        tensors += _linear("projection", width, h)
    for direction in ("forward", "backward"):
        for k in range(m.num_layers):
            name = f"{direction}_lstm.{k}"
            matmuls += [Matmul(f"{name}.input", s, h, 4 * cells),
                        Matmul(f"{name}.state", s, h, 4 * cells),
                        Matmul(f"{name}.projection", s, cells, h)]
            tensors += [ParamTensor(f"{name}.input", h * 4 * cells),
                        *_linear(f"{name}.state", h, 4 * cells),
                        ParamTensor(f"{name}.projection", cells * h)]
        matmuls.append(Matmul(f"{direction}.softmax", s, h, vocab))
    if not (m.token_encoder == "words" and m.tie_word_embeddings):
        tensors.append(ParamTensor("softmax.weight", vocab * h))
    tensors.append(ParamTensor("softmax.bias", vocab, matrix=False))
    return ModelShape("elmo", [], matmuls, tensors, s)


def _xlnet_shape(cfg: ExperimentConfig, tp: int) -> ModelShape:
    """XLNet: the content stream is the stack; what two-stream relative attention adds per layer
    is counted as matmuls (the r projection of 2s encodings, the position scores, the query
    stream's q, scores, context, o and FFN on its m rows). Its layers have no attention biases but
    an r projection and relative biases: those are counted as tensors outside the stack, which
    places them on the first stage (an approximation for PP memory). With memory a sequence is the
    sample's ``memory_segments`` segments, each attending to ``mem_len`` more keys."""
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
    if m.mem_len:  # a sample is n segments, each also reading M memory keys
        n, mem = cfg.objective.memory_segments, m.mem_len
        per_segment = stacks[0].forward_flops() + sum(x.forward_flops() for x in matmuls)
        matmuls += [Matmul("memory_keys_values", L * n * mem, h, 2 * inner),
                    Matmul("memory_relative_projection", L * mem, h, inner),
                    Matmul("memory_scores_context_position", L * n * (s + rows), inner, 3 * mem),
                    # the other n - 1 segments' own work, as one segment's (FLOPs = 2 * rows)
                    Matmul("later_segments", (n - 1) * per_segment / 2, 1, 1)]
    per_layer = inner * h // tp + 5 * inner // tp - 3 * inner // tp - h  # + r, biases - qkv/o bias
    tensors = [ParamTensor("word_embeddings", padded_vocab_size(m, tp) // tp * h, "tied"),
               ParamTensor("mask_emb", h, "first", False),
               ParamTensor("relative_parameters", L * per_layer),
               ParamTensor("lm_loss.bias", padded_vocab_size(m, tp) // tp, "last", False)]
    return ModelShape("xlnet", stacks, matmuls, tensors, s)
