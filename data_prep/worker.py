"""Code that runs inside encoder worker processes (kept small: workers import only this,
the annotator and their dependencies)."""

from __future__ import annotations

import os
import signal

from data_prep.annotate import Annotator, Gazetteer
from data_prep.inputs import Counters, InputOptions, Unit, iter_documents

# Test hooks, to check failure handling with real process deaths:
#   worker-kill:N            a worker SIGKILLs itself on its N-th chunk
#   main-kill-after-units:N  the main process SIGKILLs itself after finishing N units
#   rank-fail:R              MPI rank R raises before encoding anything
FAULT_ENV = "DATA_PREP_FAULT"

_annotator: Annotator | None = None
_calls = 0


def make_annotator(
    model_path: str,
    language: str,
    phrase_gazetteer: str | None,
    entity_gazetteer: str | None,
    threads: int = -1,
    user_dict: str | None = None,
    segmenter_backend: str | None = None,
) -> Annotator:
    """An annotator with the gazetteers loaded from their files (None: no spans of that kind)
    and the Han segmenter ``segmenter_backend`` with ``user_dict`` (the encoder chose it and
    announced a fallback already)."""
    return Annotator(
        model_path,
        language=language,
        phrase_gazetteer=Gazetteer.load(phrase_gazetteer) if phrase_gazetteer else None,
        entity_gazetteer=Gazetteer.load(entity_gazetteer) if entity_gazetteer else None,
        threads=threads,
        user_dict=user_dict,
        segmenter_backend=segmenter_backend,
        announce=False,
    )


_config: tuple | None = None


def init(*config) -> None:
    """Pool initializer, with the arguments of :func:`make_annotator`: load the tokenizer,
    tables, gazetteers (and the Han segmenter) once. A forked worker inherits the parent's annotator
    when the parent called ``init`` with the same arguments already."""
    global _annotator, _config
    if _annotator is None or _config != config:
        _annotator = make_annotator(*config)
        _config = config


def local_annotator():
    """The annotator of this process (after ``init``)."""
    return _annotator


def _count_call() -> None:
    global _calls
    _calls += 1
    fault = os.environ.get(FAULT_ENV, "")
    if fault.startswith("worker-kill:") and _calls == int(fault.split(":")[1]):
        os.kill(os.getpid(), signal.SIGKILL)


def annotate(docs: list[str]):
    """Annotate a chunk of documents; returns (record batch, counters)."""
    _count_call()
    return _annotator.annotate(docs)


def annotate_range(unit: Unit, options: InputOptions):
    """Read the documents owned by a byte range and annotate them; returns
    (record batch or None when the range owns no document, counters)."""
    _count_call()
    counters = Counters()
    docs = list(iter_documents(unit, options, counters))
    batch = None
    if docs:
        batch, stats = _annotator.annotate(docs)
        counters.add(stats)
    return batch, dict(counters)
