"""The one reader of plmscale checkpoints: any tensor-parallel x pipeline-parallel x ZeRO 0-2 layout
-> full (unpartitioned, unpadded) tensors under the ordinary model's parameter names, and back to
this rank's slices for whatever layout is current.

DeepSpeed writes a checkpoint directory ``save_dir/<tag>/`` as:

- without pipeline parallelism, ``mp_rank_{tp:02d}_model_states.pt`` per tensor-parallel rank, the
  module's state dict under ``"module"``;
- with it, ``layer_{i:02d}-model_{tp:02d}-model_states.pt`` per pipeline piece ``i`` and TP rank
  (the piece's own state dict), plus the ``mp_rank_*`` files holding the client state only.

How a tensor is split is read from the parameter attributes plmscale's layers carry
(``tensor_model_parallel`` / ``partition_dim``, ``vocab_padded``), on a reference model built on
the meta device (no memory); pipeline piece names map to the ordinary names through the family
pipeline's ``canonical_name``. ``training.checkpoint`` writes the config and the tokenizer next to
the shards, so a checkpoint directory is all that generation and export need.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
from pathlib import Path

import torch

from plmscale.config.schema import ExperimentConfig

CONFIG_FILE = "plmscale_config.json"
"""The resolved training config, written into every checkpoint tag directory."""
TOKENIZER_FILE = "tokenizer.model"
"""A copy of the run's sentencepiece model, written into every checkpoint tag directory."""

_LAYER_FILE = re.compile(r"layer_(\d+)-model_(\d+)-model_states\.pt$")


class CheckpointError(FileNotFoundError):
    """A checkpoint directory that is missing, incomplete or of an unsupported layout; the message
    names the file."""


def checkpoint_tag(directory: str | Path, tag: str | None = None) -> str:
    """``tag`` if given, else the one the ``latest`` file names."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory {directory} does not exist; pass the "
                              f"train.save_dir of a finished run")
    if tag is None:
        latest = directory / "latest"
        if not latest.is_file():
            raise CheckpointError(f"{latest} is missing: pass the train.save_dir of a finished run, "
                                  f"or a tag (e.g. --tag step100)")
        tag = latest.read_text().strip()
    if not (directory / tag).is_dir():
        raise CheckpointError(f"{directory / tag} is missing (tag {tag!r}); tags present: "
                              f"{sorted(p.name for p in directory.iterdir() if p.is_dir())}")
    return tag


def config_from_dict(values: dict) -> ExperimentConfig:
    """Inverse of ``plmscale.config.config_to_dict`` (fields a newer version added keep defaults)."""
    cfg = ExperimentConfig()
    for section in dataclasses.fields(ExperimentConfig):
        setattr(cfg, section.name, dataclasses.replace(getattr(cfg, section.name),
                                                       **values.get(section.name, {})))
    return cfg


def _load(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: the checkpoint is incomplete (copy the whole tag "
                              f"directory)")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # a truncated or foreign file
        raise CheckpointError(f"{path} cannot be read ({error}); the checkpoint is damaged") from None


def saved_config(directory: str | Path, tag: str | None = None) -> ExperimentConfig:
    """The training config of a checkpoint: its ``plmscale_config.json``, or, for checkpoints
    written before that file existed, the client state of ``mp_rank_00_model_states.pt``."""
    directory = Path(directory)
    tag = checkpoint_tag(directory, tag)
    path = directory / tag / CONFIG_FILE
    if path.is_file():
        return config_from_dict(json.loads(path.read_text()))
    state = _load(directory / tag / "mp_rank_00_model_states.pt")
    if "config" not in state:
        raise CheckpointError(f"{directory / tag / 'mp_rank_00_model_states.pt'} holds no plmscale "
                              f"config: not a checkpoint written by plmscale's training loop")
    return config_from_dict(state["config"])


def tokenizer_file(directory: str | Path, tag: str | None = None,
                   cfg: ExperimentConfig | None = None) -> Path:
    """The sentencepiece model of a checkpoint: its own copy, or (older checkpoints) the one of
    the run's ``data.path``."""
    directory = Path(directory)
    tag = checkpoint_tag(directory, tag)
    own = directory / tag / TOKENIZER_FILE
    if own.is_file():
        return own
    cfg = cfg or saved_config(directory, tag)
    manifest = Path(cfg.data.path) / "manifest.json"
    if not manifest.is_file():
        raise CheckpointError(f"{own} is missing and the run's data.path {cfg.data.path} has no "
                              f"manifest.json (moved?); pass the tokenizer explicitly")
    return Path(cfg.data.path) / json.loads(manifest.read_text())["tokenizer"]["file"]


@contextlib.contextmanager
def _stay_on_meta():
    """DeepSpeed's ``PipelineModule`` moves itself to the accelerator when built, which a meta
    module cannot do; the reference model only needs names and attributes, so skip the move."""
    from deepspeed.pipe import PipelineModule
    original = PipelineModule.to
    PipelineModule.to = lambda self, *args, **kwargs: self
    try:
        yield
    finally:
        PipelineModule.to = original


def inference_config(cfg: ExperimentConfig, tensor_parallel_size: int = 1) -> ExperimentConfig:
    """A copy of a saved config for using the trained model: one pipeline stage, the given TP
    size, no dropout, fp32 weights whatever the training precision, and no DistilBERT teacher
    (only training needs it)."""
    cfg = config_from_dict(dataclasses.asdict(cfg))
    cfg.parallel.tensor_model_parallel_size = tensor_parallel_size
    cfg.parallel.pipeline_model_parallel_size = 1
    cfg.model.hidden_dropout = cfg.model.attention_dropout = 0.0
    cfg.train.precision = "fp32"
    cfg.objective.distillation_teacher_path = None
    return cfg


def reference_parameters(cfg: ExperimentConfig) -> dict[str, torch.nn.Parameter]:
    """Meta-device parameters of the family's ordinary model for the current process groups."""
    from plmscale.models import build_model
    with torch.device("meta"):
        return dict(build_model(inference_config(cfg)).named_parameters())


def pipeline_layout(cfg: ExperimentConfig) -> tuple[dict[int, str], object]:
    """({piece index: the pipeline name prefix of that piece's parameters}, canonical_name) of the
    family's pipeline. The names do not depend on the stage split, so the module is built on the
    meta device for whatever pipeline groups are current (only the specs and names are used)."""
    from deepspeed.pipe import TiedLayerSpec

    from plmscale.models import get_family
    with torch.device("meta"), _stay_on_meta():
        pipe = get_family(cfg.model.family).pipeline(inference_config(cfg))
    prefixes = {i: (f"tied_modules.{spec.key}." if isinstance(spec, TiedLayerSpec) else f"{i}.")
                for i, spec in enumerate(pipe._layer_specs)}
    return prefixes, pipe.canonical_name


def _merge(name: str, pieces: list[torch.Tensor], param, vocab_size: int) -> torch.Tensor:
    pieces = [p.float() for p in pieces]
    if getattr(param, "tensor_model_parallel", False):
        tensor = torch.cat(pieces, dim=param.partition_dim)
    else:
        tensor = pieces[0]
    if getattr(param, "vocab_padded", False):
        tensor = tensor[:vocab_size]
    return tensor


def _zero3_guard(directory: Path, tag: str, cfg: ExperimentConfig) -> None:
    if cfg.parallel.zero_stage == 3:
        raise CheckpointError(
            f"{directory / tag} was saved with ZeRO-3: its weights are partitioned over the data-"
            f"parallel ranks inside the optimizer files, which plmscale cannot merge yet; resume "
            f"it with parallel.zero_stage=2 for 0 more steps (train.train_steps = its step) to "
            f"rewrite it, or train with zero_stage <= 2")


def read_full_tensors(directory: str | Path, tag: str | None = None
                      ) -> tuple[ExperimentConfig, dict[str, torch.Tensor]]:
    """(saved config, every parameter as the whole fp32 tensor without vocabulary padding, under
    the ordinary model's names) from a checkpoint of any TP x PP x ZeRO 0-2 layout.

    Needs megatron-core's process groups initialised (any layout: only names and partition
    attributes of a meta-device model are used)."""
    directory = Path(directory)
    tag = checkpoint_tag(directory, tag)
    cfg = saved_config(directory, tag)
    _zero3_guard(directory, tag, cfg)
    tp = cfg.parallel.tensor_model_parallel_size
    vocab = cfg.model.vocab_size
    reference = reference_parameters(cfg)
    if cfg.parallel.pipeline_model_parallel_size == 1:
        states = [_load(directory / tag / f"mp_rank_{r:02d}_model_states.pt")["module"]
                  for r in range(tp)]
        full = {}
        for name, param in reference.items():
            missing = [r for r, s in enumerate(states) if name not in s]
            if missing:
                raise CheckpointError(f"{directory / tag / f'mp_rank_{missing[0]:02d}_model_states.pt'}"
                                      f" has no tensor {name}: not a {cfg.model.family} checkpoint "
                                      f"of this plmscale version")
            full[name] = _merge(name, [s[name] for s in states], param, vocab)
        return cfg, full
    reference = reference_parameters(cfg)
    prefixes, canonical = pipeline_layout(cfg)
    files = {}
    for path in (directory / tag).iterdir():
        match = _LAYER_FILE.match(path.name)
        if match:
            files.setdefault(int(match[1]), {})[int(match[2])] = path
    full = {}
    for piece, prefix in prefixes.items():
        if piece not in files:
            continue  # a piece without parameters writes no file (checked below)
        for r in range(tp):
            if r not in files[piece]:
                raise CheckpointError(f"{directory / tag / _layer_file(piece, r)} is missing: the "
                                      f"checkpoint is incomplete")
        states = [_load(files[piece][r]) for r in range(tp)]
        for local in states[0]:
            name = canonical(prefix + local)
            if name in full or name not in reference:
                continue  # a tied copy (the first piece's wins: DeepSpeed keeps them equal)
            full[name] = _merge(name, [s[local] for s in states], reference[name], vocab)
    absent = sorted(set(reference) - set(full))
    if absent:
        owner = next((i for i, prefix in prefixes.items()
                      if absent[0].startswith(canonical(prefix))), None)
        where = (f"{directory / tag / _layer_file(owner, 0)} is missing" if owner is not None
                 else f"{directory / tag} lacks {absent[0]}")
        raise CheckpointError(f"{where}: the checkpoint is incomplete ({len(absent)} tensors "
                              f"absent, e.g. {absent[0]})")
    return cfg, full


def _layer_file(piece: int, tp_rank: int) -> str:
    return f"layer_{piece:02d}-model_{tp_rank:02d}-model_states.pt"


def load_full_tensors(model: torch.nn.Module, full: dict[str, torch.Tensor], vocab_size: int,
                      canonical_name=lambda name: name) -> None:
    """Copy full tensors into ``model`` built for the current process groups: vocabulary rows are
    padded to the model's size and partitioned tensors cut to this rank's slice. Every parameter
    must be present (``canonical_name`` maps a pipeline module's names to the ordinary ones)."""
    from megatron.core import parallel_state as ps
    size, rank = ps.get_tensor_model_parallel_world_size(), ps.get_tensor_model_parallel_rank()
    with torch.no_grad():
        for local, param in model.named_parameters():
            name = canonical_name(local)
            if name not in full:
                raise KeyError(f"no tensor {name} for parameter {local}")
            tensor = full[name]
            partitioned = getattr(param, "tensor_model_parallel", False)
            if getattr(param, "vocab_padded", False):
                rows = param.shape[0] * (size if partitioned and param.partition_dim == 0 else 1)
                tensor = torch.cat([tensor[:vocab_size],
                                    tensor.new_zeros(rows - vocab_size, *tensor.shape[1:])])
            if partitioned and size > 1:
                tensor = tensor.chunk(size, dim=param.partition_dim)[rank]
            param.copy_(tensor.to(param.dtype))
