"""Train a sentencepiece tokenizer with the special pieces every model family needs.

Id layout (consumers look ids up with ``piece_to_id``):

====  ====================================================================
0     ``[PAD]`` (pad)
1     ``<unk>``
2     ``<s>`` (bos)
3     ``</s>`` (eos)
4..   user-defined: ``[CLS]`` ``[SEP]`` ``[MASK]`` ``[START]`` (GLM), then the
      T5 sentinels ``<extra_id_0>`` ... ``<extra_id_99>``, then ``[gMASK]`` ``[sMASK]`` (GLM)
====  ====================================================================

Byte fallback is on, so no text maps to ``<unk>``. The training text is a uniform random
sample of documents (bottom-k sampling on a seeded hash), bounded both in document count
and in bytes, so corpora of any size train in bounded memory.
"""

from __future__ import annotations

import hashlib
import heapq
import io
import os
from typing import Iterable, Iterator

import sentencepiece as spm

from data_prep.inputs import Counters, InputOptions, expand_inputs, iter_documents, plan_units
from data_prep.textutil import split_paragraphs

PAD, UNK, BOS, EOS = "[PAD]", "<unk>", "<s>", "</s>"
USER_DEFINED_SYMBOLS = ["[CLS]", "[SEP]", "[MASK]", "[START]"] + [
    f"<extra_id_{i}>" for i in range(100)
] + ["[gMASK]", "[sMASK]"]  # GLM's document- and sentence-level masks (after the sentinels: no id moved)
# sentencepiece skips training sentences longer than max_sentence_length bytes; long
# paragraphs are cut into pieces of about this many characters instead of being lost.
TRAIN_PIECE_CHARS = 4096


def _sample_key(seed: int, ordinal: int) -> bytes:
    return hashlib.blake2b(f"{seed}:{ordinal}".encode(), digest_size=8).digest()


def sample_documents(
    docs: Iterable[str], max_documents: int, max_bytes: int, seed: int = 0
) -> list[str]:
    """Uniform random sample of ``docs`` holding at most ``max_documents`` documents and
    about ``max_bytes`` bytes, in one streaming pass and bounded memory.

    Every document gets a pseudo-random key from (seed, position); the sample is the set
    of documents with the smallest keys that fits both bounds. Deterministic for a seed.
    """
    heap: list[tuple[bytes, int, str]] = []  # max-heap by key via negated bytes
    total = 0
    for ordinal, doc in enumerate(docs):
        key = _sample_key(seed, ordinal)
        neg = bytes(255 - b for b in key)
        size = len(doc.encode("utf-8"))
        if size > max_bytes:
            continue
        heapq.heappush(heap, (neg, ordinal, doc))
        total += size
        while heap and (len(heap) > max_documents or total > max_bytes):
            _, _, dropped = heapq.heappop(heap)
            total -= len(dropped.encode("utf-8"))
    return [doc for _, _, doc in sorted(heap, key=lambda item: item[1])]


def _training_sentences(docs: list[str]) -> Iterator[str]:
    for doc in docs:
        for para in split_paragraphs(doc):
            for start in range(0, len(para), TRAIN_PIECE_CHARS):
                yield para[start : start + TRAIN_PIECE_CHARS]


def train_tokenizer(
    inputs: list[str],
    output: str,
    vocab_size: int,
    model_type: str = "unigram",
    input_options: InputOptions = InputOptions(),
    sample_documents_max: int = 1_000_000,
    sample_bytes_max: int = 1 << 30,
    character_coverage: float = 0.9995,
    seed: int = 0,
    num_threads: int | None = None,
) -> dict:
    """Train a sentencepiece model on a bounded sample of ``inputs`` and write ``output``.

    Returns a summary dict (sampled documents and bytes, bad-input counters).
    """
    if model_type not in ("unigram", "bpe"):
        raise ValueError(f"model_type must be 'unigram' or 'bpe', not {model_type!r}")
    paths = expand_inputs(inputs)
    counters = Counters()
    units = plan_units(paths, split_bytes=1 << 62)  # one unit per file: a single reader

    def all_docs() -> Iterator[str]:
        for unit in units:
            yield from iter_documents(unit, input_options, counters)

    sample = sample_documents(all_docs(), sample_documents_max, sample_bytes_max, seed)
    if not sample:
        raise ValueError("no non-empty documents in the input: nothing to train on")
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=_training_sentences(sample),
        model_writer=model,
        vocab_size=vocab_size,
        model_type=model_type,
        character_coverage=character_coverage,
        byte_fallback=True,
        pad_id=0,
        unk_id=1,
        bos_id=2,
        eos_id=3,
        pad_piece=PAD,
        unk_piece=UNK,
        bos_piece=BOS,
        eos_piece=EOS,
        user_defined_symbols=USER_DEFINED_SYMBOLS,
        max_sentence_length=4 * TRAIN_PIECE_CHARS * 4,  # bytes; a piece is <= 4096 chars
        input_sentence_size=0,  # we sampled already; train on everything we pass
        num_threads=num_threads or os.cpu_count() or 1,
        minloglevel=2,
    )
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    tmp = output + ".tmp"
    with open(tmp, "wb") as f:
        f.write(model.getvalue())
    os.replace(tmp, output)
    return {
        "output": output,
        "vocab_size": vocab_size,
        "model_type": model_type,
        "sampled_documents": len(sample),
        "sampled_bytes": sum(len(d.encode("utf-8")) for d in sample),
        "input_counters": {k: v for k, v in counters.items() if k not in ("input_files", "input_bytes", "documents_written", "tokens", "characters")},
    }
