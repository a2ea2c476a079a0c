"""The GPT family (GPT-2 architecture, causal LM)."""

from plmscale.export.generation import GenerationSpec
from plmscale.export.hf import HFExport, HFPart
from plmscale.families import MOE_FIELDS, NO_NSP, Family, FamilyFields
from plmscale.families.gpt.hf import from_hf_config, hf_config, to_hf_state_dict
from plmscale.families.gpt.model import GPTForCausalLM, gpt_pieces
from plmscale.families.gpt.presets import PRESETS
from plmscale.families.gpt.samples import GPTSamples

FAMILY = Family(
    name="gpt",
    build=lambda cfg: GPTForCausalLM(cfg.model, cfg.train.precision),
    pieces=lambda cfg: gpt_pieces(cfg.model, cfg.train.precision),
    samples=lambda corpus, cfg: GPTSamples(corpus, corpus.tokens, cfg.data, cfg.objective,
                                           cfg.train.seed),
    hf_config=hf_config,
    to_hf_state_dict=to_hf_state_dict,
    from_hf_config=from_hf_config,
    fields=FamilyFields(model=MOE_FIELDS, objective=("reset_attention_at_document_boundary",),
                        objective_defaults=NO_NSP),
    presets=PRESETS,
    hf_export=HFExport((HFPart("GPT2LMHeadModel", task="text-generation"),), "bos",
                       # The packed stream puts </s> before every document: bos and eos, as GPT-2.
                       lambda tokens, cfg: {"pad_token_id": tokens.pad, "bos_token_id": tokens.eos,
                                            "eos_token_id": tokens.eos},
                       tokenizer_tokens={"bos_token": "</s>"}),
    generation=GenerationSpec(prefix=("eos",), continues_prompt=True),  # continues a document
)
