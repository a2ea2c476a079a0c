"""Model families: one folder each (``plmscale/families/<name>/``) holding its model (as ordered
pieces, ``model.py``), sample builder (``samples.py``), named sizes (``presets.py``), two-way HF
mapping (``hf.py``) and the ``FAMILY`` spec that ties them together (``__init__.py``): the config
fields it reads, its objective defaults, how it exports and generates. ``get_family`` /
``build_model`` pick one by name; the config, export and generation layers read everything per
family from its ``FAMILY``.

A new family is its folder plus one line in ``FAMILY_MODULES``.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Optional

import torch

from plmscale.config.schema import ExperimentConfig, ModelConfig

if TYPE_CHECKING:  # the export layer imports this registry, not the other way round
    from plmscale.export.generation import GenerationSpec
    from plmscale.export.hf import HFExport

FAMILY_MODULES = {
    "bert": "plmscale.families.bert",
    "roberta": "plmscale.families.roberta",
    "albert": "plmscale.families.albert",
    "electra": "plmscale.families.electra",
    "distilbert": "plmscale.families.distilbert",
    "t5": "plmscale.families.t5",
    "bart": "plmscale.families.bart",
    "gpt": "plmscale.families.gpt",
    "ernie": "plmscale.families.ernie",
    "elmo": "plmscale.families.elmo",
    "llama": "plmscale.families.llama",
    "mixtral": "plmscale.families.mixtral",
    "qwen2_moe": "plmscale.families.qwen2_moe",
    "switch": "plmscale.families.switch",
    "unilm": "plmscale.families.unilm",
    "glm": "plmscale.families.glm",
    "xlnet": "plmscale.families.xlnet",
    "mpnet": "plmscale.families.mpnet",
}


# Masked-LM corruption, as the masked-LM sample builders read it (plmscale.objectives.masking).
# Mixture of experts (plmscale.models.moe): read by every family whose layers build their FFN through
# plmscale.models.common.mlp.build_feed_forward with their layer number.
MOE_FIELDS = ("num_experts", "moe_layer_frequency", "moe_top_k", "moe_ffn_hidden_size",
              "moe_shared_experts", "moe_shared_expert_gate", "expert_model_parallel_size",
              "moe_capacity_factor", "moe_dropless", "moe_router_jitter", "moe_aux_loss_coeff",
              "moe_z_loss_coeff", "moe_expert_bias_rate")
MASKED_LM_FIELDS = ("mlm_probability", "mask_token_fraction", "random_token_fraction", "masking",
                    "max_ngram", "span_geometric_p", "span_max_length")
# The schema's objective defaults are BERT's; families without next-sentence prediction say so.
NO_NSP = {"next_sentence_prediction": False}


@dataclass(frozen=True)
class FamilyFields:
    """The optional config fields one family reads (validation refuses the others when set)."""

    model: tuple[str, ...] = ()
    objective: tuple[str, ...] = ()
    objective_defaults: dict = field(default_factory=dict)
    """Objective values this family starts from, before presets, YAML and overrides."""
    model_defaults: dict = field(default_factory=dict)
    """Model values this family starts from (its architecture's switches), as objective_defaults."""
    networks: dict = field(default_factory=dict)
    """Where a family trains more than one network: network name -> the parameter-name prefixes
    of the model that make it up, as HF's class of that network counts it (``--dry-run``)."""


@dataclass(frozen=True)
class Family:
    name: str
    build: Callable[[ExperimentConfig], torch.nn.Module]
    """The pretraining model (a ``PiecewiseModel``) for the current process groups;
    ``forward(batch: dict) -> dict`` with "loss" and named metrics (``*_loss``, ``*_accuracy``)."""
    pieces: Callable[[ExperimentConfig], list]
    """The same model's ordered pieces (``plmscale.families.pieces``); pipeline stages derive from
    them (``plmscale.parallel.pipeline.PiecewisePipeline``)."""
    samples: Callable[[object, ExperimentConfig], Callable[[int], dict]]
    """(plmscale.data.Corpus, config) -> sample(global_index) -> dict of equal-shape numpy arrays."""
    hf_config: Optional[Callable[[ModelConfig], object]] = None
    """The ``transformers`` config of the same architecture (for counts and export)."""
    to_hf_state_dict: Optional[Callable[[dict, ModelConfig], dict]] = None
    """Full (TP-gathered, unpadded) plmscale tensors -> HF state dict (``plmscale import`` runs it
    backwards: ``plmscale.export.inverse``)."""
    from_hf_config: Optional[Callable[[object], dict]] = None
    """HF config -> this family's ModelConfig fields (the reverse of ``hf_config``); None = the
    family cannot be imported from Hugging Face."""
    fields: FamilyFields = FamilyFields()
    """The optional config fields this family reads, and its objective defaults."""
    presets: dict[str, dict] = field(default_factory=dict)
    """Named sizes: preset name -> model fields (``family`` included), with their sources."""
    hf_export: Optional["HFExport"] = None
    """How it becomes Hugging Face files (``plmscale.export.hf.HFExport``); None = no HF class."""
    generation: Optional["GenerationSpec"] = None
    """Prompt layout and output reading (``plmscale.export.generation.GenerationSpec``); None =
    the family does not generate text."""
    masks_tokens: bool = False
    """The objective writes the tokenizer's mask token into inputs: a tokenizer without one (GPT-2's
    ``tokenizer.json``) is refused by name (``plmscale.data.tokenizer.require_mask``)."""
    initialize: Optional[Callable[[torch.nn.Module, ExperimentConfig], None]] = None
    """(model or its pipeline, config): runs after the layout-independent initialisation and before
    the engine exists (so optimizer master copies see it), e.g. DistilBERT copying its teacher's
    layers; None = nothing."""

    @property
    def hf_model_class(self) -> Optional[str]:
        """Name of the ``transformers`` class that is this family's reference (its first export)."""
        return self.hf_export.parts[0].model_class if self.hf_export else None


def get_family(name: str) -> Family:
    """The ``Family`` registered under ``name``."""
    if name not in FAMILY_MODULES:
        raise ValueError(f"unknown model.family {name!r}; known: {', '.join(sorted(FAMILY_MODULES))}")
    return importlib.import_module(FAMILY_MODULES[name]).FAMILY


@functools.cache
def all_families() -> dict[str, Family]:
    """Every registered family by name (imports each family's package once)."""
    return {name: get_family(name) for name in FAMILY_MODULES}


def build_model(cfg: ExperimentConfig) -> torch.nn.Module:
    """Construct (uninitialised) the family's pretraining model for the current process groups."""
    return get_family(cfg.model.family).build(cfg)


def count_parameters(model: torch.nn.Module, cfg: ModelConfig,
                     prefixes: tuple[str, ...] | None = None, active: bool = False) -> int:
    """Parameters of the unpartitioned, unpadded model (what HF reports for the same config),
    computed from this rank's slices: partitioned tensors count ``tp`` times, and the rows that TP
    padding added to vocabulary-sized tensors (marked ``vocab_padded``) are left out.
    ``prefixes``: count only the parameters whose names start with one of them (one network).
    Routed experts count ``num_experts`` times one expert whichever expert-parallel rank holds
    them; ``active``: only the ``moe_top_k`` experts a token runs (the active parameters per token)."""
    from megatron.core import parallel_state as ps

    from plmscale.models.common.megatron import padded_vocab_size
    tp = ps.get_tensor_model_parallel_world_size()
    padding = padded_vocab_size(cfg, tp) - cfg.vocab_size
    total = 0
    for name, p in model.named_parameters():
        if prefixes is not None and not name.startswith(prefixes):
            continue
        numel = p.numel() * (tp if getattr(p, "tensor_model_parallel", False) else 1)
        if getattr(p, "vocab_padded", False):
            numel -= padding * (p.numel() // p.shape[0])
        if getattr(p, "allreduce", True) is False:  # one of this rank's routed experts
            numel = numel * (cfg.moe_top_k if active else cfg.num_experts) // p.num_local_experts
        total += numel
    return total
