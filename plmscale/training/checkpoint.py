"""Checkpoints through DeepSpeed (model, optimizer and LR-schedule state per rank, ZeRO partitions
included) under a commit protocol, plus plmscale's own state as JSON (step, data position, guard
state, the resolved config and the identity of the data it was trained on).

Commit protocol (``save``): every rank writes its DeepSpeed files into ``save_dir/step{N}`` (DeepSpeed
is told not to touch ``latest``); a barrier; the ranks hash the directory's files between them; rank 0
writes ``plmscale.json`` and then ``manifest.json`` (every file's size and sha256), each through a
temporary file and ``os.replace``, then replaces ``latest`` the same way; a barrier. A tag without a
manifest is therefore an interrupted save, and ``latest`` only ever names a complete tag. Old tags
are pruned (``train.keep_last_n``) only after that.

Loading verifies the manifest first (each rank hashes a share of the files) and names the missing or
corrupt file; with ``train.resume_fallback`` it warns and takes the newest tag that passes.

Each tag directory is self-contained: besides DeepSpeed's files it holds the config (in
``plmscale.json``), a copy of the run's sentencepiece model and, under pipeline parallelism, which
parameter each layer file holds (``plmscale.export.shards`` reads them all), so generation and export
work from any directory, wherever the training shards went.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import sys
from pathlib import Path

import torch.distributed as dist

from plmscale.config import ConfigError, ExperimentConfig, config_from_dict, config_to_dict
from plmscale.export.shards import METADATA_FILE as METADATA
from plmscale.export.shards import TOKENIZER_FILES, safe_load, write_pipeline_names
from plmscale.models.moe.checkpoint import complete_moe_checkpoint

MANIFEST = "manifest.json"
TAG = re.compile(r"^step(\d+)$")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be resumed: missing, incomplete, corrupt or of other data."""


def _sha256(path: Path) -> str:
    from data_prep.shards import sha256_file
    return sha256_file(path)


def write_atomically(path: Path, text: str) -> None:
    """``path`` holds either its old content or all of ``text``, never a part (temp + os.replace)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def tag_step(name: str) -> int | None:
    match = TAG.match(name)
    return int(match.group(1)) if match else None


def _files(tag_dir: Path) -> list[str]:
    return sorted(str(p.relative_to(tag_dir)) for p in tag_dir.rglob("*")
                  if p.is_file() and p.name != MANIFEST)


def _shared_hashes(tag_dir: Path, names: list[str]) -> dict[str, dict]:
    """{file: {bytes, sha256}} for ``names``, each rank hashing every world-size-th file."""
    rank, world = dist.get_rank(), dist.get_world_size()
    mine = {}
    for name in names[rank::world]:
        path = tag_dir / name
        mine[name] = {"bytes": path.stat().st_size, "sha256": _sha256(path)}
    shares = [None] * world
    dist.all_gather_object(shares, mine)
    return {k: v for share in shares for k, v in share.items()}


def data_identity(cfg: ExperimentConfig) -> dict:
    """What a resumed run must read the same way: the shard directory and its tokenizer."""
    manifest = Path(cfg.data.path) / "manifest.json"
    tokenizer = json.loads(manifest.read_text()).get("tokenizer", {}) if manifest.is_file() else {}
    from plmscale.data.tokenizer import SpecialTokens
    path = Path(cfg.data.path) / tokenizer.get("file", "tokenizer.model")
    return {"data_path": str(Path(cfg.data.path).resolve()),
            "tokenizer_sha256": tokenizer.get("sha256"),
            "tokenizer_vocab_size": SpecialTokens.from_model(path).vocab_size if path.is_file() else None}


def save(engine, directory: str, step: int, micro_batches: int, cfg: ExperimentConfig,
         extra: dict | None = None) -> None:
    """Collective: every rank calls it. Writes and commits ``directory/step{N}``; ``extra`` is more
    JSON state (e.g. the step guard's) returned by ``load``."""
    directory = Path(directory)
    tag = f"step{step}"
    tag_dir = directory / tag
    replaced = directory / f".{tag}.replaced"
    if dist.get_rank() == 0:
        directory.mkdir(parents=True, exist_ok=True)
        if (tag_dir / MANIFEST).is_file():  # a complete save of this step: kept until the new commits
            shutil.rmtree(replaced, ignore_errors=True)
            os.replace(tag_dir, replaced)
        elif tag_dir.exists():  # left by an interrupted save of the same step: start clean
            shutil.rmtree(tag_dir)
    dist.barrier()
    # The config also stays in the client state (plain values, readable with weights_only=True)
    # for readers of the model file written before plmscale.json existed (distillation teachers).
    client_state = {"step": step, "micro_batches": micro_batches, "config": config_to_dict(cfg)}
    engine.save_checkpoint(str(directory), tag=tag, save_latest=False, client_state=client_state)
    complete_moe_checkpoint(engine, str(directory), tag, client_state)  # TP x EP: DeepSpeed's gaps
    _write_self_containment(engine, tag_dir, cfg)
    dist.barrier()
    from plmscale.training.relayout import current_layout
    commit(directory, tag, {"step": step, "micro_batches": micro_batches, "extra": extra or {},
                            "config": config_to_dict(cfg), "data": data_identity(cfg),
                            "layout": dataclasses.asdict(current_layout(cfg))}, cfg)
    if dist.get_rank() == 0:
        shutil.rmtree(replaced, ignore_errors=True)


def _write_self_containment(engine, tag_dir: Path, cfg: ExperimentConfig) -> None:
    """What lets a tag be read without the run's data: which parameters each pipeline stage's
    layer files hold (one writer per stage), and a copy of the tokenizer (rank 0)."""
    from megatron.core import parallel_state as ps
    if hasattr(engine.module, "canonical_name") and ps.get_data_parallel_rank() == 0 \
            and ps.get_tensor_model_parallel_rank() == 0:
        write_pipeline_names(engine.module, tag_dir)
    if dist.get_rank() == 0:
        tokenizer = run_tokenizer(cfg)
        if tokenizer is not None and tokenizer.is_file():  # under its kind's name (shards.py)
            name = tokenizer.name if tokenizer.name in TOKENIZER_FILES else TOKENIZER_FILES[0]
            shutil.copyfile(tokenizer, tag_dir / name)


def run_tokenizer(cfg: ExperimentConfig) -> Path | None:
    """The tokenizer file of the run's ``data.path`` (None when it has no manifest)."""
    manifest = Path(cfg.data.path) / "manifest.json"
    if not manifest.is_file():
        return None
    return Path(cfg.data.path) / json.loads(manifest.read_text())["tokenizer"]["file"]


def commit(directory: Path, tag: str, metadata: dict, cfg: ExperimentConfig) -> None:
    """Collective, after every rank's files are written: hash them, write the metadata and the
    manifest, point ``latest`` at the tag, prune. Only then is the tag a checkpoint."""
    tag_dir = directory / tag
    if dist.get_rank() == 0:
        write_atomically(tag_dir / METADATA, json.dumps(metadata, indent=1))
    dist.barrier()
    hashes = _shared_hashes(tag_dir, _files(tag_dir))
    if dist.get_rank() == 0:
        write_atomically(tag_dir / MANIFEST, json.dumps(
            {"tag": tag, "step": metadata["step"], "files": hashes}, indent=1))
        write_atomically(directory / "latest", tag)
        prune(directory, cfg.train.keep_last_n)
    dist.barrier()


def complete_tags(directory: str | Path) -> list[str]:
    """Tags with a manifest (committed saves), newest step first."""
    directory = Path(directory)
    tags = [p.name for p in directory.iterdir() if p.is_dir() and tag_step(p.name) is not None
            and (p / MANIFEST).is_file()] if directory.is_dir() else []
    return sorted(tags, key=tag_step, reverse=True)


def prune(directory: Path, keep_last_n: int) -> None:
    """Delete every tag older than the ``keep_last_n`` newest complete ones (0 = keep all)."""
    complete = complete_tags(directory)
    if keep_last_n < 1 or len(complete) <= keep_last_n:
        return
    oldest_kept = tag_step(complete[keep_last_n - 1])
    for path in directory.iterdir():
        step = tag_step(path.name)
        if path.is_dir() and step is not None and step < oldest_kept:
            shutil.rmtree(path, ignore_errors=True)


def verify(directory: str | Path, tag: str, hashed: list[str] | None = None) -> None:
    """Check tag ``tag`` against its manifest: every file present with its size, and the sha256
    of the files in ``hashed`` (default: all). Raises ``CheckpointError`` naming the missing,
    truncated or corrupt file."""
    tag_dir = Path(directory) / tag
    manifest = _read_json(tag_dir / MANIFEST, f"{tag_dir} is incomplete (no {MANIFEST}: its save "
                                               "was interrupted)")
    entries = manifest.get("files")
    if not isinstance(entries, dict) or not all(
            isinstance(e, dict) and {"bytes", "sha256"} <= e.keys() for e in entries.values()):
        raise CheckpointError(f"{tag_dir / MANIFEST} is malformed (no files with bytes and "
                              f"sha256); the checkpoint cannot be verified")
    for name, entry in entries.items():
        path = tag_dir / name
        if not path.is_file():
            raise CheckpointError(f"{path} is missing (listed in {tag_dir / MANIFEST})")
        if path.stat().st_size != entry["bytes"]:
            raise CheckpointError(f"{path} is {path.stat().st_size} bytes, the manifest says "
                                  f"{entry['bytes']} (truncated or overwritten)")
    for name in entries if hashed is None else hashed:
        if _sha256(tag_dir / name) != entries[name]["sha256"]:
            raise CheckpointError(f"{tag_dir / name} does not match its sha256 in the manifest "
                                  f"(corrupt)")


def verify_shared(directory: str | Path, tag: str) -> str | None:
    """Collective ``verify``: every rank checks all sizes and hashes a share of the files;
    returns the first error (the same on all ranks) or None."""
    rank, world = dist.get_rank(), dist.get_world_size()
    error = None
    try:
        names = sorted(_read_json(Path(directory) / tag / MANIFEST, "").get("files") or {})
        verify(directory, tag, hashed=names[rank::world])
    except CheckpointError as failure:
        error = str(failure)
    errors = [None] * world
    dist.all_gather_object(errors, error)
    return next((e for e in errors if e), None)


def _read_json(path: Path, missing: str) -> dict:
    if not path.is_file():
        raise CheckpointError(missing or f"{path} is missing")
    try:
        value = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path} is not valid JSON ({error}); the file is corrupt") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{path} does not hold a JSON object; the file is corrupt")
    return value


def warn(message: str) -> None:
    rank = dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", "0"))
    if rank == 0:
        print(f"plmscale: warning: {message}", file=sys.stderr, flush=True)


def candidate_tags(directory: str | Path) -> list[str]:
    """Complete tags to try, newest first; warns about newer interrupted saves. Raises
    ``CheckpointError`` when there is none. Needs no process group (checked before any model)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"train.load_dir {directory} does not exist; point it at the "
                              f"train.save_dir of an earlier run, or unset it to start from scratch")
    complete = complete_tags(directory)
    newest = tag_step(complete[0]) if complete else -1
    for path in sorted(directory.iterdir()):
        step = tag_step(path.name)
        if path.is_dir() and step is not None and step > newest and path.name not in complete:
            warn(f"{path} is incomplete (no {MANIFEST}: its save was interrupted); skipped")
    if not complete:
        raise CheckpointError(f"train.load_dir {directory} holds no complete checkpoint (no "
                              f"step*/{MANIFEST}); unset train.load_dir to start from scratch")
    return complete


def metadata(directory: str | Path, tag: str) -> dict:
    """The JSON state saved with tag ``tag`` (see ``save``)."""
    return _read_json(Path(directory) / tag / METADATA,
                      f"{Path(directory) / tag / METADATA} is missing; the checkpoint is incomplete")


def saved_config(directory: str | Path, tag: str) -> ExperimentConfig:
    try:
        return config_from_dict(metadata(directory, tag)["config"], f"{directory}/{tag}/{METADATA}")
    except (KeyError, ConfigError) as error:
        raise CheckpointError(f"{directory}/{tag}/{METADATA} holds no usable config ({error})") from None


def check_same_data(cfg: ExperimentConfig, saved: dict, where: str) -> None:
    """A resume must read shards of the same tokenizer (else token ids mean other words)."""
    now = data_identity(cfg)
    before = saved.get("data", {})
    if before.get("tokenizer_sha256") and now["tokenizer_sha256"] != before["tokenizer_sha256"]:
        raise CheckpointError(
            f"data.path {cfg.data.path} is tokenized with another tokenizer (sha256 "
            f"{str(now['tokenizer_sha256'])[:12]}) than the checkpoint {where} was trained on "
            f"({before['data_path']}, tokenizer sha256 {before['tokenizer_sha256'][:12]}); point "
            f"data.path at shards encoded with that tokenizer")


def load(engine, directory: str, fallback: bool = True,
         cfg: ExperimentConfig | None = None, module_only: bool = False) -> tuple[int, int, dict]:
    """Collective. Resume from the newest complete, verified tag in ``directory``; returns (step,
    global micro-batch position, extra state). A tag failing verification is an error naming the
    file, or, with ``fallback``, a warning and the next older tag. ``module_only``: the weights
    alone (evaluation: no optimizer or scheduler state, so any data-parallel size reads it)."""
    errors = []
    for tag in candidate_tags(directory):
        error = verify_shared(directory, tag)
        if error is None:
            break
        if not fallback:
            raise CheckpointError(f"{error}; set train.resume_fallback=true to resume from an "
                                  f"older checkpoint instead")
        warn(f"{error}; falling back to the previous checkpoint")
        errors.append(error)
    else:
        raise CheckpointError(f"no checkpoint in {directory} passes verification: "
                              + "; ".join(errors))
    saved = metadata(directory, tag)
    if cfg is not None:
        check_same_data(cfg, saved, f"{directory}/{tag}")
    step, micro_batches = int(saved["step"]), int(saved["micro_batches"])
    if cfg is not None and not cfg.model.num_experts:
        from plmscale.training import relayout
        before, now = relayout.saved_layout(directory, tag, saved), relayout.current_layout(cfg)
        if (before.tensor, before.pipeline) != (now.tensor, now.pipeline) or (
                not module_only and before != now):
            relayout.load_resliced(engine, directory, tag, cfg, step, module_only)
            warn(f"{directory}/{tag} was saved at {before}; resumed at {now} (weights"
                 f"{'' if module_only else ', Adam moments, step and data position'} re-sliced)")
            return step, relayout.data_position(micro_batches, saved, before, cfg), \
                saved.get("extra", {})
    engine.checkpoint_engine.load = safe_load
    weights_only = other_expert_parallel_size(cfg, saved)
    path, _ = engine.load_checkpoint(directory, tag=tag, load_module_only=bool(weights_only),
                                     load_optimizer_states=not module_only,
                                     load_lr_scheduler_states=not module_only)
    if path is None:
        raise CheckpointError(f"DeepSpeed could not load {directory}/{tag}")
    if engine.lr_scheduler is not None and not module_only:
        # DeepSpeed restores a ZeRO optimizer (its param groups' saved rates included) after the
        # scheduler, so the rates are set again from the resumed run's own curve at the saved step.
        from plmscale.training.relayout import continue_schedule
        continue_schedule(engine, step, counters=bool(weights_only))
    if weights_only:
        warn(f"{directory}/{tag} was saved at model.expert_model_parallel_size="
             f"{weights_only}: its weights are loaded at {cfg.model.expert_model_parallel_size} "
             f"(experts are stored per global id) and the schedule continues, but the optimizer "
             f"moments restart (DeepSpeed partitions them by the expert-parallel layout)")
    return step, micro_batches, saved.get("extra", {})


def other_expert_parallel_size(cfg: ExperimentConfig | None, saved: dict) -> int:
    """The expert-parallel size a checkpoint with experts was saved at, when it differs from
    ``cfg``'s; else 0."""
    if cfg is None or not cfg.model.num_experts:
        return 0
    before = saved.get("config", {}).get("model", {}).get("expert_model_parallel_size", 1)
    return before if before != cfg.model.expert_model_parallel_size else 0


def load_optimizer(engine, directory: str, cfg: ExperimentConfig) -> None:
    """Collective. ``train.init_optimizer``: the model and optimizer state of the newest complete
    tag of ``directory``, which must have this run's layout; the step and schedule stay at 0."""
    tag = latest_checkpoint(directory)
    if tag is None:
        raise CheckpointError(f"train.init_from {directory} holds no complete checkpoint")
    saved = saved_config(directory, tag).parallel
    p = cfg.parallel
    if (saved.tensor_model_parallel_size, saved.pipeline_model_parallel_size, saved.zero_stage) != \
            (p.tensor_model_parallel_size, p.pipeline_model_parallel_size, p.zero_stage):
        raise CheckpointError(
            f"train.init_optimizer needs train.init_from at this run's layout: {directory}/{tag} is "
            f"TP{saved.tensor_model_parallel_size} x PP{saved.pipeline_model_parallel_size} ZeRO "
            f"{saved.zero_stage}; set parallel.* so, or train.init_optimizer=false (fresh optimizer)")
    engine.checkpoint_engine.load = safe_load
    path, _ = engine.load_checkpoint(directory, tag=tag, load_optimizer_states=True,
                                     load_lr_scheduler_states=False)
    if path is None:
        raise CheckpointError(f"DeepSpeed could not load {directory}/{tag}")


def latest_checkpoint(directory: str | Path | None) -> str | None:
    """The newest complete tag of ``directory`` (by manifest), or None when there is none (or no
    directory is given)."""
    if not directory:
        return None
    tags = complete_tags(directory)
    return tags[0] if tags else None
