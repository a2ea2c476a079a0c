"""From the config to the sample functions of a run: the training stream (one corpus or a weighted
mixture, with task prefixes) and the validation stream (``data.valid_path`` or the documents
``data.valid_fraction`` holds out of every source, mixed with the same weights)."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Callable

from plmscale.config import ExperimentConfig
from plmscale.config.mixture import Source, mixture_sources
from plmscale.data.corpus import Corpus
from plmscale.data.mixture import Mixture, Prefixed
from plmscale.data.tokenizer import encode_text, require_mask


@dataclasses.dataclass
class Samples:
    """A run's sample function and, for a mixture, the ``Mixture`` (for per-source counts)."""

    sample: Callable[[int], dict]
    mixture: Mixture | None
    names: list[str]
    """One short name per source (the directory's name, made unique)."""


def source_names(sources: list[Source]) -> list[str]:
    names = [Path(s.path).name or "source" for s in sources]
    return [f"{n}_{i}" if names.count(n) > 1 else n for i, n in enumerate(names)]


def open_corpus(cfg: ExperimentConfig, path: str) -> Corpus:
    """The shard directory ``path``, checked against ``model.vocab_size`` and the family's need
    of a mask token."""
    from plmscale.families import get_family
    corpus = Corpus(path, verify=cfg.data.verify_checksums)
    if get_family(cfg.model.family).masks_tokens:
        require_mask(corpus.tokens, corpus.shards.tokenizer_path, cfg.model.family)
    if corpus.tokens.vocab_size > cfg.model.vocab_size:
        raise ValueError(f"tokenizer of {path} has {corpus.tokens.vocab_size} pieces but "
                         f"model.vocab_size={cfg.model.vocab_size}; set model.vocab_size >= "
                         f"{corpus.tokens.vocab_size}")
    return corpus


def family_sampler(cfg: ExperimentConfig, corpus: Corpus, prefix: str) -> Callable[[int], dict]:
    """The family's ``sample(n)`` over ``corpus``; with a prefix, built for an encoder input that
    many tokens shorter (decoder length kept) and then prefixed."""
    from plmscale.families import get_family
    build = get_family(cfg.model.family).samples
    if not prefix:
        return build(corpus, cfg)
    ids = encode_text(corpus.shards.tokenizer_path, prefix)
    plain = build(corpus, cfg)(0)
    short = copy.deepcopy(cfg)
    short.data.seq_length = cfg.data.seq_length - len(ids)
    short.data.decoder_seq_length = int(plain["labels"].shape[0])
    if short.data.seq_length < 8:
        raise ValueError(f"data.task_prefixes: {prefix!r} is {len(ids)} tokens, which leaves "
                         f"{short.data.seq_length} of data.seq_length={cfg.data.seq_length}; "
                         f"shorten the prefix or raise data.seq_length")
    return Prefixed(build(corpus, short), ids)


def _same_tokenizer(corpora: list[Corpus], sources: list[Source]) -> None:
    first = corpora[0].shards.tokenizer_path.read_bytes()
    for corpus, source in zip(corpora[1:], sources[1:]):
        if corpus.shards.tokenizer_path.read_bytes() != first:
            raise ValueError(f"data.paths: {source.path} is encoded with another tokenizer than "
                             f"{sources[0].path}; every source of a mixture must use one tokenizer "
                             f"(re-encode it with `python -m data_prep encode --tokenizer "
                             f"{corpora[0].shards.tokenizer_path}`)")


def _mixed(cfg: ExperimentConfig, sources: list[Source], corpora: list[Corpus]) -> Samples:
    samplers = [family_sampler(cfg, c, s.prefix) for c, s in zip(corpora, sources)]
    if len(sources) == 1 and not cfg.data.paths:
        return Samples(samplers[0], None, source_names(sources))
    mixture = Mixture(samplers, [s.weight for s in sources], cfg.train.seed)
    return Samples(mixture, mixture, source_names(sources))


def run_samples(cfg: ExperimentConfig) -> tuple[Samples, Samples | None]:
    """(training samples, validation samples or None when the run has no validation data)."""
    sources = mixture_sources(cfg.data)
    corpora = [open_corpus(cfg, s.path) for s in sources]
    _same_tokenizer(corpora, sources)
    valid = None
    if cfg.data.valid_fraction:
        splits = [c.held_out_split(cfg.data.valid_fraction) for c in corpora]
        corpora = [train for train, _ in splits]
        valid = _mixed(cfg, sources, [held for _, held in splits])
    elif cfg.data.valid_path:
        valid_corpus = open_corpus(cfg, cfg.data.valid_path)
        _same_tokenizer([corpora[0], valid_corpus], [sources[0], Source(1.0, cfg.data.valid_path)])
        valid = Samples(family_sampler(cfg, valid_corpus, ""), None, ["valid"])
    return _mixed(cfg, sources, corpora), valid
