"""Checks that run before anything is built, so that a bad layout fails in seconds, not after the
model has been allocated on every rank."""

from __future__ import annotations

from plmscale.config.families import ignored_fields, readers
from plmscale.config.loading import ConfigError, did_you_mean
from plmscale.config.schema import ExperimentConfig

PRECISIONS = ("fp32", "bf16", "fp16")
GELU_FORMS = ("none", "tanh")


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def valid_tensor_parallel_sizes(cfg: ExperimentConfig, world_size: int) -> list[int]:
    """Tensor-parallel sizes that split this model and fit ``world_size`` with the chosen PP."""
    m, pp = cfg.model, cfg.parallel.pipeline_model_parallel_size
    return [tp for tp in _divisors(max(world_size // max(pp, 1), 1))
            if world_size % (tp * pp) == 0 and m.num_attention_heads % tp == 0
            and m.ffn_hidden_size % tp == 0]


AT_LEAST_ONE = {
    "model": ("num_layers", "hidden_size", "num_attention_heads", "ffn_hidden_size", "vocab_size",
              "max_position_embeddings", "make_vocab_size_divisible_by",
              "embedding_size", "num_decoder_layers", "kv_channels", "relative_attention_num_buckets",
              "relative_attention_max_distance", "generator_hidden_size",
              "generator_ffn_hidden_size", "generator_num_attention_heads", "generator_num_layers"),
    "data": ("seq_length", "decoder_seq_length"),
    "train": ("micro_batch_size", "gradient_accumulation_steps", "train_steps", "log_interval",
              "eval_iters", "spike_window", "max_consecutive_skips"),
    "objective": ("max_ngram", "span_max_length"),
}
AT_LEAST_ZERO = {
    "model": ("init_std", "position_offset", "type_vocab_size"),
    "data": ("num_workers",),
    "train": ("seed", "lr", "min_lr", "warmup_steps", "weight_decay", "grad_clip", "save_interval",
              "eval_interval", "keep_last_n", "spike_std_factor"),
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
    "model": ("layernorm_epsilon",),
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


def validate_config(cfg: ExperimentConfig, world_size: int) -> None:
    """Raise ``ConfigError`` naming the offending field and the values that would work."""
    m, p, t, o = cfg.model, cfg.parallel, cfg.train, cfg.objective
    _check_ranges(cfg)
    refuse_ignored_fields(cfg)
    tp, pp = p.tensor_model_parallel_size, p.pipeline_model_parallel_size
    if tp < 1 or pp < 1:
        raise ConfigError("parallel.tensor_model_parallel_size and pipeline_model_parallel_size "
                          "must be >= 1")
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
    if t.precision not in PRECISIONS:
        raise ConfigError(f"train.precision={t.precision!r}; valid values: {', '.join(PRECISIONS)}")
    if m.gelu_approximate not in GELU_FORMS:
        raise ConfigError(f"model.gelu_approximate={m.gelu_approximate!r}; valid: {GELU_FORMS}")
    if cfg.data.seq_length > m.max_position_embeddings:
        raise ConfigError(f"data.seq_length={cfg.data.seq_length} exceeds "
                          f"model.max_position_embeddings={m.max_position_embeddings}")
    if not 0.0 < o.mlm_probability < 1.0:
        raise ConfigError(f"objective.mlm_probability={o.mlm_probability} must be in (0, 1)")
    if o.mask_token_fraction + o.random_token_fraction > 1.0:
        raise ConfigError("objective.mask_token_fraction + random_token_fraction must be <= 1")


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
