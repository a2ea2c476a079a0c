"""Checkpoints through DeepSpeed: model, optimizer and LR-schedule state per rank (ZeRO partitions
included), plus plmscale's own client state: the step, the data position and the resolved config."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from plmscale.config import ExperimentConfig, config_to_dict


def save(engine, directory: str, step: int, micro_batches: int, cfg: ExperimentConfig,
         tokens_seen: int = 0) -> None:
    """Collective: every rank calls it. Writes ``directory/step{N}`` and points ``latest`` at it."""
    engine.save_checkpoint(directory, tag=f"step{step}",
                           client_state={"step": step, "micro_batches": micro_batches,
                                         "tokens_seen": tokens_seen,
                                         "config": config_to_dict(cfg)})


def latest_checkpoint(directory: Optional[str]) -> Optional[str]:
    """The tag DeepSpeed's ``latest`` file in ``directory`` names, when that checkpoint exists
    (``latest`` is written after the checkpoint's files); None when there is none to resume."""
    if not directory:
        return None
    latest = Path(directory) / "latest"
    if not latest.is_file():
        return None
    tag = latest.read_text().strip()
    return tag if tag and (Path(directory) / tag).is_dir() else None


def load(engine, directory: str) -> tuple[int, int]:
    """Resume from ``directory``'s latest checkpoint; returns (step, global micro-batch position)."""
    client = load_client_state(engine, directory)
    return int(client["step"]), int(client["micro_batches"])


def load_client_state(engine, directory: str) -> dict:
    """Resume from ``directory``'s latest checkpoint; returns plmscale's client state (step,
    micro_batches, tokens_seen, config)."""
    if not (Path(directory) / "latest").is_file():
        raise FileNotFoundError(f"no checkpoint to resume in {directory} (no 'latest' file); "
                                f"unset train.load_dir to start from scratch")
    path, client = engine.load_checkpoint(directory)
    if path is None:
        raise RuntimeError(f"DeepSpeed could not load the checkpoint in {directory}")
    return client
