"""The T5 family (span corruption; v1.0 and v1.1 layouts)."""

from plmscale.export.t5 import from_hf_config, hf_config, to_hf_state_dict
from plmscale.families import Family
from plmscale.families.t5.model import T5ForConditionalGeneration, t5_initialize, t5_pieces
from plmscale.families.t5.samples import T5Samples

FAMILY = Family(
    name="t5",
    build=lambda cfg: T5ForConditionalGeneration(cfg.model, cfg.train.precision),
    pieces=lambda cfg: t5_pieces(cfg.model, cfg.train.precision),
    samples=lambda corpus, cfg: T5Samples(corpus, cfg.data, cfg.objective, cfg.train.seed),
    hf_config=hf_config,
    hf_model_class="T5ForConditionalGeneration",
    to_hf_state_dict=to_hf_state_dict,
    from_hf_config=from_hf_config,
    initialize=t5_initialize,
)
