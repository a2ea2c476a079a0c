"""ELMo samples: fixed windows of the packed token stream (GPT's windows, ``GPTSamples``), each
token also spelled as characters for the character encoder (``char_ids``)."""

from __future__ import annotations

import numpy as np
import sentencepiece as spm

from plmscale.families.elmo.model import (BOW_CHAR, EOW_CHAR, MAX_CHARACTERS, PAD_CHAR)
from plmscale.families.gpt.samples import GPTSamples


def character_table(sp: spm.SentencePieceProcessor) -> np.ndarray:
    """[V, MAX_CHARACTERS] character ids of every piece: begin-of-word, the UTF-8 bytes of its text
    (sentencepiece's word-start mark as a space), end-of-word, padding (long pieces are cut)."""
    table = np.full((sp.get_piece_size(), MAX_CHARACTERS), PAD_CHAR, dtype=np.int64)
    for i in range(sp.get_piece_size()):
        text = sp.id_to_piece(i).replace("\u2581", " ").encode("utf-8")[:MAX_CHARACTERS - 2]
        table[i, :len(text) + 2] = [BOW_CHAR, *text, EOW_CHAR]
    return table


class ElmoSamples(GPTSamples):
    """``input_ids`` (a window of ``seq_length`` tokens), ``attention_mask`` and, for the character
    encoder, ``char_ids`` [seq_length, MAX_CHARACTERS]."""

    def __init__(self, corpus, tokens, data, objective, seed: int, characters: bool):
        super().__init__(corpus, tokens, data, objective, seed)
        self.table = character_table(spm.SentencePieceProcessor(
            model_file=str(corpus.shards.tokenizer_path))) if characters else None

    def __call__(self, index: int) -> dict[str, np.ndarray]:
        ids = super().__call__(index)["input_ids"]
        sample = {"input_ids": ids, "attention_mask": np.ones(len(ids), dtype=np.int64)}
        if self.table is not None:
            sample["char_ids"] = self.table[ids]
        return sample
