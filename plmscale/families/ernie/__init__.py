"""The ERNIE 2.0 family: continual multi-task pretraining with task embeddings."""

from plmscale.export.ernie import hf_config, to_hf_state_dict
from plmscale.families import Family
from plmscale.families.ernie.model import ErnieForPreTraining, ernie_pieces
from plmscale.families.ernie.samples import ErnieSamples
from plmscale.objectives.schedule import global_batch_size

FAMILY = Family(
    name="ernie",
    build=lambda cfg: ErnieForPreTraining(cfg.model, cfg.train.precision,
                                          cfg.objective.sentence_reorder_max_segments),
    pieces=lambda cfg: ernie_pieces(cfg.model, cfg.train.precision,
                                    cfg.objective.sentence_reorder_max_segments),
    samples=lambda corpus, cfg: ErnieSamples(corpus, corpus.tokens, cfg.data, cfg.objective,
                                             cfg.train.seed, global_batch_size=global_batch_size(cfg)),
    hf_config=hf_config,
    hf_model_class="ErnieForPreTraining",
    to_hf_state_dict=to_hf_state_dict,
)
