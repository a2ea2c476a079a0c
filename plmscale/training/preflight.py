"""Checks of what a run points at, made before any process group or model exists, so a user's
mistake costs seconds and reads as one message: the data directory and its tokenizer, and the
checkpoint to resume (present, complete, trained on shards of the same tokenizer)."""

from __future__ import annotations

import json
from pathlib import Path

from plmscale.config import ConfigError, ExperimentConfig
from plmscale.training import checkpoint


def check_inputs(cfg: ExperimentConfig) -> None:
    """Raise ``ConfigError`` / ``CheckpointError`` naming the field, the path and the fix."""
    from plmscale.data.tokenizer import SpecialTokens, require_mask
    data = Path(cfg.data.path)
    manifest = data / "manifest.json"
    if not manifest.is_file():
        raise ConfigError(f"data.path={data} holds no manifest.json: point data.path at the output "
                          f"directory of `python -m data_prep encode` (launch/demo.sh shows how)")
    try:
        tokenizer = data / json.loads(manifest.read_text())["tokenizer"]["file"]
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"{manifest} is unreadable ({error!r}); re-run `python -m data_prep "
                          f"encode` into {data}") from None
    tokens = SpecialTokens.from_model(tokenizer)
    from plmscale.families import get_family
    if get_family(cfg.model.family).masks_tokens:
        try:
            require_mask(tokens, tokenizer, cfg.model.family)
        except ValueError as error:
            raise ConfigError(str(error)) from None
    vocab = tokens.vocab_size
    if vocab > cfg.model.vocab_size:
        raise ConfigError(f"the tokenizer of data.path={data} has {vocab} pieces but "
                          f"model.vocab_size={cfg.model.vocab_size}; set model.vocab_size >= {vocab}")
    from plmscale.config.mixture import mixture_sources
    for field, path in ([("data.paths", s.path) for s in mixture_sources(cfg.data)[1:]]
                        + [("data.valid_path", cfg.data.valid_path)] * bool(cfg.data.valid_path)):
        if not (Path(path) / "manifest.json").is_file():
            raise ConfigError(f"{field}: {path} holds no manifest.json: point it at the output "
                              f"directory of `python -m data_prep encode` (with the same tokenizer "
                              f"as {data})")
    if cfg.train.load_dir:
        tag = checkpoint.candidate_tags(cfg.train.load_dir)[0]
        where = f"{cfg.train.load_dir}/{tag}"
        checkpoint.check_same_data(cfg, checkpoint.metadata(cfg.train.load_dir, tag), where)
