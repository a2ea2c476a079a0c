"""Hugging Face model folder -> plmscale: the model config and full tensors (``read_hf_folder``,
one process), a checkpoint at the current TP x PP layout (``import_checkpoint``, collective), and
the weights of ``train.init_from`` (``initial_weights``).

The name maps are the export's (``plmscale/export/<family>.py``) run backwards by
``plmscale.export.inverse``; nothing per family is written twice.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from plmscale.config import config_from_dict
from plmscale.config.schema import ExperimentConfig, ModelConfig
from plmscale.export.inverse import (HFImportError, check_config, from_hf_state_dict, full_shapes,
                                     unmapped_tensors)

HF_MODEL_TYPES = {"bert": "bert", "roberta": "roberta", "t5": "t5", "bart": "bart", "gpt2": "gpt"}
"""HF ``config.model_type`` -> plmscale family (the families with ``from_hf_config``)."""

NOT_ARCHITECTURE = {"preset", "hidden_dropout", "attention_dropout", "use_fused_kernels", "init_std",
                    "init_method", "make_vocab_size_divisible_by"}
"""Model fields a run may set differently from the checkpoint it starts from."""


def _hf_family(folder: Path):
    from transformers import AutoConfig
    if not (folder / "config.json").is_file():
        raise HFImportError(f"{folder} has no config.json: give a Hugging Face model folder "
                            f"(save_pretrained's output)")
    hf = AutoConfig.from_pretrained(folder, local_files_only=True)
    if hf.model_type not in HF_MODEL_TYPES:
        raise HFImportError(f"{folder}: HF model_type {hf.model_type!r} cannot be imported; "
                            f"importable: {', '.join(sorted(HF_MODEL_TYPES))}")
    return hf, HF_MODEL_TYPES[hf.model_type]


def imported_config(folder: str | Path, base: ExperimentConfig) -> ExperimentConfig:
    """``base`` (a training config of the same family) with the HF folder's architecture; raises
    ``HFImportError`` naming an HF config field plmscale cannot reproduce."""
    from plmscale.families import get_family
    folder = Path(folder)
    hf, family_name = _hf_family(folder)
    if base.model.family != family_name:
        raise HFImportError(f"{folder} holds a {family_name} model but the config is for "
                            f"model.family {base.model.family}; give a {family_name} config")
    family = get_family(family_name)
    values = dataclasses.asdict(base)
    values["model"].update(family.from_hf_config(hf))
    values["train"]["init_from"] = None
    cfg = config_from_dict(values, origin=str(folder / "config.json"))
    check_config(family.hf_config(cfg.model), hf)
    check_tokenizer(folder, cfg)
    return cfg


def check_tokenizer(folder: Path, cfg: ExperimentConfig) -> None:
    """A folder's ``tokenizer.json`` is the model's: the run must train on shards encoded with it
    (its ids index the imported embeddings), or with the folder's ``tokenizer.model`` where it has
    one (plmscale's Mixtral export rebuilds its sentencepiece model as ``tokenizer.json``). Shards
    of another tokenizer are refused by name; a folder without ``tokenizer.json`` (or a run without
    shards yet) is not checked here."""
    import json

    from plmscale.data.tokenizer import same_encoding
    model_tokenizer = folder / "tokenizer.json"
    manifest = Path(cfg.data.path) / "manifest.json"
    if not model_tokenizer.is_file() or not manifest.is_file():
        return
    shards_tokenizer = Path(cfg.data.path) / json.loads(manifest.read_text())["tokenizer"]["file"]
    sentencepiece = folder / "tokenizer.model"
    if not same_encoding(model_tokenizer, shards_tokenizer) and not (
            sentencepiece.is_file() and same_encoding(sentencepiece, shards_tokenizer)):
        raise HFImportError(
            f"{model_tokenizer} is the model's tokenizer, but data.path {cfg.data.path} is encoded "
            f"with another one ({shards_tokenizer}), whose ids would index other embeddings; "
            f"encode the corpus with `python -m data_prep encode --tokenizer {model_tokenizer} ...` "
            f"and point data.path at it")


def read_hf_folder(folder: str | Path, base: ExperimentConfig
                   ) -> tuple[ExperimentConfig, dict[str, torch.Tensor]]:
    """(config, full fp32 tensors under the ordinary model's names) of a local HF model folder
    (``from_pretrained``, no network). Needs megatron-core's process groups (any layout)."""
    import transformers

    from plmscale.export.shards import reference_parameters
    from plmscale.families import get_family
    cfg = imported_config(folder, base)
    family = get_family(cfg.model.family)
    model_class = family.hf_model_class
    hf_model = getattr(transformers, model_class).from_pretrained(folder, local_files_only=True)
    state = hf_model.state_dict()
    shapes = full_shapes(reference_parameters(cfg), cfg.model.vocab_size)
    full = from_hf_state_dict(family.to_hf_state_dict, state, shapes, cfg.model)
    mapped = set(family.to_hf_state_dict({n: torch.empty(s, device="meta")
                                          for n, s in shapes.items()}, cfg.model))
    extra = unmapped_tensors(hf_model, mapped)
    if extra:
        raise HFImportError(f"{folder}: HF tensor {extra[0]} ({len(extra)} in all) has no place in "
                            f"plmscale's {cfg.model.family}")
    return cfg, full


def load_into(model: torch.nn.Module, full: dict[str, torch.Tensor], cfg: ExperimentConfig) -> None:
    """Copy full tensors into the ordinary model or its pipeline stages at the current layout."""
    from plmscale.export.shards import load_full_tensors
    load_full_tensors(model, full, cfg.model.vocab_size,
                      getattr(model, "canonical_name", lambda name: name))


def check_same_model(cfg: ModelConfig, saved: ModelConfig, where: str) -> None:
    """``train.init_from`` must hold this run's architecture: name every differing field."""
    differ = [f"model.{f.name}: {getattr(saved, f.name)!r} there, {getattr(cfg, f.name)!r} here"
              for f in dataclasses.fields(ModelConfig)
              if f.name not in NOT_ARCHITECTURE and getattr(saved, f.name) != getattr(cfg, f.name)]
    if differ:
        raise ValueError(f"train.init_from {where} holds another architecture ({'; '.join(differ)});"
                         f" set these fields as the checkpoint has them (plmscale import writes them"
                         f" to its train.yaml)")


def initial_weights(cfg: ExperimentConfig) -> dict[str, torch.Tensor]:
    """Full tensors of ``train.init_from`` (any layout), checked against this run's model."""
    from plmscale.export.shards import read_full_tensors
    saved, full = read_full_tensors(cfg.train.init_from)
    check_same_model(cfg.model, saved.model, cfg.train.init_from)
    return full


def import_checkpoint(folder: str | Path, output: str | Path, base: ExperimentConfig
                      ) -> ExperimentConfig:
    """Collective over the ranks of ``base``'s layout (process groups set up): write the HF model
    as checkpoint ``output/step0`` (fresh optimizer state) at that layout; returns its config."""
    from plmscale.training import checkpoint
    from plmscale.training.engine import build_engine, build_initialised_model
    cfg, full = read_hf_folder(folder, base)
    model = build_initialised_model(cfg, full)
    engine, _ = build_engine(cfg, model)
    checkpoint.save(engine, str(output), 0, 0, cfg, {"imported_from": str(Path(folder).resolve())})
    return cfg
