"""The ELMo family: a character- (or word-) input biLM of LSTMP layers, trained data parallel with
ZeRO only (``plmscale.families.elmo.model``; validation refuses tensor and pipeline parallelism).
No Hugging Face class: ``plmscale elmo export`` writes its own folder (``embed.py``)."""

from plmscale.families import NO_NSP, Family, FamilyFields
from plmscale.families.elmo.model import ElmoBiLM, elmo_pieces, initialize_elmo
from plmscale.families.elmo.presets import PRESETS
from plmscale.families.elmo.samples import ElmoSamples

FAMILY = Family(
    name="elmo",
    build=lambda cfg: ElmoBiLM(cfg.model),
    pieces=lambda cfg: elmo_pieces(cfg.model),
    samples=lambda corpus, cfg: ElmoSamples(corpus, corpus.tokens, cfg.data, cfg.objective,
                                            cfg.train.seed, cfg.model.token_encoder == "characters"),
    initialize=initialize_elmo,
    fields=FamilyFields(model=("token_encoder", "char_cnn_filters", "tie_word_embeddings"),
                        objective_defaults=NO_NSP,
                        # SPEC.md's count (93,600,848 for the original) leaves the softmax out.
                        networks={"biLM without the softmax": ("token_encoder.", "forward_lstm.",
                                                               "backward_lstm.")}),
    presets=PRESETS,
)
