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
        if path.suffix == ".json":
            return cls._from_hf_tokenizer(path)
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


    @classmethod
    def _from_hf_tokenizer(cls, path: Path) -> "SpecialTokens":
        """A Hugging Face ``tokenizer.json``: each role is the first of ``HF_ROLE_NAMES`` the
        tokenizer has (BERT's ``[CLS]``..., RoBERTa's ``<s>``..., GPT-2's ``<|endoftext|>``)."""
        from tokenizers import Tokenizer
        tokenizer = Tokenizer.from_file(str(path))
        ids = {}
        for role, names in HF_ROLE_NAMES.items():
            found = [i for i in map(tokenizer.token_to_id, names) if i is not None]
            if not found and role != "mask":
                raise ValueError(f"tokenizer {path} has none of {', '.join(names)} (the {role} "
                                 f"token); add one as a special token")
            ids[role] = found[0] if found else -1
        size = tokenizer.get_vocab_size(with_added_tokens=True)
        special = np.array(sorted(i for i, t in tokenizer.get_added_tokens_decoder().items()
                                  if t.special), dtype=np.int64)
        return cls(vocab_size=size, special_ids=special,
                   normal_ids=np.setdiff1d(np.arange(size), special), **ids)


HF_ROLE_NAMES = {"pad": ("[PAD]", "<pad>", "<|endoftext|>"), "cls": ("[CLS]", "<s>", "<|endoftext|>"),
                 "sep": ("[SEP]", "</s>", "<|endoftext|>"), "mask": ("[MASK]", "<mask>"),
                 "bos": ("<s>", "[CLS]", "<|endoftext|>"), "eos": ("</s>", "[SEP]", "<|endoftext|>")}
"""Special-token names per role in Hugging Face tokenizers, first found wins; a tokenizer without
a mask token (GPT-2) gets mask = -1, which only masking objectives use (they then fail on it)."""


def piece_ids(tokenizer_path, pieces: list[str]) -> list[int | None]:
    """Ids of ``pieces`` in a sentencepiece model or a ``tokenizer.json`` (None: not there)."""
    if str(tokenizer_path).endswith(".json"):
        from tokenizers import Tokenizer
        return list(map(Tokenizer.from_file(str(tokenizer_path)).token_to_id, pieces))
    sp = spm.SentencePieceProcessor(model_file=str(tokenizer_path))
    unk = sp.unk_id()
    return [None if i == unk and p != sp.id_to_piece(unk) else i
            for p, i in zip(pieces, map(sp.piece_to_id, pieces))]


def _is_user_defined(sp: spm.SentencePieceProcessor, token_id: int) -> bool:
    name = sp.id_to_piece(token_id)
    return name.startswith("[") and name.endswith("]") or name.startswith("<extra_id_")


def encode_text(path: str | Path, text: str) -> np.ndarray:
    """``text`` as the ids of the sentencepiece model at ``path`` (no special tokens added)."""
    sp = spm.SentencePieceProcessor(model_file=str(path))
    return np.asarray(sp.encode(text), dtype=np.int64)
