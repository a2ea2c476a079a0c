"""The BART family (denoising: span infilling, sentence permutation, ...)."""

from plmscale.export.bart import from_hf_config, hf_config, to_hf_state_dict
from plmscale.families import Family
from plmscale.families.bart.model import BartForConditionalGeneration, bart_pieces
from plmscale.families.bart.samples import BartSamples

FAMILY = Family(
    name="bart",
    build=lambda cfg: BartForConditionalGeneration(cfg.model, cfg.train.precision),
    pieces=lambda cfg: bart_pieces(cfg.model, cfg.train.precision),
    samples=lambda corpus, cfg: BartSamples(corpus, corpus.tokens, cfg.data, cfg.objective,
                                            cfg.train.seed),
    hf_config=hf_config,
    hf_model_class="BartForConditionalGeneration",
    to_hf_state_dict=to_hf_state_dict,
    from_hf_config=from_hf_config,
)
