"""ERNIE 2.0's pretraining tasks (Sun et al. 2020), sample side and loss: the labels each task reads
off the token shards, and the masked classification loss every task head uses.

Tasks (the names of ``objective.task_schedule``) and their task-type id (the row of the task
embedding, HF ``ErnieModel``'s ``task_type_ids``; the paper groups tasks into word-aware,
structure-aware and semantic-aware ones):

* ``masking`` (word-aware): knowledge masking alone (``objective.masking`` / ``masking_schedule``);
  every sample of every task is masked this way too, as BERT masks its NSP pairs.
* ``capitalization`` (word-aware): per word, is its first letter upper case (the label sits on the
  word's first token).
* ``token_document`` (word-aware): per token, does it occur in another segment of its document
  (anywhere in the document outside the input segment).
* ``sentence_reordering`` (structure-aware): a paragraph cut into n (1..m) segments, shuffled; the
  class is (n, permutation), sum over n = 1..m of n! classes.
* ``sentence_distance`` (structure-aware): two sentences adjacent (0), in the same document but
  not adjacent (1), from two documents (2).

Discourse relation and IR relevance (semantic-aware) need labels from outside the corpus: not built.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from plmscale.objectives.masking import IGNORE_INDEX

TASK_TYPES = {"masking": 0, "capitalization": 0, "token_document": 0,
              "sentence_reordering": 1, "sentence_distance": 1}
TASKS = tuple(TASK_TYPES)
SENTENCE_DISTANCE_CLASSES = ("adjacent", "same_document", "other_document")
# HF ErnieForPreTraining's two-way seq_relationship head (0 = next sentence, 1 = random sentence) is
# the adjacent / other-document pair of the three sentence-distance classes.
SEQ_RELATIONSHIP_ROWS = (0, 2)


def reorder_classes(max_segments: int) -> int:
    """Number of sentence-reordering classes: sum over n = 1..m of n!."""
    return sum(math.factorial(n) for n in range(1, max_segments + 1))


def permutation_rank(perm) -> int:
    """Lexicographic index of a permutation of 0..n-1 among all n! (the identity is 0)."""
    perm = list(perm)
    rank = 0
    for i, p in enumerate(perm):
        rank += sum(q < p for q in perm[i + 1:]) * math.factorial(len(perm) - 1 - i)
    return rank


def reorder_label(perm) -> int:
    """The class of shuffling n segments into ``perm`` (perm[k] = which original segment is k-th):
    the n-segment classes follow all those with fewer segments."""
    n = len(perm)
    return reorder_classes(n - 1) + permutation_rank(perm)


def cut_and_shuffle(length: int, n: int, rng: np.random.Generator) -> tuple[list[slice], np.ndarray]:
    """Cut ``length`` tokens into ``n`` non-empty pieces at random token boundaries and draw their
    order: (the pieces as slices in original order, the permutation)."""
    if not 1 <= n <= length:
        raise ValueError(f"cannot cut {length} tokens into {n} non-empty segments")
    cuts = np.sort(rng.choice(np.arange(1, length), n - 1, replace=False)) if n > 1 else []
    bounds = [0, *map(int, cuts), length]
    return [slice(a, b) for a, b in zip(bounds, bounds[1:])], rng.permutation(n)


def capitalized_pieces(sp) -> np.ndarray:
    """Per vocabulary id, the piece's first character without sentencepiece's word-start mark: 1 =
    upper case, 0 = another character, -1 = none (the bare mark, which starts a word whose text
    begins in the next piece). A byte-fallback piece counts as its byte when it is ASCII; the bytes
    of a multi-byte character count as "another character" (a rare upper-case letter missing from
    the vocabulary is labelled 0)."""
    def text(i: int) -> str:  # a byte-fallback piece <0xNN> stands for that byte
        piece = sp.id_to_piece(i)
        if sp.is_byte(i):  # bytes >= 0x80 are parts of a multi-byte character: no case here
            value = int(piece[3:5], 16)
            return chr(value) if value < 0x80 else "\x00"
        return piece.lstrip("\u2581")

    first = [text(i)[:1] for i in range(sp.get_piece_size())]
    return np.array([-1 if not c else int(c.isupper()) for c in first], dtype=np.int8)


def capitalization_labels(ids: np.ndarray, word_starts: np.ndarray, eligible: np.ndarray,
                          capitalized: np.ndarray) -> np.ndarray:
    """1/0 on each word's first token (is the word's first character upper case, read from its
    first piece with text; ``capitalized`` from ``capitalized_pieces``), IGNORE_INDEX elsewhere."""
    labels = np.full(len(ids), IGNORE_INDEX, dtype=np.int64)
    starts = np.flatnonzero(word_starts & eligible)
    ends = np.append(np.flatnonzero(word_starts)[1:], len(ids))
    for start in starts:
        end = ends[np.searchsorted(ends, start, side="right")]
        codes = capitalized[ids[start:end]]
        text = codes[codes >= 0]
        labels[start] = int(text.size > 0 and text[0] == 1)
    return labels


def token_document_labels(ids: np.ndarray, eligible: np.ndarray,
                          rest_of_document: np.ndarray) -> np.ndarray:
    """1/0 per token: does its id occur in the document outside the input segment."""
    return np.where(eligible, np.isin(ids, rest_of_document).astype(np.int64), IGNORE_INDEX)


def parse_distance_weights(text: str) -> np.ndarray:
    """``objective.sentence_distance_weights`` ("a,b,c") -> the three class probabilities."""
    form = ("objective.sentence_distance_weights: expected three non-negative numbers "
            "'adjacent,same_document,other_document' with a positive sum, e.g. '1,1,1'")
    try:
        weights = np.array([float(w) for w in str(text).split(",")])
    except ValueError:
        raise ValueError(f"{form}; got {text!r}") from None
    if weights.shape != (3,) or not np.all(np.isfinite(weights)) or (weights < 0).any() \
            or weights.sum() <= 0:
        raise ValueError(f"{form}; got {text!r}")
    return weights / weights.sum()


def classification_metrics(name: str, logits: torch.Tensor, labels: torch.Tensor,
                           out: dict) -> dict:
    """Adds ``<name>_loss`` / ``<name>_accuracy`` over the labelled items (labels != IGNORE_INDEX)
    to the metrics ``out`` and the loss to ``out["loss"]``. A micro-batch without this task's
    samples reports 0 for both and still connects the head to the graph (a zero gradient), so every
    layout sees the same parameters take part."""
    logits, labels = logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1)
    labelled = labels != IGNORE_INDEX
    count = labelled.sum().clamp(min=1)
    loss = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="sum") / count
    correct = ((logits.argmax(-1) == labels) & labelled).sum() / count
    return {**out, f"{name}_loss": loss, f"{name}_accuracy": correct.float(),
            "loss": out["loss"] + loss}
