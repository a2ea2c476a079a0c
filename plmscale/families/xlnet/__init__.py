"""The XLNet family (permutation language modelling on two-stream relative attention)."""

from plmscale.export.generation import GenerationSpec
from plmscale.export.hf import HFExport, HFPart, encoder_token_ids
from plmscale.families import NO_NSP, Family, FamilyFields
from plmscale.families.xlnet.hf import hf_config, to_hf_state_dict
from plmscale.families.xlnet.model import XLNetLMHeadModel, xlnet_pieces
from plmscale.families.xlnet.presets import PRESETS
from plmscale.families.xlnet.samples import XLNetSamples

FAMILY = Family(
    name="xlnet",
    build=lambda cfg: XLNetLMHeadModel(cfg.model, cfg.train.precision),
    pieces=lambda cfg: xlnet_pieces(cfg.model, cfg.train.precision),
    samples=lambda corpus, cfg: XLNetSamples(corpus, corpus.tokens, cfg.data, cfg.objective,
                                             cfg.train.seed, cfg.model.mem_len),
    hf_config=hf_config,
    to_hf_state_dict=to_hf_state_dict,
    fields=FamilyFields(model=("mem_len",),
                        objective=("permutation_mask_alpha", "permutation_max_span",
                                   "memory_segments"),
                        objective_defaults=NO_NSP),
    presets=PRESETS,
    # XLNet's samples end "A [SEP] B [SEP] [CLS]": no pattern of the tokenizer backend lays that
    # out, so the exported tokenizer adds no special tokens (callers append [SEP] [CLS]).
    hf_export=HFExport((HFPart("XLNetLMHeadModel"),), "none", encoder_token_ids),
    # A prompt is plain text; each step appends the next position as a placeholder predicted
    # last in the factorisation order (XLNetLMHeadModel.greedy_generate, as HF's generate).
    generation=GenerationSpec(continues_prompt=True),
)
