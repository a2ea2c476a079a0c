"""The GLM family (autoregressive blank infilling with 2-D positions)."""

from plmscale.export.glm import hf_config, to_hf_state_dict
from plmscale.families import Family
from plmscale.families.glm.model import GLMForBlankInfilling, glm_pieces
from plmscale.families.glm.samples import GLMSamples
from plmscale.objectives.schedule import global_batch_size

FAMILY = Family(
    name="glm",
    build=lambda cfg: GLMForBlankInfilling(cfg.model, cfg.train.precision),
    pieces=lambda cfg: glm_pieces(cfg.model, cfg.train.precision),
    samples=lambda corpus, cfg: GLMSamples(corpus, corpus.tokens, cfg.data, cfg.objective,
                                           cfg.train.seed, global_batch_size(cfg)),
    hf_config=hf_config,
    hf_model_class="GPT2LMHeadModel",
    to_hf_state_dict=to_hf_state_dict,
)
