"""UniLM (Dong et al. 2019): one Transformer, four language-modelling objectives chosen by the
self-attention mask. The token types carry the objective (as in microsoft/unilm): 0/1 the two
segments of a bidirectional sample, 2 a left-to-right sample, 3 a right-to-left one, 4/5 the source
and target segments of a sequence-to-sequence sample; the mask is a pure function of the token types
and the padding, so it never has to travel between pipeline stages.

Also the objective-mixture parser every unified family shares (``objective.objective_weights``).
"""

from __future__ import annotations

import numpy as np
import torch

# Objective -> the token types of its sample's segments ([CLS] first + second segment).
MASK_KINDS = {"bidirectional": (0, 1), "seq2seq": (4, 5), "left_to_right": (2, 2),
              "right_to_left": (3, 3)}
# Per sample: bidirectional 1/3, seq2seq 1/3, left-to-right 1/6, right-to-left 1/6 (the paper, 2.3).
DEFAULT_WEIGHTS = "bidirectional:2,seq2seq:2,left_to_right:1,right_to_left:1"
LEFT_TO_RIGHT, RIGHT_TO_LEFT, SOURCE, TARGET = 2, 3, 4, 5


def parse_weights(text: str, names, field: str = "objective.objective_weights") -> dict[str, float]:
    """"name:weight,..." -> {name: probability} over ``names`` (missing names get 0); a clear error
    for an unknown name, a bad number or weights that do not sum above 0."""
    weights = {name: 0.0 for name in names}
    for item in (part.strip() for part in text.split(",") if part.strip()):
        name, _, value = item.partition(":")
        if name not in weights:
            raise ValueError(f"{field}={text!r}: unknown objective {name!r}; choose from "
                             f"{', '.join(names)}")
        try:
            weights[name] = float(value)
        except ValueError:
            raise ValueError(f"{field}={text!r}: {item!r} needs a number after ':' "
                             "(e.g. 'bidirectional:2')") from None
        if weights[name] < 0:
            raise ValueError(f"{field}={text!r}: weights must be >= 0, got {item!r}")
    total = sum(weights.values())
    if total <= 0:
        raise ValueError(f"{field}={text!r}: give at least one objective a positive weight")
    return {name: w / total for name, w in weights.items()}


def draw_kind(rng: np.random.Generator, probabilities: dict[str, float]) -> str:
    """One objective name drawn with ``probabilities`` (from :func:`parse_weights`)."""
    names = list(probabilities)
    return names[int(rng.choice(len(names), p=np.array([probabilities[n] for n in names])))]


def unilm_attention_mask(token_type_ids: torch.Tensor,
                         attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Boolean [b, 1, s, s], True = hidden (the kernels' form), for samples laid out by
    ``MASK_KINDS``; each sample's objective is the type of its first token ([CLS]).

    bidirectional: every row sees every token; left-to-right: column j <= row i; right-to-left:
    j >= i; seq2seq: every row sees the source segment, target rows also the target tokens up to
    themselves. Padding columns (``attention_mask`` 0) are hidden; padding rows see all real tokens
    (their outputs are never used; this keeps every row non-empty)."""
    types = token_type_ids
    b, s = types.shape
    real = (torch.ones_like(types, dtype=torch.bool) if attention_mask is None
            else attention_mask.bool())
    index = torch.arange(s, device=types.device)
    lower = (index[None, :] <= index[:, None])[None]
    upper = (index[None, :] >= index[:, None])[None]
    seq2seq = (types[:, None, :] == SOURCE) | (
        (types[:, :, None] == TARGET) & (types[:, None, :] == TARGET) & lower)
    kind = types[:, :1, None]
    allowed = torch.where(kind == LEFT_TO_RIGHT, lower,
                          torch.where(kind == RIGHT_TO_LEFT, upper,
                                      torch.where(kind == SOURCE, seq2seq,
                                                  torch.ones_like(seq2seq))))
    allowed = (allowed | ~real[:, :, None]) & real[:, None, :]
    return ~allowed[:, None]
