"""The ids of the special tokens of a run's tokenizer: the ones ``data_prep train-tokenizer`` puts in
every sentencepiece model, or those a Hugging Face ``tokenizer.json`` has (found by name)."""

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
    mask: Optional[int]
    """None only for a ``tokenizer.json`` without a mask token (GPT-2's); families whose objective
    masks refuse such a tokenizer (``require_mask``)."""
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

        roles = {role: piece(name) for role, name in SENTENCEPIECE_NAMES.items()}
        return cls(vocab_size=size, **roles,
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
            ids[role] = found[0] if found else None
        size = tokenizer.get_vocab_size(with_added_tokens=True)
        special = np.array(sorted(i for i, t in tokenizer.get_added_tokens_decoder().items()
                                  if t.special), dtype=np.int64)
        return cls(vocab_size=size, special_ids=special,
                   normal_ids=np.setdiff1d(np.arange(size), special), **ids)


HF_ROLE_NAMES = {"pad": ("[PAD]", "<pad>", "<|endoftext|>"), "cls": ("[CLS]", "<s>", "<|endoftext|>"),
                 "sep": ("[SEP]", "</s>", "<|endoftext|>"), "mask": ("[MASK]", "<mask>"),
                 "bos": ("<s>", "[CLS]", "<|endoftext|>"), "eos": ("</s>", "[SEP]", "<|endoftext|>")}
"""Special-token names per role in Hugging Face tokenizers, first found wins; a tokenizer without
a mask token (GPT-2) gets mask = None, which families that mask refuse (``require_mask``)."""

SENTENCEPIECE_NAMES = {"pad": "[PAD]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]", "bos": "<s>",
                       "eos": "</s>"}
"""The piece of each role in the sentencepiece models of ``data_prep train-tokenizer``."""


def require_mask(tokens: SpecialTokens, tokenizer_path, family: str) -> None:
    """A family whose objective writes the mask token needs a tokenizer that has one."""
    if tokens.mask is None:
        raise ValueError(f"model.family {family} masks tokens, but the tokenizer {tokenizer_path} "
                         f"has no mask token (none of {', '.join(HF_ROLE_NAMES['mask'])}); add one "
                         f"as a special token and re-encode the corpus (`python -m data_prep encode "
                         f"--tokenizer ...`), or train a family that does not mask (gpt, llama)")


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


def text_encoder(path: str | Path):
    """``encode(text) -> list of ids`` (no special tokens added) of the sentencepiece model or
    ``tokenizer.json`` at ``path``: the ids ``data_prep encode`` writes for one paragraph."""
    if str(path).endswith(".json"):
        from tokenizers import Tokenizer
        tokenizer = Tokenizer.from_file(str(path))
        return lambda text: tokenizer.encode(text, add_special_tokens=False).ids
    return spm.SentencePieceProcessor(model_file=str(path)).encode


def encode_text(path: str | Path, text: str) -> np.ndarray:
    """``text`` as the ids of the tokenizer at ``path`` (``text_encoder``)."""
    return np.asarray(text_encoder(path)(text), dtype=np.int64)


NOT_ENCODING = ("post_processor", "padding", "truncation", "decoder")
"""``tokenizer.json`` parts that do not change the ids of a text without special tokens (what the
shards hold): an exported tokenizer adds a post-processor, and is still the shards' tokenizer."""


def same_encoding(a: str | Path, b: str | Path) -> bool:
    """Two tokenizer files that give every text the same ids (``data_prep encode``'s): equal
    sentencepiece models, or ``tokenizer.json`` files equal but for ``NOT_ENCODING``."""
    import json
    a, b = Path(a), Path(b)
    if a.suffix != b.suffix:
        return False
    if a.suffix != ".json":
        return a.read_bytes() == b.read_bytes()
    keep = [{k: v for k, v in json.loads(p.read_text(encoding="utf-8")).items()
             if k not in NOT_ENCODING} for p in (a, b)]
    return keep[0] == keep[1]
