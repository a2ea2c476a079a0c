"""The one reader of plmscale checkpoints: any tensor-parallel x pipeline-parallel x ZeRO 0-3 layout
-> full (unpartitioned, unpadded) tensors under the ordinary model's parameter names, and back to
this rank's slices for whatever layout is current.

DeepSpeed writes a checkpoint directory ``save_dir/<tag>/`` as:

- without pipeline parallelism, ``mp_rank_{tp:02d}_model_states.pt`` per tensor-parallel rank, the
  module's state dict under ``"module"``;
- with it, ``layer_{i:02d}-model_{tp:02d}-model_states.pt`` per pipeline piece ``i`` and TP rank
  (the piece's own state dict), plus the ``mp_rank_*`` files holding the client state only;
- with ZeRO-3, the weights only as fp32 partitions in
  ``zero_pp_rank_{dp}_mp_rank_{tp:02d}_optim_states.pt`` (consolidated per TP rank by DeepSpeed's
  ``zero_to_fp32``, then merged over TP as the others).

How a tensor is split is read from the parameter attributes plmscale's layers carry
(``tensor_model_parallel`` / ``partition_dim``, ``vocab_padded``), on a reference model built on
the meta device (no memory). ``training.checkpoint`` writes the config, the tokenizer and (under
pipeline parallelism) which ordinary parameter each layer-file key holds next to the shards, so a
checkpoint directory is all that generation and export need.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import re
from pathlib import Path

import torch

from plmscale.config import config_from_dict
from plmscale.config.schema import ExperimentConfig

METADATA_FILE = "plmscale.json"
"""plmscale's JSON state in every committed checkpoint tag (``plmscale.training.checkpoint``): the
step, the data position and, under "config", the resolved training config."""
TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json")
"""A copy of the run's tokenizer, written into every checkpoint tag directory under the name the
shard directory gives it: a sentencepiece model or a Hugging Face ``tokenizer.json``."""

PIPELINE_NAMES = "plmscale_pipeline_names.stage{stage}.json"
"""Per pipeline stage: which ordinary parameter each key of each layer file holds."""

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


def _deepspeed_globals() -> list:
    """The few DeepSpeed classes its checkpoint files hold besides tensors and plain values."""
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address
    return [LossScaler, DynamicLossScaler, ZeroStageEnum, fragment_address]


def safe_load(path, map_location=None):
    """``torch.load`` with ``weights_only=True`` (no arbitrary code runs from a file), allowing
    only DeepSpeed's checkpoint bookkeeping classes; used for DeepSpeed's own reads too."""
    with torch.serialization.safe_globals(_deepspeed_globals()):
        return torch.load(path, map_location=map_location, weights_only=True)


def _load(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: the checkpoint is incomplete (copy the whole tag "
                              f"directory)")
    try:
        return safe_load(path, map_location="cpu")
    except Exception as error:  # a truncated or foreign file
        raise CheckpointError(f"{path} cannot be read ({error}); the checkpoint is damaged") from None


def saved_config(directory: str | Path, tag: str | None = None) -> ExperimentConfig:
    """The training config of a checkpoint: the "config" of its ``plmscale.json``, or, for
    checkpoints written before that file existed, the client state of
    ``mp_rank_00_model_states.pt``."""
    directory = Path(directory)
    tag = checkpoint_tag(directory, tag)
    path = directory / tag / METADATA_FILE
    if path.is_file():
        return config_from_dict(json.loads(path.read_text())["config"])
    state = _load(directory / tag / "mp_rank_00_model_states.pt")
    if "config" not in state:
        raise CheckpointError(f"{directory / tag / 'mp_rank_00_model_states.pt'} holds no plmscale "
                              f"config: not a checkpoint written by plmscale's training loop")
    return config_from_dict(state["config"])


def tokenizer_file(directory: str | Path, tag: str | None = None,
                   cfg: ExperimentConfig | None = None) -> Path:
    """The tokenizer (sentencepiece model or ``tokenizer.json``) of a checkpoint: its own copy,
    or (older checkpoints) the one of the run's ``data.path``."""
    directory = Path(directory)
    tag = checkpoint_tag(directory, tag)
    for name in TOKENIZER_FILES:
        if (directory / tag / name).is_file():
            return directory / tag / name
    own = directory / tag / TOKENIZER_FILES[0]
    cfg = cfg or saved_config(directory, tag)
    manifest = Path(cfg.data.path) / "manifest.json"
    if not manifest.is_file():
        raise CheckpointError(f"{own} is missing and the run's data.path {cfg.data.path} has no "
                              f"manifest.json (moved?); pass the tokenizer explicitly")
    return Path(cfg.data.path) / json.loads(manifest.read_text())["tokenizer"]["file"]


def inference_config(cfg: ExperimentConfig, tensor_parallel_size: int = 1) -> ExperimentConfig:
    """A copy of a saved config for using the trained model: one pipeline stage, the given TP
    size, all experts in each process (expert parallel 1), no dropout, fp32 weights whatever the training precision, and no DistilBERT teacher
    (only training needs it)."""
    cfg = config_from_dict(dataclasses.asdict(cfg))
    cfg.parallel.tensor_model_parallel_size = tensor_parallel_size
    cfg.parallel.pipeline_model_parallel_size = 1
    cfg.model.hidden_dropout = cfg.model.attention_dropout = 0.0
    cfg.train.precision = "fp32"
    cfg.objective.distillation_teacher_path = None
    cfg.model.expert_model_parallel_size = 1  # every expert, under its global index
    return cfg


def reference_parameters(cfg: ExperimentConfig) -> dict[str, torch.nn.Parameter]:
    """Meta-device parameters of the family's ordinary model for the current process groups."""
    from plmscale.families import build_model
    with torch.device("meta"):
        return dict(build_model(inference_config(cfg)).named_parameters())


def pipeline_names(pipe) -> dict[int, dict[str, str]]:
    """{piece index: {key in that piece's layer file: ordinary parameter name}} for the pieces of
    this stage of a ``PiecewisePipeline`` (every piece with parameters, tied modules included: it
    saves them in each using piece's layer file)."""
    tied = {id(module): f"tied_modules.{key}." for key, module in pipe.tied_modules.items()}
    names = {}
    for local, layer in enumerate(pipe.layers_with_state()):
        if not hasattr(layer, "state_dict"):
            continue
        piece = int(pipe._local_start) + local
        prefix = tied.get(id(layer), f"{piece}.")
        names[piece] = {key: pipe.canonical_name(prefix + key)
                        for key, _ in layer.named_parameters()}
    return names


def write_pipeline_names(pipe, target: Path) -> None:
    """Record this stage's ``pipeline_names`` next to its layer files (one file per stage), so a
    reader needs no pipeline module to name them."""
    from megatron.core import parallel_state as ps
    stage = ps.get_pipeline_model_parallel_rank()
    (target / PIPELINE_NAMES.format(stage=stage)).write_text(json.dumps(pipeline_names(pipe)))


def _recorded_pipeline_names(directory: Path, tag: str) -> dict[int, dict[str, str]]:
    files = sorted((directory / tag).glob(PIPELINE_NAMES.format(stage="*")))
    if not files:
        raise CheckpointError(f"{directory / tag / PIPELINE_NAMES.format(stage=0)} is missing: "
                              f"a pipeline-parallel checkpoint written before plmscale recorded "
                              f"its parameter names cannot be read; resume it for 0 steps to "
                              f"rewrite it")
    names = {}
    for f in files:
        names.update({int(piece): keys for piece, keys in json.loads(f.read_text()).items()})
    return names


def _merge(name: str, pieces: list[torch.Tensor], param, vocab_size: int) -> torch.Tensor:
    pieces = [p.float() for p in pieces]
    if getattr(param, "tensor_model_parallel", False):
        tensor = torch.cat(pieces, dim=param.partition_dim)
    else:
        tensor = pieces[0]
    if getattr(param, "vocab_padded", False):
        tensor = tensor[:vocab_size]
    return tensor


def _zero3_states(directory: Path, tag: str, tp: int) -> list[dict[str, torch.Tensor]]:
    """Per TP rank, the module's fp32 tensors of a ZeRO-3 checkpoint (whose weights live only in
    the optimizer files, partitioned over the data-parallel ranks). DeepSpeed's own consolidation
    (``zero_to_fp32``) handles one TP rank's files at a time, so it is shown each rank's files
    alone, through links in a scratch directory."""
    import tempfile

    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
    states = []
    for rank in range(tp):
        files = sorted((directory / tag).glob(f"zero_pp_rank_*_mp_rank_{rank:02d}_*_states.pt"))
        if not any(f.name.endswith("_optim_states.pt") for f in files):
            raise CheckpointError(f"{directory / tag}/zero_pp_rank_0_mp_rank_{rank:02d}_optim_states.pt"
                                  f" is missing: the ZeRO-3 checkpoint is incomplete")
        with tempfile.TemporaryDirectory() as scratch:
            (Path(scratch) / tag).mkdir()
            for f in files:
                (Path(scratch) / tag / f.name).symlink_to(f.resolve())
            try:  # (its progress lines would mix with a command's output)
                with contextlib.redirect_stdout(io.StringIO()), \
                        contextlib.redirect_stderr(io.StringIO()):
                    states.append(get_fp32_state_dict_from_zero_checkpoint(scratch, tag=tag))
            except (ValueError, FileNotFoundError) as error:
                raise CheckpointError(f"{directory / tag} (TP rank {rank}): {error}") from None
    return states


MOMENTS = ("exp_avg", "exp_avg_sq")
"""The Adam moments ``read_full_state`` reads (torch's state keys, which DeepSpeed keeps)."""


@dataclasses.dataclass
class FullState:
    """A checkpoint as whole fp32 tensors under the ordinary model's names (no TP or ZeRO
    partitioning, no vocabulary padding): the weights and, per ``MOMENTS`` key, Adam's moments of
    each parameter, plus Adam's step count."""

    config: ExperimentConfig
    params: dict[str, torch.Tensor]
    moments: dict[str, dict[str, torch.Tensor]]
    optimizer_step: int


def read_full_tensors(directory: str | Path, tag: str | None = None
                      ) -> tuple[ExperimentConfig, dict[str, torch.Tensor]]:
    """(saved config, every parameter as the whole fp32 tensor without vocabulary padding, under
    the ordinary model's names) from a checkpoint of any TP x PP x ZeRO 0-3 layout.

    Uses megatron-core's process groups of any layout (only names and partition attributes of a
    meta-device model are read); a process without them gets a one-rank layout."""
    state = _read(directory, tag, moments=False)
    return state.config, state.params


def read_full_state(directory: str | Path, tag: str | None = None) -> FullState:
    """``read_full_tensors`` plus the Adam moments and step of the optimizer files, from a
    checkpoint of any TP x DP x ZeRO 0-2 layout without pipeline parallelism (what resuming on
    another layout needs; ``plmscale.training.checkpoint``)."""
    return _read(directory, tag, moments=True)


def _read(directory: str | Path, tag: str | None, moments: bool) -> FullState:
    from megatron.core import parallel_state as ps
    directory = Path(directory)
    tag = checkpoint_tag(directory, tag)
    cfg = saved_config(directory, tag)
    if not ps.model_parallel_is_initialized():
        from plmscale.parallel import init_distributed, init_model_parallel
        init_distributed()
        init_model_parallel(inference_config(cfg))
    tp = cfg.parallel.tensor_model_parallel_size
    vocab = cfg.model.vocab_size
    reference = reference_parameters(cfg)
    if moments and (cfg.parallel.pipeline_model_parallel_size > 1 or cfg.parallel.zero_stage == 3
                    or cfg.model.num_experts):
        raise CheckpointError(
            f"{directory / tag} is a TP{tp} x PP{cfg.parallel.pipeline_model_parallel_size} ZeRO-"
            f"{cfg.parallel.zero_stage} checkpoint{' with experts' if cfg.model.num_experts else ''}"
            f": plmscale moves optimizer state to another layout only from checkpoints without "
            f"pipeline parallelism, ZeRO-3 or experts; resume it at its own layout")
    if cfg.parallel.pipeline_model_parallel_size > 1:
        if cfg.model.num_experts:
            raise CheckpointError(f"{directory / tag}: reading a checkpoint of a mixture-of-experts "
                                  f"model trained with pipeline parallelism is not supported yet; "
                                  f"resume it at pipeline_model_parallel_size=1 for 0 steps, then "
                                  f"read that")
        return FullState(cfg, _read_pipeline(directory, tag, cfg, reference), {}, 0)
    if cfg.parallel.zero_stage == 3:
        states = _zero3_states(directory, tag, tp)
    else:
        states = [_load(directory / tag / f"mp_rank_{r:02d}_model_states.pt") for r in range(tp)]
    modules = [s["module"] for s in states] if cfg.parallel.zero_stage != 3 else states
    experts = _expert_tensors(directory, tag)
    full = {name: experts[name].float() for name in reference if name in experts}
    full.update(_merged({n: p for n, p in reference.items() if n not in full}, modules, vocab,
                        lambda r: directory / tag / f"mp_rank_{r:02d}_model_states.pt", cfg))
    if not moments:
        return FullState(cfg, full, {}, 0)
    per_rank = [_optimizer_state(directory, tag, r, s, reference) for r, s in enumerate(states)]
    steps = {step for _, step in per_rank}
    if len(steps) != 1:
        raise CheckpointError(f"{directory / tag}: the TP ranks' optimizer files disagree on "
                              f"Adam's step ({sorted(steps)}); the checkpoint is damaged")
    merged = {key: _merged(reference, [m[key] for m, _ in per_rank], vocab,
                           lambda r: _optimizer_file(directory, tag, r, 0, cfg), cfg)
              for key in MOMENTS}
    return FullState(cfg, full, merged, steps.pop())


def _merged(reference: dict, states: list[dict], vocab: int, file_of, cfg) -> dict:
    """Each reference parameter's whole tensor, merged from the per-TP-rank ``states``."""
    full = {}
    for name, param in reference.items():
        missing = [r for r, s in enumerate(states) if name not in s]
        if missing:
            raise CheckpointError(f"{file_of(missing[0])} has no tensor {name}: not a "
                                  f"{cfg.model.family} checkpoint of this plmscale version")
        full[name] = _merge(name, [s[name] for s in states], param, vocab)
    return full


def _optimizer_file(directory: Path, tag: str, tp_rank: int, dp_rank: int, cfg) -> Path:
    if cfg.parallel.zero_stage == 0:
        return directory / tag / f"mp_rank_{tp_rank:02d}_model_states.pt"
    return directory / tag / f"zero_pp_rank_{dp_rank}_mp_rank_{tp_rank:02d}_optim_states.pt"


def _optimizer_state(directory: Path, tag: str, tp_rank: int, model_state: dict,
                     reference: dict) -> tuple[dict[str, dict[str, torch.Tensor]], int]:
    """({moment: {name: this TP rank's tensor}}, Adam's step) of one TP rank.

    ZeRO-0: DeepSpeed saves the torch optimizer's state dict with the model (data-parallel rank
    0's file), its parameters numbered in ``parameter_groups`` order. ZeRO-1/2: every
    data-parallel rank saves its flat partition of each parameter group (one torch state entry
    per group) and, per group, where each parameter's piece of the partition starts
    (``param_slice_mappings``: name -> fragment_address); a parameter is its pieces in rank
    order."""
    shapes = {name: t.shape for name, t in model_state["module"].items() if t is not None}
    optimizer = model_state.get("optimizer")
    if optimizer is not None and model_state.get("param_shapes") is None:  # ZeRO-0
        from plmscale.training.engine import no_decay
        names = [n for n, p in reference.items() if not no_decay(n, p)] + \
                [n for n, p in reference.items() if no_decay(n, p)]
        numbered = [i for group in optimizer["param_groups"] for i in group["params"]]
        path = directory / tag / f"mp_rank_{tp_rank:02d}_model_states.pt"
        if len(numbered) != len(names) or not optimizer["state"]:
            raise CheckpointError(f"{path}: its optimizer state has {len(numbered)} parameters "
                                  f"(model: {len(names)}) or none trained; not a plmscale AdamW state")
        # A parameter that never had a gradient has no state yet: its moments are zero.
        state = {key: {name: optimizer["state"][i][key] if i in optimizer["state"]
                       else torch.zeros(shapes[name]) for name, i in zip(names, numbered)}
                 for key in MOMENTS}
        return state, max(int(entry["step"]) for entry in optimizer["state"].values())
    files = sorted((directory / tag).glob(f"zero_pp_rank_*_mp_rank_{tp_rank:02d}_optim_states.pt"),
                   key=lambda f: int(f.name.split("_")[3]))
    if not files:
        raise CheckpointError(f"{directory / tag}/zero_pp_rank_0_mp_rank_{tp_rank:02d}_optim_states"
                              f".pt is missing: the checkpoint is incomplete")
    pieces: dict[str, dict[str, list]] = {key: {} for key in MOMENTS}
    steps = set()
    for f in files:
        saved = _load(f)["optimizer_state_dict"]
        base = saved["base_optimizer_state"]
        for group, mapping in enumerate(saved["param_slice_mappings"]):
            flat = base["state"][group]
            steps.add(int(flat["step"]))
            for name, address in mapping.items():
                for key in MOMENTS:
                    pieces[key].setdefault(name, []).append(
                        flat[key].narrow(0, address.start, address.numel))
    if len(steps) != 1:
        raise CheckpointError(f"{directory / tag}: the optimizer files of TP rank {tp_rank} "
                              f"disagree on Adam's step ({sorted(steps)}); the checkpoint is damaged")
    state = {key: {name: torch.cat(parts).view(shapes[name]) for name, parts in by_name.items()}
             for key, by_name in pieces.items()}
    return state, steps.pop()


def _read_pipeline(directory: Path, tag: str, cfg, reference: dict) -> dict[str, torch.Tensor]:
    tp, vocab = cfg.parallel.tensor_model_parallel_size, cfg.model.vocab_size
    recorded = _recorded_pipeline_names(directory, tag)
    files = {}
    for path in (directory / tag).iterdir():
        match = _LAYER_FILE.match(path.name)
        if match:
            files.setdefault(int(match[1]), {})[int(match[2])] = path
    full = {}
    for piece, keys in sorted(recorded.items()):
        if not keys:
            continue  # a piece without parameters
        for r in range(tp):
            if r not in files.get(piece, {}):
                raise CheckpointError(f"{directory / tag / _layer_file(piece, r)} is missing: the "
                                      f"checkpoint is incomplete")
        states = [_load(files[piece][r]) for r in range(tp)]
        for local, name in keys.items():
            if name in full or name not in reference:
                continue  # a tied copy (the first piece's wins: DeepSpeed keeps them equal)
            full[name] = _merge(name, [s[local] for s in states], reference[name], vocab)
    absent = sorted(set(reference) - set(full))
    if absent:
        raise CheckpointError(f"{directory / tag} holds no {absent[0]} ({len(absent)} tensors "
                              f"absent): the checkpoint is incomplete")
    return full


_EXPERT_FILE = "layer_*_expert_*_mp_rank_*_model_states.pt"


def _expert_tensors(directory: Path, tag: str) -> dict[str, torch.Tensor]:
    """The routed experts of an MoE checkpoint, under the ordinary model's names with global expert
    indices: DeepSpeed saves them outside the module's state, one file per MoE layer and global
    expert (``layer_{L}_expert_{E}_mp_rank_{tp}_model_states.pt``, keys already global). Experts are
    not split over TP ranks: whichever rank's file comes first holds the tensor."""
    experts = {}
    for path in sorted((directory / tag).glob(_EXPERT_FILE)):
        for name, tensor in _load(path).items():
            experts.setdefault(name, tensor)
    return experts


def _layer_file(piece: int, tp_rank: int) -> str:
    return f"layer_{piece:02d}-model_{tp_rank:02d}-model_states.pt"


def load_full_tensors(model: torch.nn.Module, full: dict[str, torch.Tensor], vocab_size: int,
                      canonical_name=lambda name: name) -> None:
    """Copy full tensors into ``model`` built for the current process groups: vocabulary rows are
    padded to the model's size and partitioned tensors cut to this rank's slice. Every parameter
    must be present (``canonical_name`` maps a pipeline module's names to the ordinary ones)."""
    with torch.no_grad():
        for local, param in model.named_parameters():
            name = canonical_name(local)
            if name not in full:
                raise KeyError(f"no tensor {name} for parameter {local}")
            param.copy_(local_slice(full[name], param, vocab_size).to(param.dtype))


def local_slice(tensor: torch.Tensor, param: torch.nn.Parameter, vocab_size: int) -> torch.Tensor:
    """This rank's part of the whole (unpadded) ``tensor`` of ``param``, a parameter built for the
    current process groups: vocabulary rows padded with zeros to the model's size, then the
    tensor-parallel slice."""
    from megatron.core import parallel_state as ps
    size, rank = ps.get_tensor_model_parallel_world_size(), ps.get_tensor_model_parallel_rank()
    partitioned = getattr(param, "tensor_model_parallel", False)
    if getattr(param, "vocab_padded", False):
        rows = param.shape[0] * (size if partitioned and param.partition_dim == 0 else 1)
        tensor = torch.cat([tensor[:vocab_size],
                            tensor.new_zeros(rows - vocab_size, *tensor.shape[1:])])
    if partitioned and size > 1:
        tensor = tensor.chunk(size, dim=param.partition_dim)[rank]
    return tensor
