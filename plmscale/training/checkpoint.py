"""Checkpoints through DeepSpeed: model, optimizer and LR-schedule state per rank (ZeRO partitions
included), plus plmscale's own client state: the step, the data position and the resolved config."""

from __future__ import annotations

from pathlib import Path

from plmscale.config import ExperimentConfig, config_to_dict


def save(engine, directory: str, step: int, micro_batches: int, cfg: ExperimentConfig) -> None:
    """Collective: every rank calls it. Writes ``directory/step{N}`` and points ``latest`` at it."""
    engine.save_checkpoint(directory, tag=f"step{step}",
                           client_state={"step": step, "micro_batches": micro_batches,
                                         "config": config_to_dict(cfg)})


def load(engine, directory: str) -> tuple[int, int]:
    """Resume from ``directory``'s latest checkpoint; returns (step, global micro-batch position)."""
    if not (Path(directory) / "latest").is_file():
        raise FileNotFoundError(f"no checkpoint to resume in {directory} (no 'latest' file); "
                                f"unset train.load_dir to start from scratch")
    path, client = engine.load_checkpoint(directory)
    if path is None:
        raise RuntimeError(f"DeepSpeed could not load the checkpoint in {directory}")
    return int(client["step"]), int(client["micro_batches"])
