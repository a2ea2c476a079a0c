"""The ELECTRA family (generator + discriminator, replaced-token detection)."""

from plmscale.export.electra import hf_config, to_hf_state_dict
from plmscale.families import Family
from plmscale.families.electra.model import ElectraForPreTraining, electra_pieces
from plmscale.families.electra.samples import ElectraSamples

FAMILY = Family(
    name="electra",
    build=lambda cfg: ElectraForPreTraining(cfg.model, cfg.train.precision,
                                            rtd_weight=cfg.objective.rtd_weight),
    pieces=lambda cfg: electra_pieces(cfg.model, cfg.train.precision, cfg.objective.rtd_weight),
    samples=lambda corpus, cfg: ElectraSamples(corpus, cfg),
    hf_config=hf_config,
    hf_model_class="ElectraForPreTraining",
    to_hf_state_dict=to_hf_state_dict,
)
