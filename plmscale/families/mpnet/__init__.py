"""The MPNet family (masked and permuted pretraining)."""

from plmscale.export.mpnet import hf_config, to_hf_state_dict
from plmscale.families import Family
from plmscale.families.mpnet.model import MPNetForMaskedLM, mpnet_pieces
from plmscale.families.mpnet.samples import MPNetSamples

FAMILY = Family(
    name="mpnet",
    build=lambda cfg: MPNetForMaskedLM(cfg.model, cfg.train.precision),
    pieces=lambda cfg: mpnet_pieces(cfg.model, cfg.train.precision),
    samples=lambda corpus, cfg: MPNetSamples(corpus, corpus.tokens, cfg.data, cfg.objective,
                                             cfg.train.seed),
    hf_config=hf_config,
    hf_model_class="MPNetForMaskedLM",
    to_hf_state_dict=to_hf_state_dict,
)
