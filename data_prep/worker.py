"""Code that runs inside encoder worker processes (kept small: workers import only this,
the annotator and their dependencies)."""

from __future__ import annotations

import os
import signal

from data_prep.annotate import Annotator, Gazetteer

# Test hooks, to check failure handling with real process deaths:
#   worker-kill:N            a worker SIGKILLs itself on its N-th chunk
#   main-kill-after-units:N  the main process SIGKILLs itself after finishing N units
#   rank-fail:R              MPI rank R raises before encoding anything
FAULT_ENV = "DATA_PREP_FAULT"

_annotator: Annotator | None = None
_calls = 0


def make_annotator(model_path: str, language: str, gazetteer_path: str | None) -> Annotator:
    gazetteer = Gazetteer.load(gazetteer_path) if gazetteer_path else None
    return Annotator(model_path, language=language, gazetteer=gazetteer)


def init(model_path: str, language: str, gazetteer_path: str | None) -> None:
    """Pool initializer: load the tokenizer, tables, gazetteer (and jieba) once."""
    global _annotator
    _annotator = make_annotator(model_path, language, gazetteer_path)


def annotate(docs: list[str]):
    """Annotate one chunk in a worker process."""
    global _calls
    _calls += 1
    fault = os.environ.get(FAULT_ENV, "")
    if fault.startswith("worker-kill:") and _calls == int(fault.split(":")[1]):
        os.kill(os.getpid(), signal.SIGKILL)
    return _annotator.annotate(docs)
