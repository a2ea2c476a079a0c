"""The ELMo family: a character- (or word-) input biLM of LSTMP layers, trained data parallel with
ZeRO only (``plmscale.families.elmo.model``; validation refuses tensor and pipeline parallelism)."""

from plmscale.families import Family
from plmscale.families.elmo.model import ElmoBiLM, elmo_pieces, initialize_elmo
from plmscale.families.elmo.samples import ElmoSamples

FAMILY = Family(
    name="elmo",
    build=lambda cfg: ElmoBiLM(cfg.model),
    pieces=lambda cfg: elmo_pieces(cfg.model),
    samples=lambda corpus, cfg: ElmoSamples(corpus, corpus.tokens, cfg.data, cfg.objective,
                                            cfg.train.seed, cfg.model.token_encoder == "characters"),
    initialize=initialize_elmo,
)
