"""The GPT family (GPT-2 architecture, causal LM)."""

from plmscale.export.gpt2 import from_hf_config, hf_config, to_hf_state_dict
from plmscale.families import Family
from plmscale.families.gpt.model import GPTForCausalLM, gpt_pieces
from plmscale.families.gpt.samples import GPTSamples

FAMILY = Family(
    name="gpt",
    build=lambda cfg: GPTForCausalLM(cfg.model, cfg.train.precision),
    pieces=lambda cfg: gpt_pieces(cfg.model, cfg.train.precision),
    samples=lambda corpus, cfg: GPTSamples(corpus, corpus.tokens, cfg.data, cfg.objective,
                                           cfg.train.seed),
    hf_config=hf_config,
    hf_model_class="GPT2LMHeadModel",
    to_hf_state_dict=to_hf_state_dict,
    from_hf_config=from_hf_config,
)
