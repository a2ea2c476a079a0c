"""The GLM family (autoregressive blank infilling with 2-D positions)."""

from plmscale.export.generation import GenerationSpec
from plmscale.export.hf import HFExport, HFPart
from plmscale.families import NO_NSP, Family, FamilyFields
from plmscale.families.glm.hf import (BLOCK_POSITION_FILE, block_position_tensors, hf_config,
                                      to_hf_state_dict)
from plmscale.families.glm.model import GLMForBlankInfilling, glm_pieces
from plmscale.families.glm.presets import PRESETS
from plmscale.families.glm.samples import GLMSamples
from plmscale.objectives.schedule import global_batch_size

FAMILY = Family(
    name="glm",
    masks_tokens=True,
    build=lambda cfg: GLMForBlankInfilling(cfg.model, cfg.train.precision),
    pieces=lambda cfg: glm_pieces(cfg.model, cfg.train.precision),
    samples=lambda corpus, cfg: GLMSamples(corpus, corpus.tokens, cfg.data, cfg.objective,
                                           cfg.train.seed, global_batch_size(cfg)),
    hf_config=hf_config,
    to_hf_state_dict=to_hf_state_dict,
    # mlm_probability: the share of the text blanked; poisson_lambda: its span lengths.
    fields=FamilyFields(objective=("mlm_probability", "poisson_lambda", "objective_weights"),
                        objective_defaults=NO_NSP),
    presets=PRESETS,
    # GPT-2 with max_seq + 1 positions; the block-position table in a file of its own (hf.py).
    hf_export=HFExport(
        (HFPart("GPT2LMHeadModel", extra_files={BLOCK_POSITION_FILE: block_position_tensors}),),
        "bos", lambda tokens, cfg: {"pad_token_id": tokens.pad, "bos_token_id": tokens.cls,
                                    "eos_token_id": tokens.eos},
        tokenizer_tokens={"bos_token": "[CLS]"}),  # Part A starts with [CLS]
    # Continues a document as the [gMASK] objective: Part A [CLS] text [gMASK], then [START].
    generation=GenerationSpec(prefix=("cls",), suffix=("gmask", "start"), continues_prompt=True),
)
