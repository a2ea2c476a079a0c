"""The ids of the special tokens that ``data_prep train-tokenizer`` puts in every sentencepiece model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import sentencepiece as spm


@dataclass(frozen=True)
class SpecialTokens:
    """Special ids looked up by piece (never hard-coded), plus the ids a random replacement may use."""

    vocab_size: int
    pad: int
    cls: int
    sep: int
    mask: int
    bos: int
    eos: int
    special_ids: np.ndarray
    """Every control / user-defined id: never masked, never drawn as a random replacement."""
    normal_ids: np.ndarray
    start: Optional[int] = None
    """GLM's [START] (begins each Part B span), [gMASK] and [sMASK]; None for a tokenizer trained
    before they were added (only GLM needs them)."""
    gmask: Optional[int] = None
    smask: Optional[int] = None

    @classmethod
    def from_model(cls, path: str | Path) -> "SpecialTokens":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer model {path} not found; train one with "
                                    "`python -m data_prep train-tokenizer` or point data.path at "
                                    "a directory written by `python -m data_prep encode`")
        sp = spm.SentencePieceProcessor(model_file=str(path))

        def piece(name: str) -> int:
            token_id = sp.piece_to_id(name)
            if token_id == sp.unk_id() and name != sp.id_to_piece(sp.unk_id()):
                raise ValueError(f"tokenizer {path} has no {name} piece; retrain it with "
                                 "`python -m data_prep train-tokenizer` (it adds all special tokens)")
            return token_id

        size = sp.get_piece_size()
        special = np.array([i for i in range(size) if sp.is_control(i) or sp.is_unknown(i)
                            or sp.is_unused(i) or _is_user_defined(sp, i)], dtype=np.int64)
        normal = np.setdiff1d(np.arange(size), special)
        def optional(name: str) -> Optional[int]:
            token_id = sp.piece_to_id(name)
            return None if token_id == sp.unk_id() else token_id

        return cls(vocab_size=size, pad=piece("[PAD]"), cls=piece("[CLS]"), sep=piece("[SEP]"),
                   mask=piece("[MASK]"), bos=piece("<s>"), eos=piece("</s>"),
                   special_ids=special, normal_ids=normal, start=optional("[START]"),
                   gmask=optional("[gMASK]"), smask=optional("[sMASK]"))


def _is_user_defined(sp: spm.SentencePieceProcessor, token_id: int) -> bool:
    name = sp.id_to_piece(token_id)
    return name.startswith("[") and name.endswith("]") or name.startswith("<extra_id_")


def encode_text(path: str | Path, text: str) -> np.ndarray:
    """``text`` as the ids of the sentencepiece model at ``path`` (no special tokens added)."""
    sp = spm.SentencePieceProcessor(model_file=str(path))
    return np.asarray(sp.encode(text), dtype=np.int64)
