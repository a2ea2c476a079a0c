"""The BART family (denoising: span infilling, sentence permutation, ...)."""

from plmscale.export.generation import GenerationSpec
from plmscale.export.hf import HFExport, HFPart
from plmscale.families import NO_NSP, Family, FamilyFields
from plmscale.families.bart.hf import from_hf_config, hf_config, to_hf_state_dict, token_ids
from plmscale.families.bart.model import BartForConditionalGeneration, bart_pieces
from plmscale.families.bart.presets import PRESETS
from plmscale.families.bart.samples import BartSamples

FAMILY = Family(
    name="bart",
    masks_tokens=True,
    build=lambda cfg: BartForConditionalGeneration(cfg.model, cfg.train.precision),
    pieces=lambda cfg: bart_pieces(cfg.model, cfg.train.precision),
    samples=lambda corpus, cfg: BartSamples(corpus, corpus.tokens, cfg.data, cfg.objective,
                                            cfg.train.seed),
    hf_config=hf_config,
    to_hf_state_dict=to_hf_state_dict,
    from_hf_config=from_hf_config,
    fields=FamilyFields(
        model=("num_decoder_layers", "position_offset"),
        objective=("infilling_ratio", "poisson_lambda", "permute_sentences", "rotate_document",
                   "token_masking_ratio", "token_deletion_ratio"),
        objective_defaults=NO_NSP),
    presets=PRESETS,
    hf_export=HFExport((HFPart("BartForConditionalGeneration", task="text2text-generation"),),
                       "bos_eos", token_ids),
    generation=GenerationSpec(prefix=("bos",), suffix=("eos",)),  # denoising inputs: <s> text </s>
)
