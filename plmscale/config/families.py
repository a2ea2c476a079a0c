"""Which optional config fields each family reads, and its own objective defaults: one declaration
per family (``FAMILY_FIELDS``), so validation can refuse, before anything is built, a field the
family would silently ignore or an objective it cannot honour.

Fields every family reads (sizes, dropout, vocabulary, ...) are not listed: only the options in
``OPTIONAL_MODEL_FIELDS`` and ``OPTIONAL_OBJECTIVE_FIELDS`` are. A family that does not read an
option must leave it at its default: the schema's, or the family's ``objective_defaults``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from plmscale.config.schema import ModelConfig, ObjectiveConfig

# Mixture of experts: every family whose layers build their FFN through
# plmscale.models.moe.build_feed_forward with their layer number.
MOE_FIELDS = ("num_experts", "moe_layer_frequency", "moe_top_k", "moe_ffn_hidden_size",
              "moe_shared_experts", "moe_shared_expert_gate", "expert_model_parallel_size",
              "moe_capacity_factor", "moe_dropless", "moe_router_jitter", "moe_aux_loss_coeff",
              "moe_z_loss_coeff")
OPTIONAL_MODEL_FIELDS = (
    "embedding_size", "num_decoder_layers", "normalization", "activation", "add_bias_linear",
    "position_embedding_type", "position_offset", "relative_attention_num_buckets",
    "relative_attention_max_distance", "share_layer_parameters", "tie_word_embeddings",
    "scale_tied_logits", "generator_hidden_size", "generator_ffn_hidden_size",
    "generator_num_attention_heads", "generator_num_layers", "init_method") + MOE_FIELDS
OPTIONAL_OBJECTIVE_FIELDS = tuple(f.name for f in dataclasses.fields(ObjectiveConfig))

# Masked-LM corruption as plmscale.data.roberta_samples.mask_for_objective / BertSamples read it.
_MLM = ("mlm_probability", "mask_token_fraction", "random_token_fraction", "masking", "max_ngram",
        "span_geometric_p", "span_max_length")


@dataclass(frozen=True)
class FamilyFields:
    """The optional fields one family reads."""

    model: tuple[str, ...] = ()
    objective: tuple[str, ...] = ()
    objective_defaults: dict = field(default_factory=dict)
    """Objective values this family starts from, before presets, YAML and overrides."""
    networks: dict = field(default_factory=dict)
    """Where a family trains more than one network: network name -> the parameter-name prefixes
    of the model that make it up, as HF's class of that network counts it (``--dry-run``)."""


_NO_NSP = {"next_sentence_prediction": False}

FAMILY_FIELDS: dict[str, FamilyFields] = {
    "bert": FamilyFields(model=MOE_FIELDS, objective=_MLM + ("next_sentence_prediction", "masking_schedule",
                                           "masking_schedule_mode", "span_boundary_objective")),
    "roberta": FamilyFields(model=("position_offset",) + MOE_FIELDS, objective=_MLM, objective_defaults=_NO_NSP),
    "albert": FamilyFields(model=("embedding_size", "share_layer_parameters"),
                           objective=_MLM + ("sentence_order_prediction",),
                           objective_defaults=_NO_NSP),
    "electra": FamilyFields(model=("embedding_size", "generator_hidden_size",
                                   "generator_ffn_hidden_size", "generator_num_attention_heads",
                                   "generator_num_layers"),
                            objective=_MLM + ("rtd_weight",), objective_defaults=_NO_NSP,
                            # Both share the embeddings (HF: ElectraForPreTraining / ForMaskedLM).
                            networks={"discriminator": ("embeddings.", "discriminator.",
                                                        "discriminator_head."),
                                      "generator": ("embeddings.", "generator.",
                                                    "generator_head.")}),
    "distilbert": FamilyFields(objective=_MLM + (
        "distillation_teacher_path", "distillation_init_from_teacher", "distillation_temperature",
        "distillation_alpha_ce", "distillation_alpha_mlm", "distillation_alpha_cos"),
        objective_defaults=_NO_NSP,
        # The teacher is outside the module tree: the model is the student (DistilBertForMaskedLM).
        networks={"student": ("",)}),
    "t5": FamilyFields(model=("num_decoder_layers", "normalization", "activation", "add_bias_linear",
                              "position_embedding_type", "relative_attention_num_buckets",
                              "relative_attention_max_distance", "tie_word_embeddings",
                              "scale_tied_logits", "init_method") + MOE_FIELDS,
                       objective=("noise_density", "mean_noise_span_length"),
                       objective_defaults=_NO_NSP),
    "bart": FamilyFields(model=("num_decoder_layers", "position_offset"),
                         objective=("infilling_ratio", "poisson_lambda", "permute_sentences",
                                    "rotate_document", "token_masking_ratio", "token_deletion_ratio"),
                         objective_defaults=_NO_NSP),
    "gpt": FamilyFields(model=MOE_FIELDS, objective=("reset_attention_at_document_boundary",),
                        objective_defaults=_NO_NSP),
}


def family_fields(family: str) -> FamilyFields:
    if family not in FAMILY_FIELDS:
        raise ValueError(f"unknown model.family {family!r}; known: {', '.join(sorted(FAMILY_FIELDS))}")
    return FAMILY_FIELDS[family]


def readers(section: str, name: str) -> list[str]:
    """The families that read optional field ``section.name``."""
    return sorted(f for f, d in FAMILY_FIELDS.items() if name in getattr(d, section))


def ignored_fields(model: ModelConfig, objective: ObjectiveConfig) -> list[tuple[str, str]]:
    """(section, field) of every optional field set away from its default that ``model.family``
    does not read."""
    declared = family_fields(model.family)
    defaults = {"model": ModelConfig(),
                "objective": dataclasses.replace(ObjectiveConfig(), **declared.objective_defaults)}
    found = []
    for section, values, names in (("model", model, OPTIONAL_MODEL_FIELDS),
                                   ("objective", objective, OPTIONAL_OBJECTIVE_FIELDS)):
        for name in names:
            if name in getattr(declared, section):
                continue
            if getattr(values, name) != getattr(defaults[section], name):
                found.append((section, name))
    return found
