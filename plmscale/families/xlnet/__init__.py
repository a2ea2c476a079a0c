"""The XLNet family (permutation language modelling on two-stream relative attention)."""

from plmscale.export.xlnet import hf_config, to_hf_state_dict
from plmscale.families import Family
from plmscale.families.xlnet.model import XLNetLMHeadModel, xlnet_pieces
from plmscale.families.xlnet.samples import XLNetSamples

FAMILY = Family(
    name="xlnet",
    build=lambda cfg: XLNetLMHeadModel(cfg.model, cfg.train.precision),
    pieces=lambda cfg: xlnet_pieces(cfg.model, cfg.train.precision),
    samples=lambda corpus, cfg: XLNetSamples(corpus, corpus.tokens, cfg.data, cfg.objective,
                                             cfg.train.seed),
    hf_config=hf_config,
    hf_model_class="XLNetLMHeadModel",
    to_hf_state_dict=to_hf_state_dict,
)
