"""Checkpoints through DeepSpeed: model, optimizer and LR-schedule state per rank (ZeRO partitions
included), plus plmscale's own client state: the step, the data position and the resolved config.

Each tag directory is self-contained: besides DeepSpeed's files it holds the config as JSON, a
copy of the run's sentencepiece model and, under pipeline parallelism, which parameter each layer
file holds (``plmscale.export.shards`` reads them all), so generation and export work from any
directory, wherever the training shards went.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch.distributed as dist

from plmscale.config import ExperimentConfig, config_to_dict
from megatron.core import parallel_state as ps

from plmscale.export.shards import CONFIG_FILE, TOKENIZER_FILE, write_pipeline_names


def run_tokenizer(cfg: ExperimentConfig) -> Path | None:
    """The sentencepiece model of the run's ``data.path`` (None when it has no manifest)."""
    manifest = Path(cfg.data.path) / "manifest.json"
    if not manifest.is_file():
        return None
    return Path(cfg.data.path) / json.loads(manifest.read_text())["tokenizer"]["file"]


def save(engine, directory: str, step: int, micro_batches: int, cfg: ExperimentConfig) -> None:
    """Collective: every rank calls it. Writes ``directory/step{N}`` and points ``latest`` at it."""
    tag = f"step{step}"
    engine.save_checkpoint(directory, tag=tag,
                           client_state={"step": step, "micro_batches": micro_batches,
                                         "config": config_to_dict(cfg)})
    target = Path(directory) / tag
    if hasattr(engine.module, "canonical_name") and ps.get_data_parallel_rank() == 0 \
            and ps.get_tensor_model_parallel_rank() == 0:  # one writer per pipeline stage
        write_pipeline_names(engine.module, target)
    if dist.get_rank() == 0:
        (target / CONFIG_FILE).write_text(json.dumps(config_to_dict(cfg), indent=1))
        tokenizer = run_tokenizer(cfg)
        if tokenizer is not None and tokenizer.is_file():
            shutil.copyfile(tokenizer, target / TOKENIZER_FILE)
    dist.barrier()


def load(engine, directory: str) -> tuple[int, int]:
    """Resume from ``directory``'s latest checkpoint; returns (step, global micro-batch position)."""
    if not (Path(directory) / "latest").is_file():
        raise FileNotFoundError(f"no checkpoint to resume in {directory} (no 'latest' file); "
                                f"unset train.load_dir to start from scratch")
    path, client = engine.load_checkpoint(directory)
    if path is None:
        raise RuntimeError(f"DeepSpeed could not load the checkpoint in {directory}")
    return int(client["step"]), int(client["micro_batches"])
