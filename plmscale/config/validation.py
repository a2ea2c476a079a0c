"""Checks that run before anything is built, so that a bad layout fails in seconds, not after the
model has been allocated on every rank."""

from __future__ import annotations

from plmscale.config.families import ignored_fields, readers
from plmscale.config.loading import ConfigError, did_you_mean
from plmscale.config.schema import ATTENTION_BACKENDS, ExperimentConfig

PRECISIONS = ("fp32", "bf16", "fp16")
GELU_FORMS = ("none", "tanh")


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def valid_tensor_parallel_sizes(cfg: ExperimentConfig, world_size: int) -> list[int]:
    """Tensor-parallel sizes that split this model and fit ``world_size`` with the chosen PP."""
    m, pp = cfg.model, cfg.parallel.pipeline_model_parallel_size
    return [tp for tp in _divisors(max(world_size // max(pp, 1), 1))
            if world_size % (tp * pp) == 0 and m.num_attention_heads % tp == 0
            and m.ffn_hidden_size % tp == 0 and (m.num_query_groups or tp) % tp == 0]


AT_LEAST_ONE = {
    "model": ("num_layers", "hidden_size", "num_attention_heads", "ffn_hidden_size", "vocab_size",
              "max_position_embeddings", "make_vocab_size_divisible_by",
              "embedding_size", "num_decoder_layers", "kv_channels", "relative_attention_num_buckets",
              "relative_attention_max_distance", "num_query_groups", "generator_hidden_size",
              "generator_ffn_hidden_size", "generator_num_attention_heads", "generator_num_layers"),
    "data": ("seq_length", "decoder_seq_length"),
    "train": ("micro_batch_size", "gradient_accumulation_steps", "train_steps", "log_interval",
              "eval_iters", "spike_window", "max_consecutive_skips"),
    "objective": ("max_ngram", "span_max_length", "permutation_mask_alpha",
                  "permutation_max_span", "memory_segments"),
}
AT_LEAST_ZERO = {
    "model": ("init_std", "position_offset", "type_vocab_size", "mem_len"),
    "data": ("num_workers",),
    "train": ("seed", "lr", "min_lr", "warmup_steps", "weight_decay", "grad_clip", "save_interval",
              "eval_interval", "keep_last_n", "spike_std_factor",
              "grad_norm_spike_std_factor"),
    "objective": ("rtd_weight", "distillation_alpha_ce", "distillation_alpha_mlm",
                  "distillation_alpha_cos"),
}
PROBABILITIES = {  # [0, 1)
    "model": ("hidden_dropout", "attention_dropout"),
    "data": ("short_seq_prob", "valid_fraction"),
    "train": ("adam_beta1", "adam_beta2"),
    "objective": ("token_masking_ratio", "token_deletion_ratio", "infilling_ratio"),
}
POSITIVE = {  # > 0
    "model": ("layernorm_epsilon", "rotary_base"),
    "train": ("adam_eps", "collective_timeout_s", "dead_rank_timeout_s"),
    "objective": ("distillation_temperature", "mean_noise_span_length", "poisson_lambda"),
}


def _check_ranges(cfg: ExperimentConfig) -> None:
    """Every numeric field inside its meaningful range (None = unset is always allowed)."""
    rules = ((AT_LEAST_ONE, lambda v: v >= 1, "must be >= 1"),
             (AT_LEAST_ZERO, lambda v: v >= 0, "must be >= 0"),
             (PROBABILITIES, lambda v: 0.0 <= v < 1.0, "must be in [0, 1)"),
             (POSITIVE, lambda v: v > 0, "must be > 0"))
    for table, ok, what in rules:
        for section, names in table.items():
            for name in names:
                value = getattr(getattr(cfg, section), name)
                if value is not None and not ok(value):
                    raise ConfigError(f"{section}.{name}={value} {what}; set it in the config file "
                                      f"or with --set {section}.{name}=VALUE")


def _check_elmo(m, tp: int, pp: int) -> None:
    """ELMo trains data parallel (with ZeRO) only: its LSTMs are sequential over time and hold no
    megatron-core layers to split (no tensor parallelism), and its three pieces (token encoder,
    biLM, softmax) are not layers of equal cost to pipeline."""
    if tp > 1 or pp > 1:
        raise ConfigError(
            f"model.family='elmo' trains data parallel with ZeRO only: parallel."
            f"tensor_model_parallel_size={tp} and pipeline_model_parallel_size={pp} must be 1 (its "
            f"LSTMP layers have no tensor-parallel form and its pieces are not pipeline layers); "
            f"use more data-parallel ranks and parallel.zero_stage to save memory")
    if m.token_encoder not in ("characters", "words"):
        raise ConfigError(f"model.token_encoder={m.token_encoder!r}; valid: 'characters' (the "
                          f"original char CNN), 'words' (an embedding of the token ids)")
    if m.token_encoder == "words" and m.char_cnn_filters is not None:
        raise ConfigError("model.char_cnn_filters is read by token_encoder='characters' only; "
                          "unset it or set model.token_encoder=characters")


def validate_config(cfg: ExperimentConfig, world_size: int) -> None:
    """Raise ``ConfigError`` naming the offending field and the values that would work."""
    m, p, t, o = cfg.model, cfg.parallel, cfg.train, cfg.objective
    _check_ranges(cfg)
    refuse_ignored_fields(cfg)
    tp, pp = p.tensor_model_parallel_size, p.pipeline_model_parallel_size
    if tp < 1 or pp < 1:
        raise ConfigError("parallel.tensor_model_parallel_size and pipeline_model_parallel_size "
                          "must be >= 1")
    if m.family == "elmo":
        _check_elmo(m, tp, pp)
    if m.mem_len and o.memory_segments < 2:
        raise ConfigError(f"model.mem_len={m.mem_len} needs objective.memory_segments >= 2 (the "
                          f"memory of a segment comes from the ones before it in its sample); "
                          f"set objective.memory_segments=2 or more, or model.mem_len=0")
    if m.kv_channels is None and m.hidden_size % m.num_attention_heads:
        valid = [h for h in _divisors(m.hidden_size) if h <= 128]
        raise ConfigError(f"model.hidden_size={m.hidden_size} is not divisible by "
                          f"model.num_attention_heads={m.num_attention_heads}; valid head counts: {valid} "
                          f"(or set model.kv_channels, the per-head width, as T5 does)")
    valid_tp = valid_tensor_parallel_sizes(cfg, world_size)
    if world_size % (tp * pp):
        raise ConfigError(
            f"world size {world_size} is not divisible by tensor_model_parallel_size={tp} x "
            f"pipeline_model_parallel_size={pp}; valid tensor_model_parallel_size values for "
            f"world size {world_size} and this model: {valid_tp}")
    if m.num_attention_heads % tp or m.ffn_hidden_size % tp:
        raise ConfigError(
            f"model.num_attention_heads={m.num_attention_heads} and model.ffn_hidden_size="
            f"{m.ffn_hidden_size} must both be divisible by tensor_model_parallel_size={tp}; "
            f"valid tensor_model_parallel_size values for world size {world_size}: {valid_tp}")
    _check_attention_options(cfg, valid_tp)
    if pp > 1 and p.zero_stage > 1:
        raise ConfigError(f"parallel.zero_stage={p.zero_stage} cannot be combined with pipeline "
                          f"parallelism (DeepSpeed's pipeline engine supports ZeRO stage 0 or 1); "
                          f"set parallel.zero_stage to 0 or 1, or pipeline_model_parallel_size=1")
    if p.zero_stage not in (0, 1, 2, 3):
        raise ConfigError(f"parallel.zero_stage={p.zero_stage}; valid values: 0, 1, 2, 3")
    if t.peak_tflops is not None and t.peak_tflops <= 0:
        raise ConfigError(f"train.peak_tflops={t.peak_tflops} must be > 0 (one device's peak "
                          f"TFLOP/s for the MFU), or unset to use the detected GPU's")
    check_run_features(cfg)
    check_compile(cfg)
    if t.precision not in PRECISIONS:
        raise ConfigError(f"train.precision={t.precision!r}; valid values: {', '.join(PRECISIONS)}")
    if m.attention_backend not in ATTENTION_BACKENDS:
        raise ConfigError(f"model.attention_backend={m.attention_backend!r}; valid: "
                          f"{', '.join(ATTENTION_BACKENDS)}")
    if m.gelu_approximate not in GELU_FORMS:
        raise ConfigError(f"model.gelu_approximate={m.gelu_approximate!r}; valid: {GELU_FORMS}")
    if cfg.data.seq_length > m.max_position_embeddings:
        raise ConfigError(f"data.seq_length={cfg.data.seq_length} exceeds "
                          f"model.max_position_embeddings={m.max_position_embeddings}")
    check_mixture_of_experts(cfg, world_size)
    if not 0.0 < o.mlm_probability < 1.0:
        raise ConfigError(f"objective.mlm_probability={o.mlm_probability} must be in (0, 1)")
    if o.mask_token_fraction + o.random_token_fraction > 1.0:
        raise ConfigError("objective.mask_token_fraction + random_token_fraction must be <= 1")


POSITION_TYPES = ("learned", "relative", "rotary")


def _check_attention_options(cfg: ExperimentConfig, valid_tp: list[int]) -> None:
    """Grouped-query attention and rotary positions: groups split the heads evenly and TP splits
    whole groups; RoPE rotates pairs of channels, so heads must have an even width."""
    m, tp = cfg.model, cfg.parallel.tensor_model_parallel_size
    if m.position_embedding_type not in POSITION_TYPES:
        raise ConfigError(f"model.position_embedding_type={m.position_embedding_type!r}; valid: "
                          f"{POSITION_TYPES}")
    groups = m.num_query_groups
    if groups is not None and m.num_attention_heads % groups:
        raise ConfigError(f"model.num_query_groups={groups} does not divide model."
                          f"num_attention_heads={m.num_attention_heads}; valid values: "
                          f"{_divisors(m.num_attention_heads)}")
    if groups is not None and groups % tp:
        raise ConfigError(f"model.num_query_groups={groups} is not divisible by "
                          f"tensor_model_parallel_size={tp} (TP splits whole key/value groups); "
                          f"valid tensor_model_parallel_size values: {valid_tp}")
    head_dim = m.kv_channels or m.hidden_size // m.num_attention_heads
    if m.position_embedding_type == "rotary" and head_dim % 2:
        raise ConfigError(f"model.position_embedding_type='rotary' needs an even head width; "
                          f"hidden_size / num_attention_heads = {head_dim} (set model.kv_channels "
                          f"or change the head count)")


def valid_expert_parallel_sizes(cfg: ExperimentConfig, world_size: int) -> list[int]:
    """Expert-parallel sizes for this model and layout: they divide ``num_experts`` and the
    data-parallel size (an expert group joins data-parallel replicas of the same TP rank)."""
    p = cfg.parallel
    dp = max(world_size // (p.tensor_model_parallel_size * p.pipeline_model_parallel_size), 1)
    return [ep for ep in _divisors(dp) if cfg.model.num_experts % ep == 0]


def check_mixture_of_experts(cfg: ExperimentConfig, world_size: int) -> None:
    """The MoE fields: sizes in range, an expert-parallel size that fits, no ZeRO-3."""
    m = cfg.model
    if m.num_experts < 0:
        raise ConfigError(f"model.num_experts={m.num_experts} must be >= 0 (0 = a dense model)")
    if not m.num_experts:
        if m.expert_model_parallel_size != 1:
            raise ConfigError(f"model.expert_model_parallel_size={m.expert_model_parallel_size} "
                              f"needs experts: set model.num_experts, or leave it at 1")
        return
    if cfg.parallel.zero_stage == 3:
        raise ConfigError("parallel.zero_stage=3 cannot be combined with DeepSpeed's native mixture "
                          "of experts (model.num_experts > 0); set parallel.zero_stage to 0, 1 or 2")
    for name, low in (("moe_layer_frequency", 1), ("moe_shared_experts", 0),
                      ("expert_model_parallel_size", 1)):
        if getattr(m, name) < low:
            raise ConfigError(f"model.{name}={getattr(m, name)} must be >= {low}")
    if not 1 <= m.moe_top_k <= m.num_experts:
        raise ConfigError(f"model.moe_top_k={m.moe_top_k} must be in 1..model.num_experts="
                          f"{m.num_experts}")
    if m.moe_ffn_hidden_size is not None and m.moe_ffn_hidden_size < 1:
        raise ConfigError(f"model.moe_ffn_hidden_size={m.moe_ffn_hidden_size} must be >= 1 (or unset)")
    if m.moe_capacity_factor <= 0:
        raise ConfigError(f"model.moe_capacity_factor={m.moe_capacity_factor} must be > 0")
    for name in ("moe_aux_loss_coeff", "moe_z_loss_coeff", "moe_expert_bias_rate"):
        if getattr(m, name) < 0:
            raise ConfigError(f"model.{name}={getattr(m, name)} must be >= 0")
    valid = valid_expert_parallel_sizes(cfg, world_size)
    if m.expert_model_parallel_size not in valid:
        raise ConfigError(
            f"model.expert_model_parallel_size={m.expert_model_parallel_size} must divide "
            f"model.num_experts={m.num_experts} and the data-parallel size "
            f"{world_size // (cfg.parallel.tensor_model_parallel_size * cfg.parallel.pipeline_model_parallel_size)}"
            f" (world {world_size} / TP / PP); valid values: {valid}")
    check_expert_capacity(cfg)


def check_expert_capacity(cfg: ExperimentConfig) -> None:
    """With token dropping under tensor parallelism DeepSpeed splits each expert's capacity
    (ceil(top_k x capacity factor x tokens / experts), tokens = one rank's micro-batch of the stack)
    over the TP ranks (``deepspeed.moe.mappings._drop_tokens`` asserts it divides): refuse a
    capacity TP does not divide, naming a capacity factor that works."""
    import math

    from plmscale.perf.shape import describe
    m, tp = cfg.model, cfg.parallel.tensor_model_parallel_size
    if tp == 1 or m.moe_dropless:
        return
    k, factor, experts = m.moe_top_k, m.moe_capacity_factor, m.num_experts
    for stack in describe(cfg).stacks:
        tokens = cfg.train.micro_batch_size * stack.seq
        capacity = math.ceil(k * factor * tokens / experts)
        if stack.moe_layers and capacity % tp:
            fits = capacity + (-capacity) % tp
            # A factor in the middle of the range whose ceiling is ``fits`` (float-safe).
            suggestion = round((fits - 0.5) * experts / (k * tokens), 4)
            raise ConfigError(
                f"model.moe_capacity_factor={factor}: the {stack.name} experts' capacity ceil("
                f"moe_top_k {k} x {factor} x {tokens} tokens (train.micro_batch_size x its sequence"
                f" length) / num_experts {experts}) = {capacity} is not divisible by parallel."
                f"tensor_model_parallel_size={tp} (DeepSpeed splits it over the TP ranks); set "
                f"model.moe_capacity_factor={suggestion} (capacity {fits}) or model.moe_dropless=true")


def refuse_ignored_fields(cfg: ExperimentConfig) -> None:
    """Raise ``ConfigError`` for every optional field set away from its default that the family
    would ignore (or an objective it cannot honour), naming the families that do read it."""
    ignored = ignored_fields(cfg.model, cfg.objective)
    if not ignored:
        return
    lines = [f"{section}.{name}={getattr(getattr(cfg, section), name)!r} (read by: "
             f"{', '.join(readers(section, name)) or 'no family'})" for section, name in ignored]
    raise ConfigError(f"model.family={cfg.model.family!r} does not use " + "; ".join(lines)
                      + ". Remove these fields (or pick a family that reads them): a family must "
                        "not silently ignore a setting")


def check_run_features(cfg: ExperimentConfig) -> None:
    """The data mixture, the LR schedule and the evaluation settings."""
    from plmscale.config.mixture import mixture_sources
    from plmscale.training.schedules import SCHEDULES
    t, d = cfg.train, cfg.data
    sources = mixture_sources(d)
    if any(s.prefix for s in sources) and cfg.model.family not in PREFIX_FAMILIES:
        raise ConfigError(f"data.task_prefixes: model.family={cfg.model.family!r} has no encoder "
                          f"input to prefix; task prefixes are for {', '.join(PREFIX_FAMILIES)} "
                          f"(or leave data.task_prefixes unset)")
    if t.lr_schedule not in SCHEDULES:
        raise ConfigError(f"train.lr_schedule={t.lr_schedule!r}{did_you_mean(t.lr_schedule, SCHEDULES)}"
                          f"; valid values: {', '.join(SCHEDULES)}")
    if not 0.0 < t.wsd_decay_fraction <= 1.0:
        raise ConfigError(f"train.wsd_decay_fraction={t.wsd_decay_fraction} must be in (0, 1]")
    if t.eval_interval and d.valid_path is None and d.valid_fraction == 0:
        raise ConfigError(f"train.eval_interval={t.eval_interval} but there is nothing to evaluate "
                          f"on: set data.valid_path (a shard directory) or data.valid_fraction "
                          f"(e.g. 0.05, held out from the training data), or train.eval_interval=0")
    if d.valid_path is not None and d.valid_fraction:
        raise ConfigError("data.valid_path and data.valid_fraction are both set; pick one source of "
                          "validation data (set data.valid_fraction=0 to use data.valid_path)")


PREFIX_FAMILIES = ("t5", "bart")
"""Families whose samples have an encoder input that a task prefix goes before."""


def check_compile(cfg) -> None:
    """Refuse ``train.compile`` where the layers cannot be compiled whole."""
    tp = cfg.parallel.tensor_model_parallel_size
    if cfg.train.compile and tp > 1:
        raise ConfigError(
            f"train.compile=true cannot be combined with tensor_model_parallel_size={tp}: the "
            "backward of megatron-core's tensor-parallel linear all-reduces with async_op=True, "
            "which torch.compile cannot trace (a graph break inside every layer); set "
            "--set train.compile=false, or parallel.tensor_model_parallel_size=1 (pipeline and "
            "data parallelism compile)")
